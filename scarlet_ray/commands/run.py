"""``scarlet run``: all stages in order with resume, then the report."""

from __future__ import annotations

import argparse

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config
from scarlet_ray.pipeline import run_pipeline


def main(cfg: Config, args: argparse.Namespace) -> int:
    return run_pipeline(cfg, args.output, stage_options(args))
