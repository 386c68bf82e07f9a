"""Counterfactual attribution check: the GTI construction, the pair measure, and
``scarlet evaluate attribution --counterfactual`` end to end on the tiny LLaMA."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scarlet_ray.cli import main as cli
from scarlet_ray.evaluation.counterfactual import (
    counterfactual,
    other_answer,
    pair_wins,
    share_won,
    summarise_wins,
)
from scarlet_ray.records import Passage, Sample


def _sample(texts: list[str], gold: list[int], answer: str, sid: str = "q1") -> Sample:
    ps = [Passage(id=f"p{i}", title=f"T{i}", text=t) for i, t in enumerate(texts)]
    return Sample(id=sid, task="nq", input="where?", output=answer, passages=ps,
                  gold_passage_ids=[f"p{i}" for i in gold])


def _replace_all(text: str, old: str, new: str) -> str:
    """Left-to-right, non-overlapping, case-insensitive replacement (ASCII), without ``re``."""
    out, i, low, o = [], 0, text.lower(), old.lower()
    while (j := low.find(o, i)) >= 0:
        out += [text[i:j], new]
        i = j + len(o)
    return "".join(out + [text[i:]])


def test_construction_example():
    s = _sample(["Paris is big.", "The capital: PARIS, and paris.", "Nothing here.", "x"],
                gold=[1, 2], answer=" Paris ")
    cf, pairs = counterfactual(s, "Rome")
    assert pairs == [("p1", "cf-p1")]
    copy = next(p for p in cf.passages if p.id == "cf-p1")
    assert copy.text == "The capital: Rome, and Rome." and copy.title == "T1"
    assert [p.id for p in cf.passages if p.id != "cf-p1"] == ["p0", "p1", "p2", "p3"]
    # the ground truth and the gold ids stay: the true passage should outrank its copy
    assert cf.output == s.output and cf.gold_passage_ids == s.gold_passage_ids
    assert counterfactual(s, "Rome") == (cf, pairs)  # seeded


def test_copy_id_never_collides_and_backslash_is_text():
    s = _sample(["a ans b", "ans"], gold=[0], answer="ans")
    s = s.model_copy(update={"passages": [*s.passages,
                                          Passage(id="cf-p0", title="", text="taken")]})
    cf, pairs = counterfactual(s, r"C:\1 \g<0>")
    assert pairs == [("p0", "cf-p0-1")]
    assert next(p for p in cf.passages if p.id == "cf-p0-1").text == r"a C:\1 \g<0> b"


def test_no_pairs_when_answer_in_no_gold_passage():
    s = _sample(["yes it is", "no"], gold=[1], answer="yes")
    cf, pairs = counterfactual(s, "maybe")
    assert pairs == [] and cf.passages == s.passages


words = st.sampled_from(["ans", "Ans", "ANSwer", "x", "y", "z z", "an", "s"])
texts = st.lists(words, min_size=1, max_size=6).map(" ".join)


@given(ts=st.lists(texts, min_size=1, max_size=6), data=st.data(),
       answer=st.sampled_from(["ans", "z", "an s", "x y"]),
       other=st.text(alphabet="qrt\\1 <>g", min_size=1, max_size=6).filter(str.strip))
def test_construction_properties(ts, data, answer, other):
    gold = data.draw(st.lists(st.integers(0, len(ts) - 1), unique=True, max_size=len(ts)))
    s = _sample(ts, gold, answer, sid="q" * data.draw(st.integers(1, 9)))
    cf, pairs = counterfactual(s, other)
    want = [f"p{i}" for i in gold if answer.lower() in ts[i].lower()]
    assert [a for a, _ in pairs] == want
    copies = {b: a for a, b in pairs}
    assert len(cf.passages) == len(ts) + len(pairs)
    assert len({p.id for p in cf.passages}) == len(cf.passages)
    assert [p for p in cf.passages if p.id not in copies] == list(s.passages)
    orig = {p.id: p for p in s.passages}
    for p in cf.passages:
        if p.id in copies:
            src = orig[copies[p.id]]
            assert p.title == src.title and p.text == _replace_all(src.text, answer, other)
    assert cf.output == s.output and cf.gold_passage_ids == s.gold_passage_ids
    assert cf.input == s.input and cf.id == s.id


def test_other_answer_skips_same_and_containing_answers():
    ss = [_sample(["t"], [], a, sid=f"s{i}")
          for i, a in enumerate(["Paris", "paris", "Paris, France", "Rome"])]
    assert other_answer(ss, 0) == "Rome"
    assert other_answer(ss, 3) == "Paris"  # wraps around
    with pytest.raises(ValueError, match="no other answer"):
        other_answer(ss[:3], 0)


def test_pair_wins_and_summary():
    ids = ["a", "cf-a", "b", "cf-b"]
    assert pair_wins([2.0, 1.0, 0.5, 0.5], ids, [("a", "cf-a"), ("b", "cf-b")]) == [1.0, 0.0]
    assert pair_wins([1.0, 0.0], ["a", "cf-a"], [("a", "cf-a"), ("gone", "cf-gone")]) == [1.0]
    assert share_won([]) is None and share_won([1.0, 0.0, 1.0]) == pytest.approx(2 / 3)
    got = summarise_wins([[1.0, 1.0, 0.0], [0.0], []])
    assert got == {"won": 0.5, "won_per_sample": pytest.approx(1 / 3), "pairs": 4, "n": 2}
    assert summarise_wins([]) == {"won": None, "won_per_sample": None, "pairs": 0, "n": 0}


# ------------------------------------------------------------------ the command
def test_evaluate_attribution_counterfactual_cli(tmp_path, tiny_llama, shared_data, capsys):
    from scarlet_ray.attribution.store import AttributionStore
    from scarlet_ray.datasets import convert

    recs = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=3,
                   passage_words=25).records  # the second answers "yes": in no gold passage
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(r.model_dump_json() + "\n" for r in recs))
    AttributionStore(tmp_path / "attrs").write_rows([{
        "id": r.id, "passage_ids": [p.id for p in r.passages],
        "utility": [float(p.id in r.gold_passage_ids) for p in r.passages], "intercept": 0.0,
        "r2": 1.0, "label": ["mid"] * len(r.passages), "n_masks": 8, "target": "logprob_sum",
        "generator": "tiny"} for r in recs])
    ev = tmp_path / "eval"
    argv = ["evaluate", "attribution", "--attributions", str(tmp_path / "attrs"), "--samples",
            str(samples), "--output", str(ev), "--set", f"models.generator={tiny_llama}",
            "--set", "models.dtype=float32", "--set", "attribution.n_masks=8"]
    assert cli([*argv, "--counterfactual"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["methods"]["perturbation"]["n"] == 3
    cf = metrics["counterfactual"]
    assert set(cf["methods"]) == {"perturbation", "loo", "similarity", "attention", "random"}
    assert cf["skipped"] == {"no_other_answer": 0, "no_answer_in_gold": 1,
                             "attribution_failed": 0, "pairs_cut": 0}
    for m in cf["methods"].values():
        assert m["n"] == 2 and m["pairs"] >= 2 and 0.0 <= m["won"] <= 1.0
    man = json.loads((ev / "manifest.json").read_text())
    assert man["counts"]["counterfactual_pairs"] == cf["methods"]["perturbation"]["pairs"]
    assert man["fingerprint_settings"]["args.counterfactual"] is True
    assert man["fingerprint_settings"]["args.counterfactual.attribution.n_masks"] == 8

    # the flag and the attribution settings it uses are part of the fingerprint
    capsys.readouterr()
    assert cli(argv) == 2
    assert "args.counterfactual" in capsys.readouterr().err
    assert cli([*argv, "--counterfactual", "--set", "attribution.n_masks=16"]) == 2
    assert "args.counterfactual.attribution.n_masks" in capsys.readouterr().err
    assert cli([*argv, "--restart", "--set", "attribution.eval_baselines=[random]"]) == 0
    plain = json.loads((ev / "metrics.json").read_text())
    assert "counterfactual" not in plain and set(plain["methods"]) == {"perturbation", "random"}
