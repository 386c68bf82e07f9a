"""Training data: strict reading with located errors, deterministic sharded batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scarlet_ray.config import load_config
from scarlet_ray.records import RecordError
from scarlet_ray.training.data import Batcher, load_examples


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def examples(n, n_neg=3):
    return [{"query": f"q{i}", "pos": [f"p{i}a", f"p{i}b"],
             "neg": [f"n{i}_{j}" for j in range(n_neg)]} for i in range(n)]


def test_reads_flagembedding_lines(tmp_path):
    rows = examples(3)
    rows[1]["prompt"] = "Represent: "
    rows[1]["pos_scores"] = [1.0, 0.5]
    exs = load_examples(write(tmp_path / "t.jsonl", rows))
    assert [e.query for e in exs] == ["q0", "q1", "q2"] and exs[1].prompt == "Represent: "


@pytest.mark.parametrize("bad,field,reason", [
    ({"query": "q", "pos": [], "neg": ["n"]}, "pos", "at least one positive"),
    ({"query": "q", "neg": ["n"]}, "pos", "missing"),
    ({"query": "q", "pos": ["p"], "neg": ["  "]}, "neg", "empty"),
    ({"query": "q", "pos": [""], "neg": ["n"]}, "pos", "empty"),
    ({"query": " ", "pos": ["p"], "neg": ["n"]}, "query", "empty"),
    ({"query": "q", "pos": ["p"], "neg": []}, "neg", "at least one negative"),
    ({"query": "q", "pos": "p", "neg": ["n"]}, "pos", "list"),
])
def test_bad_lines_name_file_line_field(tmp_path, bad, field, reason):
    path = write(tmp_path / "t.jsonl", [*examples(2), bad])
    with pytest.raises(RecordError) as err:
        load_examples(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: {field}") and reason in msg, msg


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(RecordError, match=r"nope.jsonl: \(file\): No such file"):
        load_examples(tmp_path / "nope.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no training examples"):
        load_examples(tmp_path / "e.jsonl")
    (tmp_path / "j.jsonl").write_text('{"query": \n')
    with pytest.raises(RecordError, match=r"j.jsonl:1: \(line\): invalid JSON"):
        load_examples(tmp_path / "j.jsonl")


def test_batches_deterministic_grouped_and_prefixed(tmp_path):
    exs = load_examples(write(tmp_path / "t.jsonl", examples(10, n_neg=1)))
    b = Batcher(exs, global_batch=4, group_size=3, seed=1, query_instruction="Q: ")
    assert b.steps_per_epoch == 2 and b.dropped_per_epoch == 2
    mb = b.micro_batches(0, 0)[0]
    assert len(mb.queries) == 4 and len(mb.docs) == 12
    for j, i in enumerate(mb.indices):
        assert mb.queries[j] == f"Q: [SEP] q{i}"  # formatting.query_text
        group = mb.docs[3 * j : 3 * j + 3]
        assert group[0] in (f"p{i}a", f"p{i}b") and group[1:] == [f"n{i}_0"] * 2
    again = Batcher(exs, global_batch=4, group_size=3, seed=1, query_instruction="Q: ")
    assert again.micro_batches(0, 0)[0] == mb
    assert b.order(0).tolist() != b.order(1).tolist()  # reshuffled per epoch
    with pytest.raises(ValueError, match="not divisible"):
        Batcher(exs, global_batch=4, group_size=3, world_size=3)
    with pytest.raises(ValueError, match="exceeds"):
        Batcher(exs, global_batch=16, group_size=3)


@settings(max_examples=30, deadline=None)
@given(st.integers(16, 40), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2]),
       st.integers(0, 3), st.integers(0, 99))
def test_sharding_partitions_the_global_batch(n, world, accum, epoch, seed):
    from scarlet_ray.records import TrainingExample

    data = [TrainingExample(query=f"q{i}", pos=[f"p{i}"], neg=[f"n{i}", f"m{i}"])
            for i in range(n)]
    gb = world * accum * 2
    one = Batcher(data, global_batch=gb, group_size=3, seed=seed)
    shards = [Batcher(data, global_batch=gb, group_size=3, seed=seed, world_size=world,
                      rank=r, grad_accum=accum) for r in range(world)]
    for step in range(one.steps_per_epoch):
        full = one.micro_batches(epoch, step)[0]
        parts = [mb for s in shards for mb in s.micro_batches(epoch, step)]
        assert sorted(i for mb in parts for i in mb.indices) == sorted(full.indices)
        # same example -> same sampled group, whichever worker has it
        by_idx = {i: full.docs[3 * j : 3 * j + 3] for j, i in enumerate(full.indices)}
        for mb in parts:
            for j, i in enumerate(mb.indices):
                assert mb.docs[3 * j : 3 * j + 3] == by_idx[i]


def test_warmup_steps_never_zero_for_deepspeed():
    from scarlet_ray.config import TrainingConfig
    from scarlet_ray.training.loop import warmup_steps

    tc = TrainingConfig(warmup_ratio=0.1)
    assert warmup_steps(tc, 1) == 1  # DeepSpeed's WarmupLR rejects 0
    assert warmup_steps(tc, 5) == 1
    assert warmup_steps(tc, 100) == 10
    assert warmup_steps(TrainingConfig(warmup_ratio=1.0), 10) == 9


# ------------------------------------------------------------------ soft labels (utility_kl)
def _with_scores(src: Path, dst: Path, drop_line: int | None = None) -> Path:
    rows = [json.loads(x) for x in src.read_text().splitlines()]
    for i, r in enumerate(rows):
        if i == drop_line:
            continue
        r["pos_scores"] = [2.0 + 0.1 * k for k in range(len(r["pos"]))]
        r["neg_scores"] = [-1.0 - 0.1 * k for k in range(len(r["neg"]))]
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def test_batcher_carries_each_passage_utility_in_group_order(tmp_path):
    from training_helpers import make_examples

    path = _with_scores(make_examples(tmp_path / "t.jsonl", n=8), tmp_path / "s.jsonl")
    exs = load_examples(path, require_scores=True)
    b = Batcher(exs, global_batch=4, group_size=3, seed=1)
    mb = b.micro_batches(0, 0)[0]
    assert mb.scores is not None and len(mb.scores) == len(mb.docs) == 12
    for d, sc in zip(mb.docs, mb.scores, strict=True):  # each text with its own utility
        ex = next(e for e in exs if d in e.pos or d in e.neg)
        want = ex.pos_scores[ex.pos.index(d)] if d in ex.pos else ex.neg_scores[ex.neg.index(d)]
        assert sc == want
    assert b.micro_batches(0, 0)[0].docs == mb.docs  # same texts as before scores existed
    plain = Batcher(load_examples(make_examples(tmp_path / "p.jsonl", n=8)), global_batch=4,
                    group_size=3, seed=1)
    assert plain.micro_batches(0, 0)[0].scores is None


def test_utility_kl_training_runs_and_missing_utilities_name_the_line(tmp_path, capsys):
    from training_helpers import make_examples, make_tiny_encoder

    from scarlet_ray.cli import main
    from scarlet_ray.training.loop import train_loop

    src = make_examples(tmp_path / "t.jsonl", n=16)
    bad = _with_scores(src, tmp_path / "bad.jsonl", drop_line=2)
    rc = main(["train", "--train", str(bad), "--output", str(tmp_path / "m"),
               "--set", "training.loss=utility_kl"])
    assert rc == 2
    assert f"{bad}:3: pos_scores: 0 scores for 2 passages" in capsys.readouterr().err
    cfg = load_config(None, ["training.loss=utility_kl", "training.batch_size=8",
                             "training.lr=1e-3", "training.epochs=3", "training.backend=ddp",
                             "training.label_temperature=0.5"])
    r = train_loop({"training": cfg.training.model_dump(),
                    "model": str(make_tiny_encoder(tmp_path / "enc")),
                    "train": str(_with_scores(src, tmp_path / "ok.jsonl")),
                    "checkpoint_dir": str(tmp_path / "ckpt")})
    losses = [h["loss"] for h in r["history"]]
    assert r["optimizer_steps"] == 6 and all(x >= 0 for x in losses)
    assert losses[-1] < losses[0]  # the retriever moves toward the utilities' ranking
