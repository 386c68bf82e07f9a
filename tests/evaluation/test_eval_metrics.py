"""Answer and retrieval metrics against values computed by hand on tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scarlet_ray.evaluation.dense import top_k
from scarlet_ray.evaluation.metrics import (
    normalize_answer,
    references,
    rouge_l,
    score,
    substring_match,
    token_f1,
)
from scarlet_ray.evaluation.retrieval import (
    compute_metrics,
    per_query_metrics,
    read_trec_run,
    write_trec_run,
)
from scarlet_ray.synthesis.tasks import BUILTIN_TASKS

# ------------------------------------------------------------------ answer metrics


def test_normalize_answer_squad_rules():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theory") == "theory"  # 'the' only as a whole word


def test_substring_match():
    assert substring_match("It was Douglas Adams, I think.", ["douglas adams"]) == 1.0
    assert substring_match("It was Douglas Adams.", ["Adams, Douglas"]) == 0.0
    assert substring_match("apple pie", ["an apple"]) == 1.0
    assert substring_match("no idea", ["Paris", "paris france"]) == 0.0
    assert substring_match("PARIS!", ["x", "Paris"]) == 1.0
    assert substring_match("anything", ["", "  "]) == 0.0  # empty answer never matches
    # whole words: "no" is not found inside "not" or "know"
    assert substring_match("I know they are not", ["no"]) == 0.0
    assert substring_match("No, they are not.", ["no"]) == 1.0
    assert substring_match("the Parisian cafe", ["Paris"]) == 0.0


def test_token_f1_hand_computed():
    # pred tokens {cat sat on mat}, gold {cat on mat}: 3 common, P=3/4, R=1 -> F1 = 6/7
    assert token_f1("the cat sat on the mat", ["a cat on a mat"]) == pytest.approx(6 / 7)
    # best over aliases
    assert token_f1("the cat sat on the mat", ["dog", "cat"]) == pytest.approx(2 * 0.25 / 1.25)
    assert token_f1("dog", ["cat"]) == 0.0
    # repeated tokens count with multiplicity: pred {a? no: 'x x y'} gold 'x y y' -> common x,y
    assert token_f1("x x y", ["x y y"]) == pytest.approx(2 / 3)


def test_rouge_l_hand_computed():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 tokens; P=5/6, R=1 -> F=10/11
    assert rouge_l("the cat sat on the mat", ["the cat on the mat"]) == pytest.approx(10 / 11)
    # reversed order: LCS = 1 of 2 tokens each way -> 1/2
    assert rouge_l("b a", ["a b"]) == pytest.approx(0.5)
    assert rouge_l("x", ["", "y"]) == 0.0


def test_score_uses_task_metric_and_references():
    refs = references("Douglas Adams", ["D. Adams", "Douglas Adams", " "])
    assert refs == ["Douglas Adams", "D. Adams"]
    assert score(BUILTIN_TASKS["nq"].metric, "He was D. Adams", refs) == 1.0
    assert score(BUILTIN_TASKS["fever"].metric, "SUPPORTS", ["SUPPORTS"]) == 1.0
    assert score(BUILTIN_TASKS["fever"].metric, "REFUTES", ["SUPPORTS"]) == 0.0
    assert score(BUILTIN_TASKS["eli5"].metric, "b a", ["a b"]) == pytest.approx(0.5)
    assert score(BUILTIN_TASKS["wow"].metric, "x x y", ["x y y"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown metric"):
        score("bleu", "a", ["a"])


@given(st.text(max_size=30), st.lists(st.text(max_size=30), min_size=1, max_size=3))
@settings(max_examples=100, deadline=None)
def test_answer_metrics_bounded_and_exact_match_is_one(pred, answers):
    for m in ("substring", "rougeL", "f1"):
        v = score(m, pred, answers)
        assert 0.0 <= v <= 1.0 + 1e-9
    if normalize_answer(pred):
        assert substring_match(pred, [pred]) == 1.0
        assert token_f1(pred, [pred]) == pytest.approx(1.0)


# ------------------------------------------------------------------ retrieval metrics

QRELS = {
    "q1": {"d1": 1, "d3": 1},
    "q2": {"d5": 1},
    "q3": {"d9": 1},          # judged but the run has nothing for it: counts as zero
    "q4": {"d1": 2, "d2": 1},  # graded relevance
}


def _run():
    run = {
        "q1": {"d2": 0.9, "d1": 0.8, "d4": 0.7, "d3": 0.6},
        # d5 at rank 12: outside the top 10, inside the top 100
        "q2": {**{f"x{i}": 1.0 - i / 100 for i in range(11)}, "d5": 0.5},
        "q4": {"d2": 0.9, "d1": 0.8},
    }
    return run


def test_retrieval_metrics_hand_computed():
    per_q = per_query_metrics(QRELS, _run())
    # q1: relevant at ranks 2 and 4; trec_eval gains are the grades (linear)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert per_q["q1"]["ndcg@10"] == pytest.approx(dcg / idcg, abs=1e-4)
    assert per_q["q1"]["recall@10"] == pytest.approx(1.0)
    assert per_q["q1"]["mrr@10"] == pytest.approx(0.5)
    # q2: rank 12 -> nothing in the top 10 (MRR@10 = 0, not 1/12), found within 100
    assert per_q["q2"] == pytest.approx({"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 1.0,
                                         "mrr@10": 0.0})
    assert per_q["q3"] == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    # q4: grade-1 doc first, grade-2 doc second
    dcg4 = 1 / math.log2(2) + 2 / math.log2(3)
    idcg4 = 2 / math.log2(2) + 1 / math.log2(3)
    assert per_q["q4"]["ndcg@10"] == pytest.approx(dcg4 / idcg4, abs=1e-4)
    assert per_q["q4"]["mrr@10"] == pytest.approx(1.0)

    mean = compute_metrics(QRELS, _run())
    assert mean["ndcg@10"] == pytest.approx((dcg / idcg + dcg4 / idcg4) / 4, abs=1e-4)
    assert mean["recall@10"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert mean["recall@100"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    assert mean["mrr@10"] == pytest.approx((0.5 + 0 + 0 + 1) / 4)


def test_trec_run_roundtrip(tmp_path):
    hits = {q: sorted(d.items(), key=lambda kv: -kv[1]) for q, d in _run().items()}
    n = write_trec_run(tmp_path / "run.trec", hits, tag="my model")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert n == len(lines) == sum(len(v) for v in hits.values())
    first = lines[0].split()
    assert first == ["q1", "Q0", "d2", "1", "0.900000", "my_model"]
    back = read_trec_run(tmp_path / "run.trec")
    assert compute_metrics(QRELS, back) == pytest.approx(compute_metrics(QRELS, _run()))


def _exact_scores(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Correctly rounded inner products (math.fsum of exact float64 products): the reference
    that a BLAS matmul is not (its rounding depends on shapes and tile positions)."""
    return np.array([[math.fsum(float(a) * float(b) for a, b in zip(qi, cj, strict=True))
                      for cj in c] for qi in q])


# (1, 40, 40, 17) and (4, 22, 17, 31) failed before the fix: identical corpus rows got
# matmul scores an ulp apart, in an order that depended on the chunking
@given(st.integers(1, 7), st.integers(1, 40), st.integers(1, 50), st.integers(0, 2**31 - 1))
@example(1, 40, 40, 17)
@example(4, 22, 17, 31)
@settings(max_examples=60, deadline=None)
def test_top_k_matches_full_sort(nq, nd, k, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, 4)).astype(np.float32)
    # few distinct values so exact ties (identical rows) happen; ties go to the lower index
    c = rng.integers(-2, 3, size=(nd, 4)).astype(np.float32)
    scores, idx = top_k(q, c, k, chunk_size=7, query_chunk=3)
    full = _exact_scores(q, c)
    for i in range(nq):
        want = sorted(range(nd), key=lambda j: (-full[i, j], j))[: min(k, nd)]
        assert list(idx[i]) == want
        assert np.allclose(scores[i], full[i, want])


def test_top_k_exact_ties_go_to_the_lower_index_whatever_the_chunking():
    """Duplicated documents tie exactly: the lower index wins, and neither the chunk sizes nor
    the other queries in the batch change a query's ranking (a resumed run ranks alike)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 16)).astype(np.float32)
    c = np.concatenate([base, base[::-1], base])  # each row three times, at 3 positions
    q = rng.standard_normal((9, 16)).astype(np.float32)
    ref_s, ref_i = top_k(q, c, 15)
    for chunk, qchunk in [(1, 1), (2, 4), (7, 3), (15, 9), (4, 1)]:
        s, i = top_k(q, c, 15, chunk_size=chunk, query_chunk=qchunk)
        assert np.array_equal(i, ref_i) and np.array_equal(s, ref_s)
    for row in range(9):  # a query alone ranks as it does in the batch
        s, i = top_k(q[row:row + 1], c, 15)
        assert np.array_equal(i[0], ref_i[row]) and np.array_equal(s[0], ref_s[row])
    for row in range(9):
        # the three copies of a document are adjacent in the ranking, lower index first, and
        # have equal scores
        for a in range(0, 15, 3):
            trio = ref_i[row, a:a + 3]
            assert list(trio) == sorted(trio)
            assert len({tuple(c[j]) for j in trio}) == 1
            assert ref_s[row, a] == ref_s[row, a + 1] == ref_s[row, a + 2]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.floats(-0.5, 0.5))
def test_paired_bootstrap_of_a_constant_shift(scores, shift):
    from scarlet_ray.evaluation.compare import paired_bootstrap

    base = {f"q{i}": x for i, x in enumerate(scores)}
    new = {k: v + shift for k, v in base.items()}
    r = paired_bootstrap(base, new, n_boot=200)
    assert r["n"] == len(scores)
    assert abs(r["mean_diff"] - shift) < 1e-9
    assert abs(r["ci95"][0] - shift) < 1e-9 and abs(r["ci95"][1] - shift) < 1e-9


def test_paired_bootstrap_separates_noise_from_a_gain():
    from scarlet_ray.evaluation.compare import paired_bootstrap

    rng = np.random.default_rng(0)
    base = rng.random(200)
    noise = paired_bootstrap(base, base + rng.normal(0, 0.1, 200))
    gain = paired_bootstrap(base, base + 0.05 + rng.normal(0, 0.1, 200))
    assert noise["ci95"][0] < 0 < noise["ci95"][1]
    assert gain["ci95"][0] > 0 and gain["wins"] > gain["losses"]
    with pytest.raises(ValueError, match="different queries"):
        paired_bootstrap({"a": 1.0}, {"b": 1.0})
