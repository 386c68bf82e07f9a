"""Exactness of the fast path on the real SmolLM2 (slow: real weights, real HotpotQA)."""

from __future__ import annotations

import numpy as np
import pytest

from scarlet_ray.attribution.masks import make_masks
from scarlet_ray.attribution.scoring import naive_scores, prepare_sample, score_masks
from scarlet_ray.attribution.surrogate import fit_surrogate
from scarlet_ray.datasets import convert
from scarlet_ray.models.generator import load_generator


@pytest.mark.slow
def test_fast_path_equals_reference_on_smollm2(shared_data):
    gen = load_generator("smollm2-135m-instruct", dtype="float32", device="cpu")
    s = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=1,
                passage_words=20).records[0]
    # small on purpose (2-core CI): 6 passages of 20 words, 12 masks
    prep = prepare_sample(gen, s.instruction, s.passages[:6], s.input, s.output)
    masks = make_masks(len(prep.passages), 12, seed=0, sample_id=s.id)
    ref = naive_scores(gen, prep, masks)
    fast = score_masks(gen, prep, masks, max_batch_tokens=2048)
    u_ref = fit_surrogate(masks, ref).utility
    u_fast = fit_surrogate(masks, fast).utility
    assert np.max(np.abs(u_ref - u_fast)) < 1e-3 * np.ptp(u_ref)
    assert np.max(np.abs(ref - fast)) < 1e-3 * np.ptp(ref)
