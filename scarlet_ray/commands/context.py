"""``scarlet context``: seeds -> DIR/contexts.jsonl (stage 1), with manifest and summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scarlet_ray.config import Config
from scarlet_ray.context.build import run_context_stage
from scarlet_ray.manifest import print_table


def corpus_specs(cfg: Config, given: list[str] | None) -> list[str]:
    """``--corpus`` arguments, else the config's corpus files with their formats."""
    if given:
        return list(given)
    files, fmts = cfg.data.corpus, cfg.data.corpus_formats
    if not files:
        raise ValueError("no corpus: pass --corpus FILE (or FORMAT:PATH) or set data.corpus")
    return [f"{fmts[i]}:{f}" if i < len(fmts) and fmts[i] else f for i, f in enumerate(files)]


def main(cfg: Config, args: argparse.Namespace) -> int:
    out = Path(args.output)
    counts = run_context_stage(cfg, args.seeds, corpus_specs(cfg, args.corpus), out,
                               progress=sys.stderr.isatty())
    rows = [
        ("seeds read", counts["seeds"]),
        ("seed lines rejected", counts["seed_errors"]),
        ("already done (resume)", counts["already_done"] + counts["dropped_before"]),
        ("contexts written", counts["written"]),
        ("dropped: no entity", counts["no_entity"]),
        ("expansion lookups failed", counts["expand_errors"]),
        ("entities / seed", counts["mean_entities"]),
        ("queries / seed after expansion", counts["mean_entities_after_expansion"]),
        ("contexts with a gold passage", f"{counts['context_has_gold']}/"
                                         f"{counts['with_gold_seeds']}"),
        ("knowledge graph", cfg.context.knowledge),
        ("output", str(out / "contexts.jsonl")),
    ]
    if (out / "errors.jsonl").exists():
        rows.append(("errors", str(out / "errors.jsonl")))
    print_table("scarlet context", rows)
    return 0
