"""``scarlet synthesize --contexts DIR/contexts.jsonl --output DIR`` -> DIR/samples.jsonl."""

from __future__ import annotations

import argparse
import sys

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table
from scarlet_ray.synthesis.synthesize import run_synthesis


def main(cfg: Config, args: argparse.Namespace) -> int:
    summary = run_synthesis(cfg, args.contexts, args.output, options=stage_options(args))
    c, u = summary.counts, summary.usage
    print_table("scarlet synthesize", summary.rows,
                headers=("task", "accepted", "rejected", "failed", "rejected reasons"))
    print_table("synthesizer usage (this run)", [
        ("contexts", c["contexts"]), ("pairs attempted", c["pairs_attempted"]),
        ("pairs already done", c["pairs_skipped_done"]), ("calls", u["calls"]),
        ("attempts", u["attempts"]), ("cache hits", u["cache_hits"]),
        ("prompt tokens", u["prompt_tokens"]), ("completion tokens", u["completion_tokens"]),
        ("cost (USD)", u["cost_usd"]), ("output", args.output)])
    if summary.exit_code:
        print(f"scarlet synthesize: {summary.message}", file=sys.stderr)
    return summary.exit_code
