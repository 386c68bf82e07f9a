"""``scarlet evaluate attribution``: nDCG@1/@5 of utilities vs gold, beside the baselines;
``--counterfactual`` adds the true-passage-above-its-answer-swapped-copy check."""

from __future__ import annotations

import argparse

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config
from scarlet_ray.evaluation.stages import attribution


def main(cfg: Config, args: argparse.Namespace) -> int:
    return attribution(cfg, args.attributions, args.samples, args.output,
                       stage_options(args),
                       counterfactual=bool(getattr(args, "counterfactual", False))).show()
