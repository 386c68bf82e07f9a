"""Training data: strict reading with located errors, deterministic sharded batches."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
