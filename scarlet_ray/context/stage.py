"""Stage 1 as one plain function: seeds + corpus -> ``DIR/contexts.jsonl``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scarlet_ray.config import Config
from scarlet_ray.context.build import run_context_stage
from scarlet_ray.stagedir import StageOptions, StageRun
from scarlet_ray.stages import StageOutcome

OUTPUTS = ("contexts.jsonl", "index")


def corpus_specs(cfg: Config, given: Sequence[str] | None) -> list[str]:
    """``--corpus`` arguments, else the config's corpus files with their formats."""
    from scarlet_ray.errors import UsageError

    if given:
        return list(given)
    files, fmts = cfg.data.corpus, cfg.data.corpus_formats
    if not files:
        raise UsageError("no corpus: pass --corpus FILE (or FORMAT:PATH) or set data.corpus")
    return [f"{fmts[i]}:{f}" if i < len(fmts) and fmts[i] else f for i, f in enumerate(files)]


def run(cfg: Config, seeds: str | Path, corpus: Sequence[str] | None, out: str | Path,
        options: StageOptions | None = None, progress: bool = True,
        index: str | None = None) -> StageOutcome:
    """``index`` (else ``index.path``): a built index folder; the corpus is then not needed."""
    index = index or cfg.index.path
    args: dict[str, str] = {}
    if index:
        from scarlet_ray.index.folder import IndexFolder

        # the index's identity joins the stage's fingerprint: contexts searched in another
        # index are not mixed into this folder (the full check comes when the encoder loads)
        args["index"] = IndexFolder.identity(IndexFolder.peek(index))
        specs = list(corpus or [])
        if specs:
            import logging

            logging.getLogger(__name__).warning(
                "--corpus is not read with --index: passages come from %s", index)
    else:
        specs = corpus_specs(cfg, corpus)
    with StageRun(Path(out), "context", cfg.dump(), OUTPUTS, options or StageOptions(),
                  args=args) as st:
        counts = run_context_stage(cfg, str(seeds), specs, st, progress=progress,
                                   index_path=index)
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
            ("output", str(st.path("contexts.jsonl"))),
        ]
        if st.errors.path.exists():
            rows.append(("errors", str(st.errors.path)))
        return StageOutcome("context", 0, rows, "", st.out)
