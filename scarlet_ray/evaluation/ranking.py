"""Binary-relevance nDCG of one ranking: the one definition the attribution evaluation and the
trainer's held-out guard share (pure numpy, no model imports)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np


def ndcg_at_k(scores: Sequence[float], relevant: Sequence[bool], k: int | None = None,
              ties: Literal["order", "pessimistic"] = "order") -> float:
    """nDCG@k (all items when ``k`` is None) of ranking items by score.

    ``ties``: ``order`` keeps the input order among equal scores; ``pessimistic`` ranks the
    non-relevant item first, so a model that scores everything alike earns nothing from the order
    the items were listed in (the trainer's guard)."""
    s = np.asarray(scores, dtype=np.float64)
    rel = np.asarray(relevant, dtype=np.float64)
    if rel.sum() == 0:
        raise ValueError("no relevant passage: nDCG undefined")
    k = len(s) if k is None else k
    order = (np.argsort(-s, kind="stable") if ties == "order"
             else np.lexsort((rel, -s)))[:k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((rel[order] * disc[: len(order)]).sum())
    ideal = float(disc[: int(min(k, rel.sum()))].sum())
    return dcg / ideal
