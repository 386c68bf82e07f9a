"""The trainer's guard: held-out split, its ranking measure, best-step export, early stop, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scarlet_ray.config import load_config
from scarlet_ray.evaluation.ranking import ndcg_at_k
from scarlet_ray.records import TrainingExample
from scarlet_ray.training.validation import BestTracker, split_validation


def ndcg_of_scores(scores, relevant):
    return ndcg_at_k(scores, relevant, ties="pessimistic")


def _ex(i: int) -> TrainingExample:
    return TrainingExample(query=f"q{i}", pos=[f"p{i}"], neg=[f"n{i}"])


def test_split_is_seeded_disjoint_and_refuses_to_leave_nothing():
    exs = [_ex(i) for i in range(20)]
    tr, va = split_validation(exs, 0.25, seed=3)
    assert len(va) == 5 and len(tr) == 15
    assert {e.query for e in tr}.isdisjoint({e.query for e in va})
    assert [e.query for e in split_validation(exs, 0.25, seed=3)[1]] == [e.query for e in va]
    assert [e.query for e in split_validation(exs, 0.25, seed=4)[1]] != [e.query for e in va]
    assert split_validation(exs, 0.0, seed=3) == (exs, [])
    assert len(split_validation(exs[:3], 0.01, seed=0)[1]) == 1  # > 0 holds out at least one
    with pytest.raises(ValueError, match="leaves none to train on"):
        split_validation(exs[:1], 0.5, seed=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5, allow_nan=False), st.booleans()), min_size=1,
                max_size=12))
def test_ndcg_is_one_exactly_when_every_positive_outranks_every_negative(rows):
    """Ties count against the positives, so 1.0 needs strictly higher scores."""
    scores = [s for s, _ in rows]
    rel = [r for _, r in rows]
    if not any(rel):
        with pytest.raises(ValueError, match="no relevant"):
            ndcg_of_scores(scores, rel)
        return
    v = ndcg_of_scores(scores, rel)
    assert 0.0 <= v <= 1.0 + 1e-12
    pos = [s for s, r in rows if r]
    neg = [s for s, r in rows if not r]
    if not neg or min(pos) > max(neg):
        assert v == pytest.approx(1.0)
    else:
        assert v < 1.0


def test_ndcg_matches_pytrec_eval():
    import pytrec_eval

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 10))
        scores = rng.normal(size=n)
        rel = rng.random(n) < 0.4
        rel[0] = True
        ev = pytrec_eval.RelevanceEvaluator({"q": {f"d{i}": int(r) for i, r in enumerate(rel)}},
                                            {"ndcg"})
        want = ev.evaluate({"q": {f"d{i}": float(s) for i, s in enumerate(scores)}})["q"]["ndcg"]
        assert ndcg_of_scores(scores, rel) == pytest.approx(want, abs=1e-9)


def test_tracker_patience_and_state_round_trip():
    t = BestTracker(patience=2)
    assert t.update(0, 0.5) and not t.should_stop
    assert t.update(4, 0.6)
    assert not t.update(8, 0.6)  # equal is no gain
    assert not t.should_stop
    assert not t.update(12, 0.55) and t.should_stop
    back = BestTracker.from_state(2, json.loads(json.dumps(t.state())))
    assert (back.best_step, back.best_value, back.since_best) == (4, 0.6, 2)
    assert back.should_stop and back.history == t.history
    assert not BestTracker(patience=None).should_stop


# ------------------------------------------------------------------ the loop (tiny model)

def _train(tmp_path: Path, name: str, sets: list[str], hooks=None, ckpt: str | None = None):
    from training_helpers import make_examples, make_tiny_encoder

    from scarlet_ray.training.loop import train_loop

    enc = tmp_path / "enc"
    if not enc.exists():
        make_tiny_encoder(enc)
    data = tmp_path / "t.jsonl"
    if not data.exists():
        make_examples(data, n=40)
    cfg = load_config(None, ["training.batch_size=8", "training.backend=ddp",
                             "training.validation_fraction=0.2", *sets])
    return train_loop({"training": cfg.training.model_dump(), "model": str(enc),
                       "train": str(data), "hooks": hooks or [],
                       "checkpoint_dir": ckpt or str(tmp_path / name)})


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("backend", [["training.backend=ddp"],
                                     ["training.backend=deepspeed", "training.zero_stage=3"]],
                         ids=["ddp", "zero3"])
def test_a_run_that_only_hurts_exports_the_starting_model(tmp_path, backend):
    """Training labels that point the wrong way (a negative as the positive) while the held-out
    examples keep the true ones: every step lowers held-out nDCG, so the guard exports the
    untrained weights and says so."""
    from training_helpers import make_examples, make_tiny_encoder

    from scarlet_ray.training.data import load_examples

    make_tiny_encoder(tmp_path / "enc")
    good = make_examples(tmp_path / "good.jsonl", n=40)
    _, held = split_validation(load_examples(good), 0.2, seed=42)  # the loop's split (seed 42)
    held_q = {e.query for e in held}
    rows = [json.loads(x) for x in good.read_text().splitlines()]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(
        r if r["query"] in held_q else
        {"query": r["query"], "pos": r["neg"][:1], "neg": r["pos"] + r["neg"][1:]}) + "\n"
        for r in rows))
    r = _train(tmp_path, "bad", ["training.lr=3e-3", "training.epochs=3", *backend])
    assert r["validation_examples"] == 8 and r["train_examples"] == 32
    vals = [h["val_ndcg"] for h in r["history"] if "val_ndcg" in h]
    assert len(vals) == 3  # one per epoch end (4 steps each)
    assert r["best_step"] == 0 and r["exported_step"] == 0
    assert max(vals) < r["start_val_ndcg"]
    exported = tmp_path / "bad" / "final" / "model"
    assert _same(_weights(exported), _weights(tmp_path / "enc"))
    if backend[0] != "training.backend=ddp":
        return  # ZeRO-3: the gathered export at step 0 is what this case checks
    # the same run without the guard exports the last (worse) weights
    r2 = _train(tmp_path, "unguarded", ["training.lr=3e-3", "training.epochs=3",
                                        "training.keep_best=false", *backend])
    assert r2["exported_step"] == 12
    assert not _same(_weights(tmp_path / "unguarded" / "final" / "model"),
                     _weights(tmp_path / "enc"))


def test_best_step_is_exported_and_patience_stops_early(tmp_path):
    r = _train(tmp_path, "run", ["training.lr=2e-3", "training.epochs=8", "training.eval_every=2",
                                 "training.early_stopping_patience=2"])
    hist = [h for h in r["history"] if "val_ndcg" in h]
    assert all(h["step"] % 2 == 0 for h in hist)
    assert r["best_val_ndcg"] > r["start_val_ndcg"]  # the topic signal is learnable
    assert r["best_val_ndcg"] == max(h["val_ndcg"] for h in hist)
    assert r["stopped_early"] and r["optimizer_steps"] < 32
    assert r["optimizer_steps"] - r["best_step"] == 2 * 2  # patience x eval_every
    assert r["exported_step"] == r["best_step"]


class _CrashOnceAt:
    """Raises in-process before ``step`` once (a crash the next call resumes from)."""

    def __init__(self, step: int, marker: Path):
        self.step, self.marker = step, marker

    def __call__(self, step: int, rank: int) -> None:
        if step == self.step and not self.marker.exists():
            self.marker.write_text("x")
            raise RuntimeError("injected crash")


def test_resume_keeps_the_best_weights_and_the_same_decisions(tmp_path):
    sets = ["training.lr=2e-3", "training.epochs=4", "training.eval_every=2",
            "training.checkpoint_every=3"]
    whole = _train(tmp_path, "whole", sets)
    with pytest.raises(RuntimeError, match="injected crash"):
        _train(tmp_path, "crashed", sets, hooks=[_CrashOnceAt(10, tmp_path / "m")])
    again = _train(tmp_path, "crashed", sets, hooks=[_CrashOnceAt(10, tmp_path / "m")])
    assert again["resumed_from"] == [9]
    for k in ("best_step", "best_val_ndcg", "exported_step", "start_val_ndcg"):
        assert again[k] == whole[k], k
    assert [h.get("val_ndcg") for h in again["history"]] == \
        [h.get("val_ndcg") for h in whole["history"]]
    assert _same(_weights(tmp_path / "crashed" / "final" / "model"),
                 _weights(tmp_path / "whole" / "final" / "model"))


def test_stage_refuses_a_split_that_leaves_too_few_to_batch(tmp_path, capsys):
    from training_helpers import make_examples

    from scarlet_ray.cli import main

    data = make_examples(tmp_path / "t.jsonl", n=10)
    rc = main(["train", "--train", str(data), "--output", str(tmp_path / "m"),
               "--set", "training.batch_size=8", "--set", "training.validation_fraction=0.3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "training.batch_size: 8 exceeds the number of training examples (7 after holding " \
           f"out 3 to validate) in {data}" in err
