"""`scarlet run` end to end on a paper-shaped job (a seed mix of two tasks, two evaluation sets
with different metrics, closed and pooled corpus) with a tiny generator, then a rerun that skips
every stage."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from scarlet_ray.cli import main
from scarlet_ray.datasets import convert
from scarlet_ray.records import iter_jsonl_objects, read_attributions, write_jsonl


def _rows(path):
    return [o for _, o in iter_jsonl_objects(path)]


@pytest.mark.slow
@pytest.mark.ray
def test_paper_shaped_run_all_stages_then_resume(tmp_path, shared_data, tiny_llama, capsys):
    hp = shared_data / "hotpotqa" / "hotpotqa_train.json"
    nq = shared_data / "flashrag" / "nq_test.jsonl"
    mu = shared_data / "musique" / "musique_train.json"
    # a small corpus: the paragraphs of the first 6 HotpotQA questions (3 seeds + 3 held out)
    qs = convert("hotpotqa", str(hp), limit=6, passage_words=60).records
    corpus = {(p.title, p.text): p for s in qs for p in s.passages}
    write_jsonl(tmp_path / "corpus.jsonl",
                [{"id": f"c{i}", "title": t, "text": x} for i, (t, x) in enumerate(corpus)])
    job = {
        "name": "paper-shaped",
        "data": {
            "seeds": [  # two tasks, as the paper's mix has six
                {"path": str(hp), "format": "hotpotqa", "count": 3, "sampling": "first"},
                {"path": str(nq), "format": "flashrag-qa", "task": "nq", "count": 2,
                 "sampling": "random", "seed": 42},
            ],
            "corpus": [str(tmp_path / "corpus.jsonl")], "passage_words": 60},
        "models": {"generator": str(tiny_llama), "dtype": "float32"},
        "stages": ["context", "attribute", "label", "train", "evaluate"],
        "context": {"corpus_graph_ner": False},
        "attribution": {"n_masks": 8, "eval_baselines": ["random"]},
        "labels": {"method": "fixed", "fixed_bottom": 2},
        "training": {"batch_size": 1, "backend": "ddp", "max_seq_len": 64},
        "evaluation": {
            "train_gold": False, "rag_conditions": ["retrieved", "none"],
            "corpus": ["closed", "pooled"],
            "sets": [
                # substring (HotpotQA), past the 3 training seeds of the same file
                {"name": "hp", "path": str(hp), "format": "hotpotqa", "offset": 3, "count": 3,
                 "sampling": "first"},
                # ROUGE-L: MuSiQue questions as a long-form stand-in, a short generation cap
                {"name": "mu", "path": str(mu), "format": "musique", "task": "eli5",
                 "count": 2, "sampling": "first", "max_new_tokens": 6},
            ]},
    }
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(job))
    run = tmp_path / "run"
    args = ["run", "--config", str(cfg), "--output", str(run)]
    assert main([*args, "--dry-run"]) == 0  # every input present, no leakage
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = out[out.rindex("scarlet run:"):]
    assert "│ failed " not in summary and "│ not run " not in summary, summary

    # every stage ran per task
    seeds_m = json.loads((run / "seeds" / "manifest.json").read_text())
    assert seeds_m["counts"]["task_hotpotqa"] == 3 and seeds_m["counts"]["task_nq"] == 2
    contexts = _rows(run / "context" / "contexts.jsonl")
    per_task = Counter(c["task"] for c in contexts)
    ctx_m = json.loads((run / "context" / "manifest.json").read_text())
    # a seed without a named entity gets no context, and is counted (and in errors.jsonl)
    assert per_task["hotpotqa"] >= 2 and per_task["nq"] >= 1
    assert sum(per_task.values()) + ctx_m["counts"]["no_entity"] == 5
    task_of = {s["id"]: s["task"] for s in _rows(run / "samples" / "samples.jsonl")}
    attrs = read_attributions(run / "attribution" / "attributions")
    assert Counter(task_of[a.id] for a in attrs) == per_task
    examples = _rows(run / "labels" / "train.jsonl")
    instructions = {c["instruction"] for c in contexts}
    assert {e["prompt"] for e in examples} == instructions  # labels for both tasks
    assert (run / "train" / "model" / "config.json").exists()

    # every set was scored with its own metric, closed and pooled, by both retrievers
    metric = {"hp": ("hotpotqa", "substring", 32), "mu": ("eli5", "rougeL", 6)}
    for name, (task, met, n_new) in metric.items():
        for variant in ("base", "trained"):
            r = json.loads((run / "eval" / name / f"retrieval_{variant}" / "metrics.json")
                           .read_text())
            assert 0 <= r["ndcg@10"] <= 1 and r["n_queries"] >= 1
            for kind in ("rag", "rag-pooled"):
                m = json.loads((run / "eval" / name / f"{kind}_{variant}" / "metrics.json")
                               .read_text())
                per_task = m["conditions"]["retrieved"]["per_task"]
                assert list(per_task) == [task] and per_task[task]["metric"] == met
            preds = _rows(run / "eval" / name / f"rag_{variant}" / "predictions.jsonl")
            assert {p["max_new_tokens"] for p in preds} == {n_new}
    pooled = _rows(run / "eval_sets" / "_pooled" / "corpus.jsonl")
    assert {p["id"].split("/")[0] for p in pooled} == {"hp", "mu"}
    assert (run / "report" / "report.html").exists()

    # a rerun finds every stage complete and computes nothing
    assert main(args) == 0
    again = capsys.readouterr().out
    again = again[again.rindex("scarlet run:"):]
    for stage in ("context", "attribute", "label", "train", "set hp", "rag hp (trained)",
                  "retrieval mu (base)", "rag-pooled mu (trained)"):
        line = next(x for x in again.splitlines() if f"│ {stage} " in x)
        assert "skipped" in line, line
