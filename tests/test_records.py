"""Record validation and JSONL IO: every kind of malformed line names file, line and field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scarlet_ray.records import (
    Attribution,
    RecordError,
    Sample,
    TrainingExample,
    completed_ids,
    read_attributions,
    read_jsonl,
    read_samples,
    write_attribution_part,
    write_jsonl,
)


def sample(i: int, **kw) -> dict:
    d = {"id": f"s{i}", "task": "nq", "instruction": "Answer.", "input": f"question {i}",
         "output": "answer", "passages": [{"id": "p0", "title": "T", "text": "text"},
                                          {"id": "p1", "title": "U", "text": "more"}],
         "gold_passage_ids": ["p0"]}
    d.update(kw)
    return d


BAD_LINES = {
    "invalid_json": (b'{"id": "x", "task": ', "(line)", "invalid JSON"),
    "missing_field": (json.dumps({k: v for k, v in sample(90).items() if k != "output"}).encode(),
                      "output", "missing required field"),
    "wrong_type": (json.dumps(sample(91, input=42)).encode(), "input", "valid string"),
    "duplicate_id": (json.dumps(sample(1)).encode(), "id", "duplicate id"),
    "empty_passages": (json.dumps(sample(92, passages=[], gold_passage_ids=[])).encode(),
                       "passages", "empty"),
    "non_utf8": (b'{"id": "s93", "input": "caf\xe9"}', "(line)", "invalid UTF-8"),
    "dup_passage": (json.dumps(sample(94, passages=[{"id": "p0", "text": "a"},
                                                     {"id": "p0", "text": "b"}],
                                       gold_passage_ids=[])).encode(),
                    "passages", "duplicate passage id"),
    "wrong_passage_type": (json.dumps(sample(95, passages=[{"id": "p0", "text": 3}])).encode(),
                           "passages.0.text", "valid string"),
    "not_object": (b'["a list"]', "(record)", "JSON object"),
}


def write_file(path, good: int, bad: bytes | None, bad_at: int = 2) -> None:
    lines = [json.dumps(sample(i)).encode() for i in range(good)]
    if bad is not None:
        lines.insert(bad_at, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_bad_line_message_names_file_line_field(tmp_path, kind):
    raw, field, reason = BAD_LINES[kind]
    f = tmp_path / "samples.jsonl"
    write_file(f, good=4, bad=raw, bad_at=2)
    with pytest.raises(RecordError) as exc:
        read_samples(f)
    msg = str(exc.value)
    assert msg.startswith(f"{f}:3: {field}: "), msg
    assert reason in msg


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_quarantine_keeps_every_good_record(tmp_path, kind):
    raw, field, _ = BAD_LINES[kind]
    f = tmp_path / "samples.jsonl"
    write_file(f, good=5, bad=raw, bad_at=2)
    errors = tmp_path / "errors.jsonl"
    rep = read_jsonl(f, Sample, on_error="quarantine", errors_path=errors)
    assert [r.id for r in rep.records] == [f"s{i}" for i in range(5)]
    entries = [json.loads(x) for x in errors.read_text().splitlines()]
    assert len(entries) == 1
    assert entries[0]["source"] == f"{f}:3" and entries[0]["field"] == field


def test_gold_ids_must_exist():
    with pytest.raises(ValueError, match="not among passage ids"):
        Sample.model_validate(sample(0, gold_passage_ids=["p9"]))


def test_seeds_may_lack_passages(tmp_path):
    f = tmp_path / "seeds.jsonl"
    f.write_text(json.dumps(sample(0, passages=[], gold_passage_ids=[])) + "\n")
    assert read_samples(f, require_passages=False)[0].passages == []


def test_training_example_validation():
    TrainingExample(query="q", pos=["p"], neg=["n"])
    with pytest.raises(ValueError):
        TrainingExample(query="q", pos=[], neg=["n"])
    with pytest.raises(ValueError, match="empty"):
        TrainingExample(query="q", pos=["  "], neg=[])


def test_missing_file_is_a_located_error(tmp_path):
    with pytest.raises(RecordError, match="missing.jsonl"):
        read_samples(tmp_path / "missing.jsonl")


def test_completed_ids_tolerates_torn_last_line(tmp_path):
    f = tmp_path / "out.jsonl"
    write_jsonl(f, [Sample.model_validate(sample(i)) for i in range(3)])
    with open(f, "ab") as fh:
        fh.write(b'{"id": "s3", "task"')  # a crash mid-write
    assert completed_ids(f) == {"s0", "s1", "s2"}


def test_attribution_parquet_roundtrip_and_duplicates(tmp_path):
    rows = [Attribution(id=f"a{i}", passage_ids=["p0", "p1"], utility=[0.5, -0.1],
                        intercept=-3.0, r2=0.8, label=["pos", "neg"], n_masks=64,
                        target="logprob_sum", generator="g") for i in range(3)]
    write_attribution_part(tmp_path, rows[:2], "part-0")
    write_attribution_part(tmp_path, rows[2:], "part-1")
    back = read_attributions(tmp_path)
    assert [r.model_dump() for r in back] == [r.model_dump() for r in rows]
    write_attribution_part(tmp_path, rows[:1], "part-2")
    with pytest.raises(RecordError, match="duplicate id"):
        read_attributions(tmp_path)
    with pytest.raises(ValueError, match="same length"):
        Attribution(id="x", passage_ids=["p0"], utility=[1.0, 2.0], intercept=0, r2=None,
                    label=["pos"], n_masks=2, target="t", generator="g")


texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30)


@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=5, unique_by=lambda t: t[0]),
       texts, texts)
def test_jsonl_roundtrip_property(tmp_path_factory, passages, question, answer):
    d = tmp_path_factory.mktemp("rt")
    s = Sample(id="x", task="nq", input=question, output=answer,
               passages=[{"id": pid, "title": "", "text": t} for pid, t in passages])
    write_jsonl(d / "a.jsonl", [s])
    assert read_samples(d / "a.jsonl")[0] == s


def test_append_after_crash_repairs_torn_tail(tmp_path):
    f = tmp_path / "out.jsonl"
    write_jsonl(f, [Sample.model_validate(sample(0))])
    with open(f, "ab") as fh:
        fh.write(b'{"id": "s1", "ta')  # crash mid-append
    write_jsonl(f, [Sample.model_validate(sample(1))], append=True)
    assert [s.id for s in read_samples(f)] == ["s0", "s1"]
