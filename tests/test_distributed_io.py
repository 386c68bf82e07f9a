"""Attribution's edges without a model: input reading (JSONL/Parquet, URIs), atomic parts, resume,
the output-folder lock and errors.jsonl semantics (shared by both runners)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scarlet_ray.attribution.inputs import read_input
from scarlet_ray.attribution.store import AttributionStore, local_output, part_name
from scarlet_ray.errors import OutputBusy
from scarlet_ray.records import RecordError, Sample, read_attributions
from scarlet_ray.stagedir import ErrorLog, StageRun


def sample(i: int, **kw) -> dict:
    d = {"id": f"s{i}", "task": "nq", "instruction": "Answer.", "input": f"question {i}",
         "output": "answer", "passages": [{"id": "p0", "title": "T", "text": "text"},
                                          {"id": "p1", "title": "U", "text": "more"}]}
    d.update(kw)
    return d


def att_row(rid: str) -> dict:
    return {"id": rid, "passage_ids": ["p0", "p1"], "utility": [0.5, -0.1], "intercept": 1.0,
            "r2": 0.9, "label": ["pos", "neg"], "n_masks": 8, "target": "logprob_sum",
            "generator": "g"}


def test_jsonl_quarantines_bad_lines_with_location(tmp_path):
    p = tmp_path / "in.jsonl"
    lines = [json.dumps(sample(0)), "{not json", json.dumps(sample(1, input=3)), "",
             json.dumps(sample(2, passages=[])), json.dumps(sample(0)), json.dumps(sample(3))]
    p.write_text("\n".join(lines) + "\n")
    rep = read_input(str(p))
    assert [r.id for r in rep.rows] == ["s0", "s3"]
    where = {(e.source.rsplit(":", 1)[1], e.field) for e in rep.errors}
    assert where == {("2", "(line)"), ("3", "input"), ("5", "passages"), ("6", "id")}
    # what goes to Ray round-trips to the same Sample
    assert Sample.model_validate_json(rep.rows[0].sample_json) == Sample.model_validate(sample(0))


def test_gzip_jsonl_and_file_uri(tmp_path):
    p = tmp_path / "in.jsonl.gz"
    with gzip.open(p, "wt") as fh:
        for i in range(3):
            fh.write(json.dumps(sample(i)) + "\n")
    rep = read_input(f"file://{p}")
    assert [r.id for r in rep.rows] == ["s0", "s1", "s2"] and not rep.errors
    assert rep.rows[1].source == f"file://{p}:2"


def test_parquet_file_and_directory(tmp_path):
    rows = [sample(i) for i in range(4)]
    rows[2]["answers"] = None  # a nullable optional column
    rows[3]["output"] = None  # a required one: quarantined
    d = tmp_path / "ds"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:2]), d / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:]), d / "b.parquet")
    rep = read_input(str(d))
    assert [r.id for r in rep.rows] == ["s0", "s1", "s2"]
    assert len(rep.errors) == 1 and rep.errors[0].field == "output"
    assert rep.errors[0].source.endswith("b.parquet:2")


def test_missing_input_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_input(str(tmp_path / "nope.jsonl"))


def test_parts_are_atomic_unique_and_resumable(tmp_path):
    out = AttributionStore(tmp_path / "attributions")
    assert out.write_rows([att_row("a"), att_row("b")]) == 2
    assert out.write_rows([att_row("b"), att_row("c")]) == 1  # b already written
    assert out.duplicates_dropped == 1
    names = sorted(p.name for p in out.parts.iterdir())
    assert names == sorted([part_name(["a", "b"]), part_name(["c"])])
    # a torn write of a killed driver is a hidden tmp file: ignored and cleaned on resume
    (tmp_path / "attributions" / ".part-x.parquet.tmp").write_bytes(b"PAR1 torn")
    out = AttributionStore(tmp_path / "attributions")
    assert out.written == {"a", "b", "c"}
    assert not list(out.parts.glob(".*.tmp"))
    assert sorted(r.id for r in read_attributions(tmp_path / "attributions")) == ["a", "b", "c"]


def test_second_run_is_refused_naming_the_holder(tmp_path):
    with StageRun(tmp_path, "attribute", {}, ("attributions",)), \
            pytest.raises(OutputBusy, match=rf"pid {os.getpid()}"), \
            StageRun(tmp_path, "attribute", {}, ("attributions",)):
        pass
    with StageRun(tmp_path, "attribute", {}, ("attributions",)):  # released on exit
        pass


def test_duplicate_across_parts_is_reported(tmp_path):
    AttributionStore(tmp_path / "attributions").write_rows([att_row("a")])
    # simulate a foreign writer that broke the invariant
    t = pq.read_table(tmp_path / "attributions" / part_name(["a"]))
    pq.write_table(t, tmp_path / "attributions" / "part-foreign.parquet")
    with pytest.raises(RecordError, match="duplicate id 'a'"):
        AttributionStore(tmp_path / "attributions")


def test_compact_errors_drops_repeats_and_recovered_ids(tmp_path):
    log = ErrorLog(tmp_path / "errors.jsonl", "attribute")
    e1 = {"source": "in:1", "id": "a", "field": "(score)", "reason": "boom", "stage": "attribute"}
    e2 = {"source": "in:2", "id": "b", "field": "(score)", "reason": "boom", "stage": "attribute"}
    bad = {"source": "in:3", "id": None, "field": "(line)", "reason": "invalid JSON",
           "stage": "read"}
    log.add([e1, e2, bad])
    log.add([e1, bad])  # a rerun hits the same failures again
    with open(log.path, "a") as fh:
        fh.write('{"torn": ')  # killed mid-line
    assert log.compact({"b"}) == 2  # b succeeded on the rerun
    kept = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert kept == [e1, bad]
    assert os.path.exists(tmp_path / "errors.jsonl")


def test_failed_ids_come_from_the_stage_s_own_entries(tmp_path):
    log = ErrorLog(tmp_path / "errors.jsonl", "attribute")
    log.add([{"source": "in:1", "id": "a", "field": "(score)", "reason": "x"}])
    log.add([{"source": "in:2", "id": "b", "field": "input", "reason": "y"}], stage="read")
    assert log.failed_ids() == {"a"}


def test_object_store_output_is_refused():
    from scarlet_ray.errors import UsageError

    with pytest.raises(UsageError, match="not object storage"):
        local_output("s3://bucket/out")
    assert local_output("file:///tmp/x") == Path("/tmp/x")
