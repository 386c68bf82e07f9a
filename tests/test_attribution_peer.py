"""Against the peer: ContextCite 0.0.4 itself, on the same masks and the same prompts.

Our ``logit_prob`` target and our LASSO surrogate are meant to be ContextCite's; these tests run
ContextCite (its ablation loop and its solver) next to ours, so a drift on either side fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from scarlet_ray.attribution.engine import AttributionEngine
from scarlet_ray.attribution.scoring import score_masks_multi
from scarlet_ray.attribution.surrogate import fit_lasso, fit_ridge, fit_surrogate
from scarlet_ray.config import AttributionConfig, LabelsConfig
from scarlet_ray.models.generator import load_generator
from scarlet_ray.records import Passage, Sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), answer_tokens=st.integers(1, 12),
       k=st.integers(3, 12))
def test_lasso_is_contextcite_solver(seed, answer_tokens, k):
    from context_cite.solver import LassoRegression

    rng = np.random.default_rng(seed)
    X = rng.random((64, k)) < 0.5
    y = (X @ rng.normal(0, 2, k) + rng.normal(0, 0.5, 64)) * answer_tokens
    theirs_w, theirs_b = LassoRegression(0.01).fit(X, y, answer_tokens)
    ours_w, ours_b = fit_lasso(X, y, 0.01, scale=answer_tokens)
    span = max(float(np.ptp(y)), 1e-9)
    assert np.max(np.abs(ours_w - theirs_w)) < 1e-3 * span
    assert abs(ours_b - float(theirs_b)) < 1e-3 * span


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), answer_tokens=st.integers(1, 12))
def test_per_token_scale_is_a_no_op_for_ridge(seed, answer_tokens):
    rng = np.random.default_rng(seed)
    X = (rng.random((64, 8)) < 0.5).astype(float)
    y = X @ rng.normal(0, 1, 8) + rng.normal(0, 0.3, 64)
    plain = fit_ridge(X, y, 1.0)[0]
    scaled = fit_surrogate(X, y, "ridge", 1.0, answer_tokens=answer_tokens).utility
    assert np.allclose(plain, scaled, atol=1e-9)


def test_same_scores_and_attributions_as_contextcite_on_its_masks(tiny_llama):
    """fp32, tiny LLaMA: ContextCite's own ablation loop and solver vs our scorer and LASSO."""
    from contextcite_peer import contextcite_utilities

    gen = load_generator(str(tiny_llama), dtype="float32", device="cpu")
    vocab = ["river", "city", "France", "capital", "old", "bridge", "music", "king"]
    rng = np.random.default_rng(3)
    sample = Sample(
        id="peer", task="nq", instruction="Answer the question.",
        input="What is the capital of France?", output="Paris, on the Seine",
        passages=[Passage(id=f"p{i}", title=f"T{i}", text=" ".join(rng.choice(vocab, 12 + i)))
                  for i in range(6)])
    eng = AttributionEngine(gen, AttributionConfig(n_masks=16), LabelsConfig())
    prep = eng.prepare(sample)
    util, info = contextcite_utilities(gen, sample.model_copy(update={"passages": prep.passages}),
                                       24)
    masks = info["masks"]
    assert masks.shape == (24, 6) and 0 < masks.mean() < 1
    ours = score_masks_multi(gen, prep, masks, ["logit_prob"])["logit_prob"]
    theirs = info["target"]
    span = float(np.ptp(theirs))
    assert span > 0
    assert np.max(np.abs(ours - theirs)) < 1e-4 * span
    fit = fit_surrogate(masks, ours, "lasso", 0.01, answer_tokens=len(prep.answer_ids))
    assert len(prep.answer_ids) > 1  # the per-token scale matters only then
    assert np.max(np.abs(fit.utility - util)) < 1e-3 * span
