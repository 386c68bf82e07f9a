"""Paired comparison of two methods scored on the same queries.

Benchmarks here compare on tens of questions, where a few hundredths of nDCG is noise; the
bootstrap interval of the mean per-query difference says whether a gain is more than that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def paired_bootstrap(base: Mapping[str, float] | Sequence[float],
                     new: Mapping[str, float] | Sequence[float], n_boot: int = 10000,
                     seed: int = 0) -> dict:
    """Mean of ``new - base`` per query, its 95% bootstrap interval, P(boot <= 0) and
    wins/ties/losses. Mappings are paired by key (they must hold the same keys)."""
    if isinstance(base, Mapping) and isinstance(new, Mapping):
        if set(base) != set(new):
            raise ValueError("paired_bootstrap: base and new score different queries")
        keys = sorted(base)
        d = np.array([new[k] - base[k] for k in keys], dtype=np.float64)
    else:
        b, n = np.asarray(base, dtype=np.float64), np.asarray(new, dtype=np.float64)
        if b.shape != n.shape:
            raise ValueError(f"paired_bootstrap: {b.shape} vs {n.shape} scores")
        d = n - b
    if d.size == 0:
        raise ValueError("paired_bootstrap: no queries")
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    return {"n": int(d.size), "mean_diff": float(d.mean()),
            "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            "p_boot_le_0": float((boots <= 0).mean()),
            "wins": int((d > 1e-9).sum()), "ties": int((abs(d) <= 1e-9).sum()),
            "losses": int((d < -1e-9).sum())}
