"""``scarlet index build``: corpus -> INDEX_DIR (passage store, fp16 shards, ANN, index.json)."""

from __future__ import annotations

import argparse
import sys

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config
from scarlet_ray.index.stage import run


def main(cfg: Config, args: argparse.Namespace) -> int:
    return run(cfg, args.corpus, args.output, stage_options(args),
               progress=sys.stderr.isatty()).show()
