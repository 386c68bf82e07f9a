"""The report and bench/results_table.py on the per-set evaluation layout
(eval/<set>/<kind>_<variant>/metrics.json): numbers per set, "not run" where a run is missing."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from scarlet_ray.evaluation.report import build_report, results_rows
from scarlet_ray.layout import RunLayout
from scarlet_ray.manifest import write_manifest

ROOT = Path(__file__).resolve().parents[1]

# set -> (task, metric, questions, qrels); scifact is a BEIR-format set: retrieval only
SETS = {"hotpotqa-dev": ("hotpotqa", "substring", 30, 60),
        "eli5-dev": ("eli5", "rougeL", 20, 0)}
# (set, kind, variant) -> retrieved score; floor/ceiling in the base closed run
RAG = {("hotpotqa-dev", "rag", "base"): 0.31, ("hotpotqa-dev", "rag", "trained"): 0.37,
       ("hotpotqa-dev", "rag", "gold"): 0.41, ("hotpotqa-dev", "rag-pooled", "trained"): 0.29,
       ("eli5-dev", "rag", "base"): 0.18, ("eli5-dev", "rag", "trained"): 0.22}
FLOOR = {"hotpotqa-dev": 0.12, "eli5-dev": 0.11}
CEILING = {"hotpotqa-dev": 0.63, "eli5-dev": 0.27}
NDCG = {"base": 0.512, "trained": 0.547, "gold": 0.588}


def _rag_metrics(task: str, metric: str, n: int, conds: dict[str, float]) -> dict:
    return {"conditions": {c: {"overall": v, "macro": v, "n": n,
                               "per_task": {task: {"score": v, "n": n, "metric": metric}}}
                           for c, v in conds.items()},
            "n_samples": n, "retriever": "m", "generator": "g", "top_k": 3}


def _write(d: Path, metrics: dict, stage: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(metrics))
    write_manifest(d, stage, timings={"total_s": 10.0})


def make_run(root: Path, pooled: bool = True) -> Path:
    lay = RunLayout(root)
    for name, (task, _metric, n, qrels) in SETS.items():
        write_manifest(lay.eval_set_dir(name), "eval_set", counts={"questions": n,
                                                                   "qrels": qrels},
                       extra={"kind": "samples", "task": task})
    write_manifest(lay.eval_set_dir("scifact"), "eval_set", counts={"questions": 300},
                   extra={"kind": "beir", "task": None})
    for (name, kind, variant), acc in RAG.items():
        if kind == "rag-pooled" and not pooled:
            continue
        task, metric, n, _ = SETS[name]
        conds = {"retrieved": acc}
        if kind == "rag" and variant == "base":
            conds.update(none=FLOOR[name], gold=CEILING[name])
        _write(lay.eval_run(kind, variant, name), _rag_metrics(task, metric, n, conds),
               "evaluate_rag")
    for variant, nd in NDCG.items():
        _write(lay.eval_run("retrieval", variant, "hotpotqa-dev"),
               {"ndcg@10": nd, "recall@10": 0.7, "recall@100": 0.9, "mrr@10": 0.6,
                "n_queries": 30, "model": variant}, "evaluate_retrieval")
    _write(lay.eval_run("retrieval", "base", "scifact"),
           {"ndcg@10": 0.645, "recall@10": 0.78, "recall@100": 0.92, "mrr@10": 0.61,
            "n_queries": 300, "model": "base"}, "evaluate_retrieval")
    _write(lay.eval_run("beir", "base"),  # evaluation.beir, outside the sets
           {"ndcg@10": 0.4321, "recall@10": 0.5, "recall@100": 0.8, "mrr@10": 0.4,
            "n_queries": 50, "model": "base", "beir": "nfcorpus", "split": "test"},
           "evaluate_retrieval")
    return root


def _table_after(text: str, heading: str) -> list[list[str]]:
    """Rows (cells as text) of the first table after ``heading``."""
    rest = text[text.index(heading):]
    table = rest[:rest.index("</table>")]
    return [re.findall(r"<t[dh]>(.*?)</t[dh]>", r) for r in re.findall(r"<tr>(.*?)</tr>", table)]


def _md_rows(md: str, title: str) -> list[list[str]]:
    block = md[md.index(title):].split("\n\n")[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]


def _results_table():
    spec = importlib.util.spec_from_file_location("results_table",
                                                  ROOT / "bench" / "results_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_table_per_set(tmp_path):
    run = make_run(tmp_path / "run")
    text = build_report(run).read_text()

    closed = _table_after(text, "RAG, closed corpus")
    assert closed[0] == ["set", "task", "metric", "n", "no retrieval", "base",
                         "SCARLet (trained)", "gold-label retriever", "gold passages"]
    by_set = {r[0]: r for r in closed[1:]}
    assert set(by_set) == {"eli5-dev", "hotpotqa-dev", "macro average (2 sets)"}  # no scifact
    assert by_set["hotpotqa-dev"] == ["hotpotqa-dev", "hotpotqa", "substring", "30", "0.1200",
                                      "0.3100", "0.3700", "0.4100", "0.6300"]
    assert by_set["eli5-dev"] == ["eli5-dev", "eli5", "rougeL", "20", "0.1100", "0.1800",
                                  "0.2200", "not run", "0.2700"]
    macro = by_set["macro average (2 sets)"]
    assert [float(v) for v in macro[4:7]] == pytest.approx([0.115, 0.245, 0.295])
    assert macro[7] == "incomplete (1/2 sets)"  # never an average over a subset
    assert float(macro[8]) == pytest.approx(0.45)

    pooled = {r[0]: r for r in _table_after(text, "RAG, pooled corpus")[1:]}
    assert pooled["hotpotqa-dev"][4:] == ["0.1200", "not run", "0.2900", "not run", "0.6300"]
    assert pooled["eli5-dev"][4:] == ["0.1100", "not run", "not run", "not run", "0.2700"]
    assert pooled["macro average (2 sets)"][5:8] == ["incomplete (0/2 sets)",
                                                     "incomplete (1/2 sets)",
                                                     "incomplete (0/2 sets)"]

    ret = {r[0]: r for r in _table_after(text, "Retrieval, nDCG@10")[1:]}
    assert ret["hotpotqa-dev"] == ["hotpotqa-dev", "30", "0.5120", "0.5470", "0.5880"]
    assert ret["scifact"] == ["scifact", "300", "0.6450", "not run", "not run"]
    assert ret["eli5-dev"][2:] == ["not run (no gold passages)"] * 3

    # per set: retrieval where it ran, a RAG figure per RAG set, evaluation.beir on its own
    imgs = set(re.findall(r'<img src="([^"]+)"', text))
    assert {"retrieval_hotpotqa-dev.png", "rag_hotpotqa-dev.png", "rag_eli5-dev.png",
            "retrieval_scifact.png", "retrieval_beir.png"} <= imgs
    assert not {"retrieval_eli5-dev.png", "rag_scifact.png", "retrieval.png", "rag.png"} & imgs
    for name in imgs:
        assert (run / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "not run: retrieval evaluation on eli5-dev (the set has no gold passages" in text
    assert "not run: RAG on eli5-dev, closed corpus, gold-label retriever" in text
    assert "not run: RAG on hotpotqa-dev, pooled corpus, base" in text
    eli5 = text[text.index("<h3>Set eli5-dev</h3>"):]
    assert "task eli5, metric rougeL, 20 questions" in eli5
    beir = _table_after(text, "Retrieval on evaluation.beir")
    assert beir[1][:2] == ["base", "0.4321"]
    # the eval runs count in the time per stage
    assert re.search(r"<td>eval</td><td>complete</td><td>[0-9.]+ (s|min)</td>", text)


def test_results_table_markdown(tmp_path):
    run = make_run(tmp_path / "run")
    md = _results_table().table(run)
    closed = {r[0]: r for r in _md_rows(md, "RAG, closed corpus")}
    assert closed["hotpotqa-dev"] == ["hotpotqa-dev", "hotpotqa", "substring", "30", "0.120",
                                      "0.310", "0.370", "0.410", "0.630"]
    assert closed["eli5-dev"] == ["eli5-dev", "eli5", "rougeL", "20", "0.110", "0.180",
                                  "0.220", "not run", "0.270"]
    assert closed["macro average (2 sets)"][4:] == ["0.115", "0.245", "0.295",
                                                    "incomplete (1/2 sets)", "0.450"]
    pooled = {r[0]: r for r in _md_rows(md, "RAG, pooled corpus")}
    assert pooled["hotpotqa-dev"][5:8] == ["not run", "0.290", "not run"]
    assert pooled["eli5-dev"][5:8] == ["not run"] * 3
    ret = {r[0]: r for r in _md_rows(md, "Retrieval, nDCG@10")}
    assert ret["hotpotqa-dev"][2:] == ["0.512", "0.547", "0.588"]
    assert "scifact" not in closed


def test_no_pooled_table_without_pooled_runs(tmp_path):
    run = make_run(tmp_path / "run", pooled=False)
    assert results_rows(run, "pooled") is None
    text = build_report(run).read_text()
    assert "RAG, closed corpus" in text and "RAG, pooled corpus" not in text
    assert "pooled corpus, base" not in text
    md = _results_table().table(run)
    assert "pooled corpus" not in md and "RAG, closed corpus" in md


def test_results_table_of_an_empty_run(tmp_path):
    assert "not run" in _results_table().table(tmp_path / "empty")
