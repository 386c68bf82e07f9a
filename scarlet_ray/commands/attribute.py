"""``scarlet attribute``: stage 3 (local or Ray runner: ``attribution.runner``)."""

from __future__ import annotations

import argparse

from scarlet_ray.attribution.stage import run
from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config


def main(cfg: Config, args: argparse.Namespace) -> int:
    return run(cfg, args.input, args.output, stage_options(args)).show()
