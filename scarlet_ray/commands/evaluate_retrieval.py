"""``scarlet evaluate retrieval``: a retriever on a BEIR set -> metrics.json, run.trec, manifest."""

from __future__ import annotations

import argparse

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config
from scarlet_ray.evaluation.stages import retrieval


def main(cfg: Config, args: argparse.Namespace) -> int:
    return retrieval(cfg, args.model, args.beir, args.split, args.output,
                     stage_options(args), index=args.index).show()
