"""``scarlet evaluate rag``: retriever + generator on samples -> predictions.jsonl, metrics.json."""

from __future__ import annotations

import argparse

from scarlet_ray.commands import stage_options
from scarlet_ray.config import Config
from scarlet_ray.evaluation.stages import rag


def main(cfg: Config, args: argparse.Namespace) -> int:
    return rag(cfg, args.model, args.samples, args.corpus, args.output,
               stage_options(args), index=args.index).show()
