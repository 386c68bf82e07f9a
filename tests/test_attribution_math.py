"""Masks reproducibility, surrogate recovery (property tests) and the labelling rules."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from scarlet_ray.attribution.labels import (
    DROP_EMPTY,
    DROP_POS_GE_NEG,
    assign_labels,
    kmeans_clusters,
    optimal_kmeans_1d,
    training_example,
)
from scarlet_ray.attribution.masks import make_masks, mask_seed
from scarlet_ray.attribution.surrogate import fit_surrogate
from scarlet_ray.records import Attribution, Passage, Sample

# ---------------------------------------------------------------- masks


def test_masks_reproducible_and_per_sample():
    a = make_masks(10, 64, 0.5, seed=7, sample_id="q1")
    b = make_masks(10, 64, 0.5, seed=7, sample_id="q1")
    c = make_masks(10, 64, 0.5, seed=7, sample_id="q2")
    assert a.shape == (64, 10) and a.dtype == bool
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # stable across processes: a sha256 value, not Python's salted hash()
    assert mask_seed(7, "q1") == mask_seed(7, "q1") == int.from_bytes(
        __import__("hashlib").sha256(b"7:q1").digest()[:8], "little")
    assert 0.4 < a.mean() < 0.6


def test_masks_options():
    m = make_masks(5, 40, seed=1, sample_id="x", include_full=True, include_empty=True,
                   dedupe=True)
    assert m[0].all() and not m[1].any()
    assert len(np.unique(m, axis=0)) == len(m) == 32  # 2**5 distinct masks exist
    m2 = make_masks(12, 64, seed=1, sample_id="x", dedupe=True)
    assert len(np.unique(m2, axis=0)) == 64


# ---------------------------------------------------------------- surrogate recovery


@settings(max_examples=25, deadline=None)
@given(k=st.integers(6, 12), seed=st.integers(0, 10_000))
def test_ridge_recovers_additive_ranking(k, seed):
    rng = np.random.default_rng(seed)
    # distinct utilities (gap >= 0.2 score units) in random order, noise 0.05
    true = rng.permutation(np.linspace(-2, 2, k)) * rng.uniform(0.5, 2)
    masks = make_masks(k, 64, seed=seed, sample_id="additive")
    y = masks @ true - 5 + rng.normal(0, 0.05, len(masks))
    fit = fit_surrogate(masks, y, "ridge", alpha=1.0)
    rho = spearmanr(fit.utility, true).statistic
    assert rho >= 0.95
    assert fit.r2 is not None and fit.r2 > 0.8


@settings(max_examples=25, deadline=None)
@given(k=st.integers(6, 12), seed=st.integers(0, 10_000),
       kind=st.sampled_from(["ridge", "lasso"]))
def test_surrogate_ranks_both_halves_of_synergy_above_distractors(k, seed, kind):
    """Two-hop chain: the answer needs passages a AND b; distractors add small noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.choice(k, 2, replace=False)
    distract = rng.normal(0, 0.1, k)
    distract[[a, b]] = 0
    masks = make_masks(k, 64, seed=seed, sample_id="synergy")
    y = 4.0 * (masks[:, a] & masks[:, b]) + masks @ distract + rng.normal(0, 0.05, len(masks))
    fit = fit_surrogate(masks, y, kind, alpha=1.0 if kind == "ridge" else 0.01)
    others = np.delete(fit.utility, [a, b])
    assert min(fit.utility[a], fit.utility[b]) > others.max()


def test_r2_flags_non_linear_scores():
    rng = np.random.default_rng(0)
    masks = make_masks(8, 64, seed=0, sample_id="xor")
    y = (masks[:, 0] ^ masks[:, 1]).astype(float) + rng.normal(0, 0.01, 64)
    fit = fit_surrogate(masks, y)
    assert fit.r2 is not None and fit.r2 < 0.2
    assert fit_surrogate(masks, np.zeros(64)).r2 is None


# ---------------------------------------------------------------- labels


def test_kmeans_paper_rules():
    u = [5.0, 4.8, 0.1, 0.0, -0.1, 0.05, -2.0, -2.1, -1.9, -2.2]
    res = assign_labels(u, "kmeans")
    assert res.labels[:2] == ["pos", "pos"]
    assert res.labels[6:] == ["neg"] * 4
    assert set(res.labels[2:6]) == {"mid"}
    assert res.drop_reason is None
    # as many positives as negatives -> dropped
    res2 = assign_labels([5, 5.1, 5.2, 0, 0.1, -3, -3.1, -3.2], "kmeans")
    assert res2.drop_reason == DROP_POS_GE_NEG
    # fewer distinct values than clusters -> an empty cluster -> dropped
    res3 = assign_labels([1.0, 1.0, 0.0, 0.0, 0.0], "kmeans")
    assert res3.drop_reason == DROP_EMPTY


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=15))
def test_dp_kmeans_is_optimal_and_not_worse_than_sklearn(vals):
    x = np.asarray(vals)

    def sse(lab):
        return sum(float(((x[lab == c] - x[lab == c].mean()) ** 2).sum())
                   for c in np.unique(lab))

    dp = optimal_kmeans_1d(x, 3)
    km = kmeans_clusters(x, 3, 42)
    assert sse(dp) <= sse(km) + 1e-9
    # brute force over all contiguous splits of the sorted values
    s = np.sort(x)
    n = len(s)
    best = min(
        sum(float(((p - p.mean()) ** 2).sum()) for p in (s[:i], s[i:j], s[j:]) if len(p))
        for i in range(1, n) for j in range(i + 1, n))
    assert abs(sse(dp) - best) < 1e-6


def test_fixed_top1_bottom5():
    u = np.arange(10.0)
    res = assign_labels(u, "fixed", fixed_top=1, fixed_bottom=5)
    assert res.labels[9] == "pos" and res.labels[:5] == ["neg"] * 5
    assert res.labels[5:9] == ["mid"] * 4 and res.drop_reason is None
    assert assign_labels(u[:4], "fixed").drop_reason is not None


def test_training_example_uses_labels_and_instruction():
    ps = [Passage(id=f"p{i}", title=f"T{i}", text=f"text {i}") for i in range(4)]
    s = Sample(id="a", task="nq", instruction="Do it.", input="q?", output="x", passages=ps)
    attr = Attribution(id="a", passage_ids=["p0", "p1", "p2", "p3"], utility=[3, 0, -1, -1.1],
                       intercept=0, r2=0.5, label=["pos", "mid", "neg", "neg"], n_masks=8,
                       target="logprob_sum", generator="g")
    ex, why = training_example(s, attr)
    assert why is None
    assert ex.query == "q?" and ex.prompt == "Do it."
    assert ex.pos == ["T0\ntext 0"] and ex.neg == ["T2\ntext 2", "T3\ntext 3"]
    assert ex.pos_scores == [3.0] and ex.neg_scores == [-1.0, -1.1]
    bad = attr.model_copy(update={"label": ["pos", "pos", "neg", "neg"]})
    assert training_example(s, bad) == (None, DROP_POS_GE_NEG)
