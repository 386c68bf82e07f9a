"""``scarlet train``: stage 5, the retriever trained on Ray Train (sentence-transformers folder)."""

from __future__ import annotations

import argparse

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config
from scarlet_ray.training.stage import run


def main(cfg: Config, args: argparse.Namespace) -> int:
    return run(cfg, args.train, args.output, stage_options(args)).show()
