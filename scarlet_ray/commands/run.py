"""``scarlet run``: all stages in order with resume, then the report (or ``--dry-run``)."""

from __future__ import annotations

import argparse

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config


def main(cfg: Config, args: argparse.Namespace) -> int:
    if getattr(args, "dry_run", False):
        from scarlet_ray.dryrun import dry_run

        report = dry_run(cfg, args.output)
        report.show()
        return 2 if report.problems else 0
    from scarlet_ray.pipeline import run_pipeline

    return run_pipeline(cfg, args.output, stage_options(args))
