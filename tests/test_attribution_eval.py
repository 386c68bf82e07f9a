"""nDCG and the attention baseline's passage spans."""

from __future__ import annotations

import numpy as np
import pytest

from scarlet_ray.evaluation.ranking import ndcg_at_k


def test_ndcg_values():
    rel = [False, True, False, True]
    assert ndcg_at_k([0, 9, 1, 8], rel, 1) == 1.0
    assert ndcg_at_k([0, 9, 1, 8], rel, 5) == pytest.approx(1.0)
    assert ndcg_at_k([9, 0, 8, 1], rel, 1) == 0.0
    want = (1 / np.log2(4) + 1 / np.log2(5)) / (1 + 1 / np.log2(3))
    assert ndcg_at_k([9, 1, 8, 0], rel, 5) == pytest.approx(want)
    with pytest.raises(ValueError):
        ndcg_at_k([1, 2], [False, False], 1)


def test_attention_spans_cover_passages(tiny_llama):
    from scarlet_ray.attribution.scoring import prepare_sample
    from scarlet_ray.evaluation.attribution import attention_scores, passage_token_spans
    from scarlet_ray.models.generator import load_generator
    from scarlet_ray.records import Passage

    gen = load_generator(str(tiny_llama), dtype="float32", device="cpu")
    ps = [Passage(id=f"p{i}", title=f"T{i}", text=f"word{i} " * (5 + i)) for i in range(3)]
    prep = prepare_sample(gen, "Answer.", ps, "q?", "yes")
    ids, spans = passage_token_spans(gen, prep)
    assert ids == gen.prompt_ids("Answer.", ps, "q?")
    assert all(a < b for a, b in spans)
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0]
    att = attention_scores(gen, prep)
    assert att.shape == (3,) and np.all(att > 0)
