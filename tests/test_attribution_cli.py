"""``scarlet attribute`` + ``scarlet label`` end to end on the tiny LLaMA, with resume."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from scarlet_ray.cli import main as cli
from scarlet_ray.datasets import convert
from scarlet_ray.records import TrainingExample, read_attributions, read_jsonl


def _write_samples(path, shared_data):
    recs = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"), limit=3,
                   passage_words=25).records
    lines = [r.model_dump_json() for r in recs]
    one = recs[0].model_copy(update={"id": "one-passage", "passages": recs[0].passages[:1],
                                     "gold_passage_ids": []})
    lines.append(one.model_dump_json())
    lines.append('{"id": "broken", "task": "nq"}')  # missing fields -> quarantined
    path.write_text("\n".join(lines) + "\n")
    return [r.id for r in recs]


def test_attribute_label_end_to_end_with_resume(tmp_path, tiny_llama, shared_data):
    samples = tmp_path / "samples.jsonl"
    ids = _write_samples(samples, shared_data)
    out = tmp_path / "run"
    sets = ["--set", f"models.generator={tiny_llama}", "--set", "models.dtype=float32",
            "--set", "attribution.n_masks=8", "--set", "attribution.flush_every=2",
            "--set", "attribution.max_error_rate=0.5"]
    assert cli(["attribute", "--input", str(samples), "--output", str(out), *sets]) == 0
    attrs = read_attributions(out / "attributions")
    assert sorted(a.id for a in attrs) == sorted(ids)
    assert all(a.n_masks == 8 and len(a.utility) == 10 for a in attrs)
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert {e.get("id") for e in errors} >= {"one-passage"}
    assert any("at least 2" in e["reason"] for e in errors)
    assert any(e.get("stage") == "read" for e in errors)
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"]["attributed"] == 3 and man["counts"]["failed"] == 1
    assert man["throughput"]["tokens_per_s"] > 0
    n_parts = len(list((out / "attributions").glob("*.parquet")))
    assert n_parts == 2  # flush every 2 samples

    # resume: nothing new, no duplicates, errors not repeated
    assert cli(["attribute", "--input", str(samples), "--output", str(out), *sets]) == 0
    assert len(list((out / "attributions").glob("*.parquet"))) == n_parts
    assert len(read_attributions(out / "attributions")) == 3
    errors2 = (out / "errors.jsonl").read_text().splitlines()
    assert len(errors2) == len(errors)
    man2 = json.loads((out / "manifest.json").read_text())
    assert man2["counts"]["attributed"] == 0 and man2["counts"]["already_done"] == 3

    # a crash after the first part: delete the second, rerun re-does only that one
    parts = sorted((out / "attributions").glob("*.parquet"))
    lost = set(pq.read_table(parts[-1]).column("id").to_pylist())
    parts[-1].unlink()
    assert cli(["attribute", "--input", str(samples), "--output", str(out), *sets]) == 0
    man3 = json.loads((out / "manifest.json").read_text())
    assert man3["counts"]["attributed"] == len(lost)
    assert sorted(a.id for a in read_attributions(out / "attributions")) == sorted(ids)

    lab = tmp_path / "lab"
    for method in ("kmeans", "fixed"):  # another method on the same folder: --restart
        assert cli(["label", "--attributions", str(out / "attributions"), "--samples",
                    str(samples), "--output", str(lab), "--set", f"labels.method={method}",
                    *(["--restart"] if method == "fixed" else [])]) == 0
        exs = read_jsonl(lab / "train.jsonl", TrainingExample, unique_key=None).records
        m = json.loads((lab / "manifest.json").read_text())
        assert m["counts"]["examples"] + m["counts"]["dropped_total"] == 3
        assert len(exs) == m["counts"]["examples"]
        for ex in exs:
            assert ex.prompt and ex.pos and ex.neg and len(ex.pos) < len(ex.neg)
    assert m["counts"]["examples"] == 3  # fixed top-1/bottom-5 never drops 10-passage samples

    ev = tmp_path / "eval"
    assert cli(["evaluate", "attribution", "--attributions", str(out / "attributions"),
                "--samples", str(samples), "--output", str(ev), *sets]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())["methods"]
    assert set(metrics) == {"perturbation", "loo", "similarity", "attention", "random"}
    for m in metrics.values():
        assert m["n"] == 3 and 0.0 <= m["ndcg@1"] <= 1.0 and 0.0 < m["ndcg@5"] <= 1.0
