"""``scarlet context``: stage 1, seeds -> DIR/contexts.jsonl."""

from __future__ import annotations

import argparse
import sys

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config
from scarlet_ray.context.stage import run


def main(cfg: Config, args: argparse.Namespace) -> int:
    return run(cfg, args.seeds, args.corpus, args.output, stage_options(args),
               progress=sys.stderr.isatty(), index=args.index).show()
