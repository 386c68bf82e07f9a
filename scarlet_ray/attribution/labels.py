"""Stage 4: 1-D utilities -> pos/mid/neg labels, and FlagEmbedding training examples.

The paper's rule (DESIGN.md section 5): ``KMeans(n_clusters=3, random_state=42)`` on the
utilities; positive = the cluster holding the highest utility, negative = the cluster holding the
lowest; the sample is dropped if a cluster is empty or there are at least as many positives as
negatives. Alternatives: the exact optimal 1-D k-means (dynamic programming, no seed dependence)
and the paper's fixed top-1 / bottom-5 ablation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scarlet_ray.formatting import passage_text
from scarlet_ray.records import Attribution, Sample, TrainingExample

DROP_EMPTY = "empty_cluster"
DROP_POS_GE_NEG = "pos_not_fewer_than_neg"
DROP_TOO_FEW = "too_few_passages"


@dataclass
class LabelResult:
    labels: list[str]
    drop_reason: str | None  # None: usable as a training example


def kmeans_clusters(u: np.ndarray, k: int = 3, random_state: int = 42) -> np.ndarray:
    """sklearn KMeans on 1-D values, as the paper's released code does."""
    from sklearn.cluster import KMeans

    x = np.asarray(u, dtype=np.float64).reshape(-1, 1)
    if len(x) < k:
        return np.zeros(len(x), dtype=int)
    with warnings.catch_warnings():  # fewer distinct values than k: reported as empty cluster
        warnings.simplefilter("ignore")
        return KMeans(n_clusters=k, random_state=random_state, n_init=10).fit_predict(x)


def optimal_kmeans_1d(u: np.ndarray, k: int = 3) -> np.ndarray:
    """Exact 1-D k-means (minimum within-cluster squared error) by dynamic programming.

    Optimal 1-D clusters are contiguous runs of the sorted values; ``cost[j][i]`` is the best
    cost of splitting the first ``i`` sorted values into ``j`` clusters. O(k n^2), n ~ 10-50.
    """
    x = np.asarray(u, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=int)
    k = min(k, n)
    order = np.argsort(x, kind="stable")
    s = x[order]
    c1 = np.concatenate([[0.0], np.cumsum(s)])
    c2 = np.concatenate([[0.0], np.cumsum(s * s)])

    def sse(a: int, b: int) -> float:  # values s[a:b]
        m = b - a
        tot = c1[b] - c1[a]
        return float(c2[b] - c2[a] - tot * tot / m)

    inf = float("inf")
    cost = np.full((k + 1, n + 1), inf)
    back = np.zeros((k + 1, n + 1), dtype=int)
    cost[0, 0] = 0.0
    for j in range(1, k + 1):
        for i in range(j, n + 1):
            best, arg = inf, j - 1
            for t in range(j - 1, i):
                c = cost[j - 1, t] + sse(t, i)
                if c < best - 1e-15:
                    best, arg = c, t
            cost[j, i], back[j, i] = best, arg
    labels_sorted = np.zeros(n, dtype=int)
    i = n
    for j in range(k, 0, -1):
        t = back[j, i]
        labels_sorted[t:i] = j - 1
        i = t
    out = np.empty(n, dtype=int)
    out[order] = labels_sorted
    return out


def _clusters_to_labels(u: np.ndarray, clusters: np.ndarray, k: int) -> LabelResult:
    ids = [c for c in range(k) if np.any(clusters == c)]
    if len(ids) < k:
        # still name pos/neg where possible so the record is informative; the sample is dropped
        labels = ["mid"] * len(u)
        if ids:
            hi = max(ids, key=lambda c: u[clusters == c].max())
            lo = min(ids, key=lambda c: u[clusters == c].min())
            for i, c in enumerate(clusters):
                labels[i] = "pos" if c == hi else ("neg" if c == lo and lo != hi else "mid")
        return LabelResult(labels, DROP_EMPTY)
    hi = max(ids, key=lambda c: u[clusters == c].max())
    lo = min(ids, key=lambda c: u[clusters == c].min())
    labels = ["pos" if c == hi else "neg" if c == lo else "mid" for c in clusters]
    return LabelResult(labels, drop_reason(labels))


def drop_reason(labels: Sequence[str]) -> str | None:
    """Why a labelled sample cannot be a training example (the paper's rules), or None."""
    n_pos = sum(1 for x in labels if x == "pos")
    n_neg = sum(1 for x in labels if x == "neg")
    if n_pos == 0 or n_neg == 0:
        return DROP_EMPTY
    if n_pos >= n_neg:
        return DROP_POS_GE_NEG
    return None


def assign_labels(utility: Sequence[float], method: str = "kmeans", k: int = 3,
                  random_state: int = 42, fixed_top: int = 1,
                  fixed_bottom: int = 5) -> LabelResult:
    u = np.asarray(utility, dtype=np.float64)
    if method == "kmeans":
        return _clusters_to_labels(u, kmeans_clusters(u, k, random_state), k)
    if method == "kmeans_dp":
        if len(u) < k:
            return LabelResult(["mid"] * len(u), DROP_EMPTY)
        return _clusters_to_labels(u, optimal_kmeans_1d(u, k), k)
    if method == "fixed":
        if len(u) < fixed_top + fixed_bottom:
            return LabelResult(["mid"] * len(u), DROP_TOO_FEW)
        order = np.argsort(-u, kind="stable")
        labels = ["mid"] * len(u)
        for i in order[:fixed_top]:
            labels[i] = "pos"
        for i in order[len(u) - fixed_bottom:]:
            labels[i] = "neg"
        return LabelResult(labels, None)
    raise ValueError(f"unknown labels method {method!r}; known: kmeans, kmeans_dp, fixed")


def training_example(sample: Sample, attr: Attribution) -> tuple[TrainingExample | None, str | None]:
    """One FlagEmbedding line from a sample and its attribution, or (None, drop reason)."""
    if attr.id != sample.id:
        raise ValueError(f"attribution {attr.id!r} does not belong to sample {sample.id!r}")
    reason = drop_reason(attr.label)
    if reason is not None:
        return None, reason
    by_id = {p.id: p for p in sample.passages}
    missing = [pid for pid in attr.passage_ids if pid not in by_id]
    if missing:
        raise ValueError(f"attribution {attr.id}: passage ids {missing} not in the sample")
    pos, neg, pos_s, neg_s = [], [], [], []
    for pid, util, lab in zip(attr.passage_ids, attr.utility, attr.label, strict=True):
        p = by_id[pid]
        if lab == "pos":
            pos.append(passage_text(p.title, p.text))
            pos_s.append(float(util))
        elif lab == "neg":
            neg.append(passage_text(p.title, p.text))
            neg_s.append(float(util))
    return TrainingExample(query=sample.input, pos=pos, neg=neg, pos_scores=pos_s,
                           neg_scores=neg_s, prompt=sample.instruction), None
