"""Fast path == naive reference (fp32), truncation and bad input, on the tiny LLaMA."""

from __future__ import annotations

import numpy as np
import pytest

from scarlet_ray.attribution.engine import AttributionEngine, ScoredSample
from scarlet_ray.attribution.masks import make_masks
from scarlet_ray.attribution.scoring import (
    TARGETS,
    ScoreStats,
    naive_scores,
    prepare_sample,
    score_masks,
    score_masks_multi,
)
from scarlet_ray.config import AttributionConfig, LabelsConfig
from scarlet_ray.models.generator import answer_logprob, load_generator
from scarlet_ray.records import Passage, Sample


@pytest.fixture(scope="module")
def tiny_gen(tiny_llama):
    return load_generator(str(tiny_llama), dtype="float32", device="cpu")


def make_sample(n: int = 6, words: int = 30, sid: str = "s1", answer: str = "Paris") -> Sample:
    rng = np.random.default_rng(len(sid) + n)
    vocab = ["river", "city", "France", "capital", "old", "bridge", "music", "king", "north"]
    ps = [Passage(id=f"p{i}", title=f"Title {i}",
                  text=" ".join(rng.choice(vocab, size=words - i * 3)))
          for i in range(n)]
    return Sample(id=sid, task="nq", instruction="Answer the question.",
                  input="What is the capital of France?", output=answer, passages=ps,
                  gold_passage_ids=["p1"])


@pytest.mark.parametrize("sharing,walkers", [("trie", 1), ("trie", 2), ("trie", 3),
                                             ("prefix", 1)])
@pytest.mark.parametrize("target", ["logprob_sum", "logit_sum", "logit_prob"])
def test_fast_path_equals_naive_reference(tiny_gen, target, sharing, walkers):
    s = make_sample()
    prep = prepare_sample(tiny_gen, s.instruction, s.passages, s.input, s.output)
    masks = make_masks(len(s.passages), 24, seed=3, sample_id=s.id, include_full=True,
                       include_empty=True)
    masks = np.concatenate([masks, masks[:4]])  # duplicates are scored once, returned per row
    ref_stats, fast_stats = ScoreStats(), ScoreStats()
    ref = naive_scores(tiny_gen, prep, masks, target, ref_stats)
    # tiny budget: several buckets, padding, and the prefix cache expanded per batch
    fast = score_masks(tiny_gen, prep, masks, target, max_batch_tokens=600, stats=fast_stats,
                       sharing=sharing, walkers=walkers)
    assert fast.shape == ref.shape
    tol = 1e-3 * max(np.ptp(ref), 1e-6)
    assert np.max(np.abs(fast - ref)) < tol
    assert fast_stats.prefix_len >= 8
    assert fast_stats.n_forwards > 2
    assert fast_stats.n_unique_masks == len(np.unique(masks, axis=0))
    assert fast_stats.n_tokens < ref_stats.n_tokens
    if sharing == "trie" and walkers == 1:  # the tree shares passages, not only the prefix
        prefix_only = ScoreStats()
        score_masks(tiny_gen, prep, masks, target, stats=prefix_only, sharing="prefix")
        assert fast_stats.n_tokens < 0.8 * prefix_only.n_tokens
    # surrogate utilities agree too
    from scarlet_ray.attribution.surrogate import fit_surrogate

    u_ref = fit_surrogate(masks, ref).utility
    u_fast = fit_surrogate(masks, fast).utility
    assert np.max(np.abs(u_ref - u_fast)) < 1e-3 * max(np.ptp(u_ref), 1e-6)


def test_parallel_tree_walks_build_no_autograd_graph(tiny_gen):
    """Grad mode is per thread: the walker threads must not record activations."""
    import torch

    from scarlet_ray.attribution.trie import trie_hidden_rows

    s = make_sample()
    prep = prepare_sample(tiny_gen, s.instruction, s.passages, s.input, s.output)
    masks = make_masks(len(s.passages), 16, seed=2, sample_id=s.id)
    from scarlet_ray.attribution.scoring import masked_prompt_ids

    seqs = [masked_prompt_ids(tiny_gen, prep, m) + prep.answer_ids for m in masks]
    spans = [(len(q) - len(prep.answer_ids) - 1, len(q) - 1) for q in seqs]
    with torch.no_grad():
        rows, _, _ = trie_hidden_rows(tiny_gen.model.model, seqs, spans, tiny_gen.device,
                                      workers=2)
    assert not any(r.requires_grad for r in rows)


def test_all_targets_from_one_pass_equal_single_target_calls(tiny_gen):
    s = make_sample()
    prep = prepare_sample(tiny_gen, s.instruction, s.passages, s.input, s.output)
    masks = make_masks(len(s.passages), 16, seed=1, sample_id=s.id)
    multi = score_masks_multi(tiny_gen, prep, masks, TARGETS)
    for t in TARGETS:
        np.testing.assert_allclose(multi[t], score_masks(tiny_gen, prep, masks, t), rtol=1e-6)


def test_full_mask_matches_generator_reference(tiny_gen):
    s = make_sample()
    prep = prepare_sample(tiny_gen, s.instruction, s.passages, s.input, s.output)
    full = np.ones((2, len(s.passages)), dtype=bool)
    full[1, 0] = False
    v = score_masks(tiny_gen, prep, full, "logprob_sum", prefix_cache=False)
    ref = answer_logprob(tiny_gen, s.instruction, s.passages, s.input, s.output)
    assert abs(v[0] - ref) < 1e-3


def test_truncation_is_recorded_not_silent(tiny_gen):
    s = make_sample(n=6, words=60)
    full_len = len(tiny_gen.prompt_ids(s.instruction, s.passages, s.input))
    budget = full_len - 40
    prep = prepare_sample(tiny_gen, s.instruction, s.passages, s.input, s.output,
                          max_context_tokens=budget)
    assert prep.truncated and "fit" in prep.truncation_note
    assert len(tiny_gen.prompt_ids(s.instruction, prep.passages, s.input)) + len(
        prep.answer_ids) <= budget
    eng = AttributionEngine(tiny_gen, AttributionConfig(n_masks=8, max_context_tokens=budget),
                            LabelsConfig())
    scored = eng.score(s)
    assert scored.truncated == prep.truncated
    assert scored.masks.shape[1] == len(scored.passage_ids) < len(s.passages) + 1


@pytest.mark.parametrize("case,match", [
    ("one_passage", "at least 2"),
    ("empty_answer", "empty"),
    ("too_long", "budget"),
])
def test_bad_samples_raise_clear_errors(tiny_gen, case, match):
    s = make_sample()
    if case == "one_passage":
        s = s.model_copy(update={"passages": s.passages[:1], "gold_passage_ids": []})
    elif case == "empty_answer":
        s = s.model_copy(update={"output": "   "})
    cfg = AttributionConfig(n_masks=8, max_context_tokens=64 if case == "too_long" else None)
    eng = AttributionEngine(tiny_gen, cfg, LabelsConfig())
    with pytest.raises(ValueError, match=match):
        eng.score(s)


def test_scored_sample_row_roundtrip_and_fit_is_pure(tiny_gen):
    import pyarrow as pa

    eng = AttributionEngine(tiny_gen, AttributionConfig(n_masks=12), LabelsConfig())
    scored = eng.score(make_sample())
    row = pa.Table.from_pylist([scored.to_row()]).to_pylist()[0]
    back = ScoredSample.from_row(row)
    assert back.masks.dtype == bool and back.masks.shape == scored.masks.shape
    assert np.array_equal(back.masks, scored.masks)
    assert np.allclose(back.scores, scored.scores)
    assert back.answer_tokens == scored.answer_tokens == len(eng.prepare(make_sample()).answer_ids)
    a1 = eng.fit(back)
    a2 = AttributionEngine(None, eng.cfg, eng.labels_cfg, generator_name=tiny_gen.name).fit(back)
    assert a1 == a2
    assert a1.n_masks == 12 and len(a1.utility) == 6
