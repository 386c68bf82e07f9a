"""Random keep/drop masks over a sample's passages, reproducible from (seed, sample id).

The RNG seed comes from a SHA-256 of the seed and the sample id, never Python's ``hash()``
(salted per process), so a resumed run or another Ray worker draws exactly the same masks.
"""

from __future__ import annotations

import hashlib

import numpy as np


def mask_seed(seed: int, sample_id: str) -> int:
    """A stable 64-bit seed for one sample."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def make_masks(n_passages: int, n_masks: int, keep_prob: float = 0.5, *, seed: int = 0,
               sample_id: str = "", include_full: bool = False, include_empty: bool = False,
               dedupe: bool = False) -> np.ndarray:
    """``(n_masks, n_passages)`` bool masks; True keeps the passage in the context.

    ``include_full``/``include_empty`` put the all-kept / none-kept masks first (counted in
    ``n_masks``). ``dedupe`` redraws duplicates until ``n_masks`` distinct masks exist or the
    space of 2**k masks is exhausted (then fewer rows are returned).
    """
    if n_passages < 1:
        raise ValueError("need at least one passage to build masks")
    if n_masks < 1:
        raise ValueError("n_masks must be >= 1")
    if not 0.0 < keep_prob < 1.0:
        raise ValueError("keep_prob must be in (0, 1)")
    rng = np.random.default_rng(mask_seed(seed, sample_id))
    rows: list[np.ndarray] = []
    if include_full:
        rows.append(np.ones(n_passages, dtype=bool))
    if include_empty:
        rows.append(np.zeros(n_passages, dtype=bool))
    rows = rows[:n_masks]
    if not dedupe:
        need = n_masks - len(rows)
        if need > 0:
            rows.extend(rng.random((need, n_passages)) < keep_prob)
        return np.asarray(rows, dtype=bool).reshape(len(rows), n_passages)
    limit = 2 ** n_passages if n_passages < 62 else None
    seen = {r.tobytes() for r in rows}
    out = list(rows)
    tries = 0
    while len(out) < n_masks and (limit is None or len(seen) < limit) and tries < 100 * n_masks:
        cand = rng.random(n_passages) < keep_prob
        tries += 1
        key = cand.tobytes()
        if key not in seen:
            seen.add(key)
            out.append(cand)
    return np.asarray(out, dtype=bool).reshape(len(out), n_passages)


def unique_rows(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct masks and, for every input row, the index of its distinct mask."""
    uniq, inverse = np.unique(np.asarray(masks, dtype=bool), axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)
