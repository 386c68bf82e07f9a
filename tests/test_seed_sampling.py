"""Seed sampling: first-N or a seeded uniform sample, streamed, bad picks replaced and reported."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from scarlet_ray.datasets import FORMATS, FormatSpec, convert
from scarlet_ray.datasets.base import Converted, convert_each, iter_records, need
from scarlet_ray.datasets.sampling import count_records, read_source, seeded_permutation
from scarlet_ray.records import Sample
from scarlet_ray.tasks import get_task


def nq_row(i: int) -> dict:
    return {"id": str(i), "input": f"question number {i}?",
            "output": [{"answer": f"answer {i}", "provenance": [{"wikipedia_id": str(i),
                                                                 "title": f"Page {i}"}]}]}


def kilt_file(path: Path, n: int, bad: set[int] = frozenset()) -> Path:
    """n records (one a line, a blank line now and then); the indices in ``bad`` have no answer."""
    with open(path, "w") as fh:
        for i in range(n):
            row = nq_row(i)
            if i in bad:
                row["output"] = [{"provenance": []}]
            fh.write(json.dumps(row) + "\n" + ("\n" if i % 7 == 3 else ""))
    return path


def ids(res: Converted) -> list[str]:
    return [r.id for r in res.records]


def test_random_sample_is_deterministic_in_file_order_and_seed_dependent(tmp_path):
    f = kilt_file(tmp_path / "nq-train-kilt.jsonl", 500)
    a = read_source("kilt", f, count=50, sampling="random", seed=42)
    b = read_source("kilt", f, count=50, sampling="random", seed=42)
    c = read_source("kilt", f, count=50, sampling="random", seed=7)
    assert ids(a) == ids(b) and len(ids(a)) == 50 and not a.skipped
    assert ids(a) != ids(c) and len(ids(c)) == 50
    picked = sorted(seeded_permutation(500, 42)[:50].tolist())
    assert ids(a) == [f"kilt-{i}" for i in picked]  # file order, the permutation's picks
    assert seeded_permutation(500, 42).tolist() == \
        np.random.default_rng(42).permutation(500).tolist()


def test_a_bad_pick_is_replaced_by_the_next_index_and_reported(tmp_path):
    order = seeded_permutation(300, 42).tolist()
    bad = {order[3], order[10], order[20]}  # two among the picks, and the first replacement
    f = kilt_file(tmp_path / "nq-train-kilt.jsonl", 300, bad)
    res = read_source("kilt", f, count=20, sampling="random", seed=42)
    expect = [i for i in order[:23] if i not in bad]
    assert ids(res) == [f"kilt-{i}" for i in sorted(expect)]
    assert len(res.records) == 20
    assert sorted(e.source for e in res.skipped) == sorted(_loc(f, i) for i in bad)
    assert {e.field for e in res.skipped} == {"output"}


def _loc(f: Path, index: int) -> str:
    """The file:line of the record at ``index`` (blank lines skipped)."""
    return next(src for k, (src, _) in enumerate(iter_records(f)) if k == index)


def test_first_n_is_the_readers_limit(tmp_path):
    f = kilt_file(tmp_path / "nq-train-kilt.jsonl", 40, bad={2})
    res = read_source("kilt", f, count=5)
    assert ids(res) == ["kilt-0", "kilt-1", "kilt-3", "kilt-4", "kilt-5"]
    assert [e.source for e in res.skipped] == [_loc(f, 2)]
    assert ids(res) == ids(convert("kilt", str(f), limit=5))
    assert len(read_source("kilt", f).records) == 39  # no count: every good record


def test_count_beyond_the_file_gives_every_good_record(tmp_path):
    f = kilt_file(tmp_path / "nq-train-kilt.jsonl", 30, bad={4, 17})
    res = read_source("kilt", f, count=100, sampling="random")
    assert len(res.records) == 28  # fewer than count: that is how the shortfall shows
    assert ids(res) == [f"kilt-{i}" for i in range(30) if i not in (4, 17)]
    assert len(res.skipped) == 2


def test_count_records_is_cheap_for_jsonl_only(tmp_path):
    f = kilt_file(tmp_path / "nq-train-kilt.jsonl", 30)
    (tmp_path / "broken.jsonl").write_text('\ufeff{"a": 1}\n  \n{oops\n\n[1]\n')
    assert count_records(f) == 30
    assert count_records(tmp_path / "broken.jsonl") == 3  # a bad line is a record too
    arr = tmp_path / "nq-array.json"
    arr.write_text(json.dumps([nq_row(i) for i in range(5)]))
    assert count_records(arr) is None and count_records(tmp_path) is None


def test_a_json_array_samples_like_its_jsonl(tmp_path):
    rows = [nq_row(i) for i in range(60)]
    arr = tmp_path / "nq-array.json"
    arr.write_text(json.dumps(rows, indent=1))
    jsonl = tmp_path / "nq-lines.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = read_source("kilt", arr, count=9, sampling="random", seed=3)
    b = read_source("kilt", jsonl, count=9, sampling="random", seed=3)
    assert ids(a) == ids(b) and len(ids(a)) == 9


def test_positional_ids_survive_sampling(shared_data):
    """DPR names questions by position: a sampled question keeps the id of a full read."""
    path = shared_data / "haystack" / "sample.json"
    full = {r.id: r for r in convert("dpr", str(path)).records}
    res = read_source("dpr", path, count=2, sampling="random", seed=1)
    assert len(res.records) == 2
    assert all(full[r.id] == r for r in res.records)


def test_formats_without_select_are_sampled_after_conversion(shared_data):
    path = shared_data / "haystack" / "small.json"  # SQuAD: one JSON object
    a = read_source("squad", path, count=12, sampling="random", seed=42)
    b = read_source("squad", path, count=12, sampling="random", seed=42)
    full = [r.id for r in convert("squad", str(path)).records]
    assert ids(a) == ids(b) and len(ids(a)) == 12
    assert ids(a) == [i for i in full if i in set(ids(a))]  # file order


def test_task_override(tmp_path, monkeypatch):
    f = kilt_file(tmp_path / "nq-train-kilt.jsonl", 10)
    res = read_source("kilt", f, count=3, task="trex")
    assert ids(res) == []  # trex needs 'subject [SEP] relation': quarantined, not relabelled
    assert {e.field for e in res.skipped} == {"input"}
    res = read_source("kilt", f, count=3, sampling="random", task="hotpotqa")
    assert {(s.task, s.instruction) for s in res.records} == {
        ("hotpotqa", get_task("hotpotqa").instruction)}

    def read_plain(path: str, limit: int | None = None, passage_words: int | None = None):
        """A samples reader that takes no task (sets its own, as some formats do)."""
        def one(obj, src):
            return [Sample(id=need(obj, "id", src, str), task="nq", input="q", output="a")]
        return convert_each(Converted("seeds"), iter_records(path), limit, one)

    monkeypatch.setitem(FORMATS, "plain", FormatSpec("seeds", read_plain, "test"))
    res = read_source("plain", f, count=4, sampling="random", task="fever")
    assert len(res.records) == 4
    assert {(s.task, s.instruction) for s in res.records} == {
        ("fever", get_task("fever").instruction)}
    with pytest.raises(ValueError, match="'no-such-task'"):
        read_source("kilt", f, count=3, task="no-such-task")
    with pytest.raises(ValueError, match="corpus"):
        read_source("flashrag-corpus", f, count=3, task="nq")


def test_bad_arguments_are_refused(tmp_path):
    f = kilt_file(tmp_path / "nq-train-kilt.jsonl", 3)
    with pytest.raises(ValueError, match="unknown format"):
        read_source("nope", f, count=1)
    with pytest.raises(ValueError, match="sampling"):
        read_source("kilt", f, count=1, sampling="reservoir")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count"):
        read_source("kilt", f, count=0)


def test_sampling_a_large_file_holds_only_the_sample(tmp_path):
    f = kilt_file(tmp_path / "nq-train-kilt.jsonl", 200_000)
    size = f.stat().st_size
    tracemalloc.start()
    try:
        res = read_source("kilt", f, count=1000, sampling="random", seed=42)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(res.records) == 1000 and not res.skipped
    assert peak < size / 5, (peak, size)  # ~1/8 here: the permutation and the 1,000 samples
