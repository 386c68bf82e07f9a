"""The run report: figures from a synthetic but schema-valid run dir, rendered by Chromium."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scarlet_ray.evaluation.report import build_report
from scarlet_ray.manifest import write_manifest
from scarlet_ray.records import Attribution, write_attribution_part, write_jsonl

TASKS = ("nq", "hotpotqa", "eli5")


def make_run(root: Path, with_trained: bool = True) -> Path:
    rng = random.Random(0)
    samples, attrs = [], []
    for t in TASKS:
        for i in range(6):
            sid = f"{t}-{i}"
            pids = [f"p{j}" for j in range(10)]
            samples.append({"id": sid, "task": t, "input": f"question {i}", "output": "answer",
                            "passages": [{"id": p, "title": p, "text": f"text {p}"}
                                         for p in pids]})
            # an inverse-S: a couple of useful passages, a flat middle, a harmful tail
            u = sorted([rng.gauss(3, 0.5) for _ in range(2)] + [rng.gauss(0, 0.2) for _ in range(5)]
                       + [rng.gauss(-2, 0.5) for _ in range(3)], reverse=True)
            rng.shuffle(order := list(range(10)))
            util = [u[k] for k in order]
            lab = ["pos" if u[k] > 1.5 else "neg" if u[k] < -1 else "mid" for k in order]
            attrs.append(Attribution(id=sid, passage_ids=pids, utility=util, intercept=-5.0,
                                     r2=rng.uniform(0.3, 0.95), label=lab, n_masks=64,
                                     target="logprob_sum", generator="smollm2-135m-instruct"))
    write_jsonl(root / "synthesis" / "samples.jsonl", samples)
    write_attribution_part(root / "attribution" / "attributions", attrs, "part-00000")
    for st, secs in (("context", 12.5), ("synthesis", 340.0), ("attribution", 1800.0),
                     ("labels", 1.2)):
        write_manifest(root / st, st, counts={"records": 18, **({"cost_usd": 0.42}
                                                                if st == "synthesis" else {})},
                       timings={"run": secs})
    # one evaluation set in the per-set layout: eval/<set>/{retrieval,rag}_<variant>
    write_manifest(root / "eval_sets" / "hotpotqa-dev", "eval_set",
                   counts={"questions": 18, "qrels": 36}, extra={"kind": "samples",
                                                                 "task": "hotpotqa"})
    variants = (("base", 0.61, 0.3), ("trained", 0.64, 0.35), ("gold", 0.66, 0.4))
    for variant, nd, acc in variants[:3 if with_trained else 1]:
        d = root / "eval" / "hotpotqa-dev" / f"retrieval_{variant}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(
            {"ndcg@10": nd, "recall@10": nd + 0.1, "recall@100": 0.93, "mrr@10": nd - 0.03,
             "n_queries": 18, "model": variant, "beir": "eval_sets/hotpotqa-dev/beir",
             "split": "test"}))
        write_manifest(d, "evaluate_retrieval", timings={"search_and_score": 200.0})
        d = root / "eval" / "hotpotqa-dev" / f"rag_{variant}"
        d.mkdir(parents=True)
        conds = {c: {"overall": v, "macro": v, "n": 18,
                     "per_task": {"hotpotqa": {"score": v, "n": 18, "metric": "substring"}}}
                 for c, v in (("retrieved", acc), ("none", 0.1), ("gold", 0.5))
                 if c == "retrieved" or variant == "base"}
        (d / "metrics.json").write_text(json.dumps({"conditions": conds, "n_samples": 18}))
        write_manifest(d, "evaluate_rag", timings={"total_s": 30.0})
    return root


def test_report_with_partial_run(tmp_path):
    run = make_run(tmp_path / "run", with_trained=False)
    page = build_report(run)
    assert page == run / "report" / "report.html"
    text = page.read_text()
    imgs = re.findall(r'<img src="([^"]+)"', text)
    assert set(imgs) == {"utility_curves.png", "label_counts.png", "r2.png",
                         "retrieval_hotpotqa-dev.png", "rag_hotpotqa-dev.png", "stage_times.png"}
    for name in imgs:
        data = (page.parent / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    # what did not run is said, not hidden
    assert "not run: retrieval evaluation, SCARLet (trained)" in text
    assert "not run: RAG on hotpotqa-dev, closed corpus, SCARLet (trained)" in text
    # the per-set results table: floor, base, two retrievers not run, ceiling
    assert ("<td>hotpotqa-dev</td><td>hotpotqa</td><td>substring</td><td>18</td>"
            "<td>0.1000</td><td>0.3000</td><td>not run</td><td>not run</td><td>0.5000</td>"
            in text)
    assert re.search(r"<td>train</td><td>not run</td>", text)
    # numbers come from the run dir: label counts and cost
    assert "<td>nq</td><td>6</td><td>12</td><td>30</td><td>18</td>" in text
    assert "$0.4200" in text


def test_report_of_an_empty_run_dir_says_not_run(tmp_path):
    page = build_report(tmp_path / "empty")
    text = page.read_text()
    assert "<img" not in text
    assert text.count("not run:") >= 3
    assert "not run: evaluation" in text


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium not installed: run .ci/system-deps (apt-get install -y chromium)")
    return exe


def _chromium_args(tmp_path: Path) -> list[str]:
    return [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'chrome-profile'}"]


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    run = make_run(tmp_path / "run")
    page = build_report(run)
    url = page.resolve().as_uri()
    dom = subprocess.run([*_chromium_args(tmp_path), "--dump-dom", url], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    imgs = re.findall(r'<img src="([^"]+)"', dom)
    assert len(imgs) == 6, dom[:2000]
    for name in imgs:
        f = page.parent / name
        assert f.exists() and f.stat().st_size > 0
    assert "not run" not in dom.split("Time and cost")[0]  # everything up to eval has data
    shot = tmp_path / "report.png"
    subprocess.run([*_chromium_args(tmp_path), f"--screenshot={shot}", "--window-size=1200,2000",
                    url], capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
    keep = Path(__file__).resolve().parents[2] / "out"
    if keep.is_dir():  # let a developer look at the rendering
        shutil.copy(shot, keep / "report_screenshot.png")
