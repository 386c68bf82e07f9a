"""``scarlet label``: stage 4, attributions + samples -> DIR/train.jsonl (FlagEmbedding)."""

from __future__ import annotations

import argparse

from scarlet_ray.attribution.label_stage import run
from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config


def main(cfg: Config, args: argparse.Namespace) -> int:
    return run(cfg, args.attributions, args.samples, args.output, stage_options(args)).show()
