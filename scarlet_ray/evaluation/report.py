"""The run report: one self-contained HTML page plus PNG figures in RUN_DIR/report/.

Reads what the stages left in a run directory (manifests, the Attribution Parquet dataset, the
samples, the evaluation metrics) and draws: the sorted utility curve per task with its cluster
boundaries (the paper's inverse S), label counts per task, the surrogate r2 distribution,
retrieval and RAG metrics before and after training, and time (and cost) per stage. Any piece
that is missing is shown as "not run"; the report never fails because a stage did not run.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scarlet_ray.layout import RunLayout

log = logging.getLogger(__name__)

LABEL_COLORS = {"pos": "#2e7d32", "mid": "#9e9e9e", "neg": "#c62828"}
RETRIEVAL_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
CONDITION_NAMES = {"none": "no retrieval", "gold": "gold passages", "retrieved": "retrieved"}


# ------------------------------------------------------------------ reading the run

def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("report: cannot read %s: %s", path, exc)
        return None


def _variant_order(name: str) -> tuple[int, str]:
    return ({"base": 0, "trained": 1, "scarlet": 1, "gold": 2}.get(name, 3), name)


def _eval_runs(run_dir: Path, kind: str) -> dict[str, dict[str, Any]]:
    """eval/<kind>_<variant>/metrics.json for every variant, base and trained first."""
    out: dict[str, dict[str, Any]] = {}
    ev = RunLayout(run_dir).eval_dir
    if not ev.is_dir():
        return out
    for d in sorted(ev.glob(f"{kind}_*"), key=lambda p: _variant_order(p.name[len(kind) + 1:])):
        m = _read_json(d / "metrics.json")
        if m is not None:
            out[d.name[len(kind) + 1:]] = m
    return out


def _sample_tasks(samples_path: Path | None) -> dict[str, str]:
    """sample id -> task, read leniently (the report must not fail on one bad line)."""
    from scarlet_ray.records import iter_jsonl_objects

    if samples_path is None or not samples_path.exists():
        return {}
    tasks = {}
    for _, obj in iter_jsonl_objects(samples_path):
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            tasks[obj["id"]] = str(obj.get("task") or "unknown")
    return tasks


def _find_samples(run_dir: Path, samples_path: Path | None) -> Path | None:
    if samples_path is not None:
        return samples_path
    lay = RunLayout(run_dir)
    for cand in (lay.samples, lay.synthesized, run_dir / "samples.jsonl"):
        if cand.exists():
            return cand
    return None


def _attributions(run_dir: Path) -> list[Any]:
    from scarlet_ray.records import read_attributions

    d = RunLayout(run_dir).attributions
    if not d.is_dir():
        return []
    try:
        return read_attributions(d)
    except Exception as exc:  # noqa: BLE001 - a broken dataset is reported, not fatal here
        log.warning("report: cannot read attributions in %s: %s", d, exc)
        return []


def _stage_manifests(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Stage -> the manifests of its folders (RunLayout.stage_dirs)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for st, dirs in RunLayout(run_dir).stage_dirs():
        found = []
        for d in dirs:
            m = _read_json(d / "manifest.json")
            if m is not None:
                found.append({**m, "_name": d.name})
        if found:
            out[st] = found
    return out


def _seconds(man: dict[str, Any]) -> float:
    """Wall-clock seconds of a stage: the manifest's ``timings.total_s`` (older manifests:
    ``total``); a manifest without either counts 0, never the sum of its parts."""
    t = man.get("timings") or {}
    for key in ("total_s", "total"):
        if isinstance(t.get(key), (int, float)):
            return float(t[key])
    return 0.0


def _cost(man: dict[str, Any]) -> float | None:
    """A cost in USD if the manifest records one (top level, counts or extra keys)."""
    total, seen = 0.0, False
    for src in (man, man.get("counts") or {}):
        for k, v in src.items():
            if "cost" in str(k).lower() and isinstance(v, (int, float)) and not isinstance(v, bool):
                total += float(v)
                seen = True
    return total if seen else None


# ------------------------------------------------------------------ figures

def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    tmp = path.with_name(".tmp-" + path.name)
    fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    _plt().close(fig)
    os.replace(tmp, path)
    return path.name


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, max(1, n))
    return math.ceil(n / cols), cols


def fig_utility_curves(by_task: dict[str, list[Any]], path: Path) -> str:
    """Per task: every passage's utility, standardised within its sample, sorted high to low
    and coloured by label; dashed lines mark where pos ends and where neg begins."""
    plt = _plt()
    import numpy as np

    tasks = sorted(by_task)
    rows, cols = _grid(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    for ax, task in zip(axes.flat, tasks, strict=False):
        u_all, l_all = [], []
        for a in by_task[task]:
            u = np.asarray(a.utility, dtype=float)
            sd = u.std()
            u_all.extend(((u - u.mean()) / sd) if sd > 0 else (u - u.mean()))
            l_all.extend(a.label)
        order = np.argsort(-np.asarray(u_all), kind="stable")
        u_sorted = np.asarray(u_all)[order]
        labels = [l_all[i] for i in order]
        x = np.linspace(0, 1, len(u_sorted)) if len(u_sorted) > 1 else np.zeros(1)
        for lab, color in LABEL_COLORS.items():
            sel = [i for i, v in enumerate(labels) if v == lab]
            if sel:
                ax.scatter(x[sel], u_sorted[sel], s=6, c=color, label=lab, linewidths=0)
        ax.plot(x, u_sorted, color="black", linewidth=0.6, alpha=0.5)
        n = len(labels)
        cnt = Counter(labels)
        for b in (cnt["pos"] / n if n else 0, (cnt["pos"] + cnt["mid"]) / n if n else 0):
            if 0 < b < 1:
                ax.axvline(b, color="#555", linestyle="--", linewidth=0.8)
        ax.set_title(f"{task} ({len(by_task[task])} samples)", fontsize=10)
        ax.set_xlabel("passages, sorted by utility (fraction)", fontsize=8)
        ax.set_ylabel("utility (z within sample)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, markerscale=2, loc="upper right")
    fig.suptitle("Sorted passage utility per task, with label cluster boundaries", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def fig_label_counts(counts: dict[str, Counter], path: Path) -> str:
    plt = _plt()
    import numpy as np

    tasks = sorted(counts)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(tasks) + 2), 3.4))
    for j, lab in enumerate(("pos", "mid", "neg")):
        vals = [counts[t][lab] for t in tasks]
        bars = ax.bar(x + (j - 1) * 0.27, vals, 0.27, label=lab, color=LABEL_COLORS[lab])
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, tasks, fontsize=8)
    ax.set_ylabel("passages")
    ax.set_title("Passage labels per task", fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def fig_r2(r2_by_task: dict[str, list[float]], path: Path) -> str:
    plt = _plt()
    import numpy as np

    allv = [v for vs in r2_by_task.values() for v in vs]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    lo = min(0.0, float(np.min(allv)))
    bins = np.linspace(lo, 1.0, 26)
    tasks = sorted(r2_by_task)
    ax.hist([np.clip(r2_by_task[t], lo, 1.0) for t in tasks], bins=bins, stacked=True,
            label=tasks)
    med = float(np.median(allv))
    ax.axvline(med, color="black", linestyle="--", linewidth=1)
    ax.text(med, ax.get_ylim()[1] * 0.95, f" median {med:.2f}", fontsize=8, va="top")
    ax.set_xlabel("surrogate r2 on held-out masks")
    ax.set_ylabel("samples")
    ax.set_title("How well the linear surrogate fits (per sample)", fontsize=11)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _grouped_bars(ax: Any, groups: Sequence[str], series: dict[str, list[float | None]]) -> None:
    import numpy as np

    x = np.arange(len(groups))
    w = 0.8 / max(1, len(series))
    for j, (name, vals) in enumerate(series.items()):
        ys = [v if v is not None else 0.0 for v in vals]
        bars = ax.bar(x + (j - (len(series) - 1) / 2) * w, ys, w, label=name)
        ax.bar_label(bars, labels=[f"{v:.3f}" if v is not None else "n/a" for v in vals],
                     fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, groups, fontsize=8)
    ax.set_ylim(0, max([1e-9] + [v for vs in series.values() for v in vs if v is not None])
                * 1.25)
    ax.legend(fontsize=7)


def fig_retrieval(runs: dict[str, dict[str, Any]], path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    series = {name: [m.get(k) for k in RETRIEVAL_METRICS] for name, m in runs.items()}
    _grouped_bars(ax, RETRIEVAL_METRICS, series)
    first = next(iter(runs.values()))
    ax.set_title(f"Retrieval on {Path(str(first.get('beir', ''))).name or 'BEIR'}"
                 f"/{first.get('split', '')}: before and after training", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def rag_series(runs: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, list[float | None]]]:
    """Rows of the RAG chart: floor (no retrieval), retrieved per retriever, ceiling (gold)."""
    tasks: set[str] = set()
    for m in runs.values():
        for c in (m.get("conditions") or {}).values():
            tasks.update(c.get("per_task", {}))
    groups = [*sorted(tasks), "overall"]

    def vals(cond: dict[str, Any] | None) -> list[float | None]:
        if not cond:
            return [None] * len(groups)
        return [cond.get("per_task", {}).get(t, {}).get("score") for t in groups[:-1]] + [
            cond.get("overall")]

    series: dict[str, list[float | None]] = {}
    first = next(iter(runs.values()))
    if "none" in first.get("conditions", {}):
        series["no retrieval"] = vals(first["conditions"]["none"])
    for name, m in runs.items():
        if "retrieved" in m.get("conditions", {}):
            series[f"retrieved ({name})"] = vals(m["conditions"]["retrieved"])
    if "gold" in first.get("conditions", {}):
        series["gold passages"] = vals(first["conditions"]["gold"])
    return groups, series


def fig_rag(runs: dict[str, dict[str, Any]], path: Path) -> str:
    plt = _plt()
    groups, series = rag_series(runs)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(groups) + 3), 3.8))
    _grouped_bars(ax, groups, series)
    ax.set_ylabel("task metric")
    ax.set_title("RAG with the generator: floor, retrievers, ceiling", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def fig_times(rows: list[tuple[str, float]], path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.2))
    names = [r[0] for r in rows][::-1]
    secs = [r[1] for r in rows][::-1]
    bars = ax.barh(names, secs, color="#1565c0")
    ax.bar_label(bars, labels=[_fmt_secs(s) for s in secs], fontsize=7, padding=2)
    ax.set_xlabel("wall-clock seconds")
    ax.set_xlim(0, max(secs + [1e-9]) * 1.2)
    ax.set_title("Time per stage", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------ HTML

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.notrun{color:#888;font-style:italic;background:#fafafa;border:1px dashed #ccc;padding:.6em}
.meta{color:#666;font-size:.9em}
"""


def _fmt_secs(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return html.escape(str(v))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _not_run(what: str) -> str:
    return f'<p class="notrun">not run: {html.escape(what)}</p>'


def _img(name: str, alt: str) -> str:
    return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}">'


def build_report(run_dir: Path, samples_path: Path | None = None) -> Path:
    """Write RUN_DIR/report/report.html and its PNG figures; return the HTML path."""
    run_dir = Path(run_dir)
    out = RunLayout(run_dir).report_dir
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # figures of a stage that no longer has data must not linger
        old.unlink()
    sections: list[str] = []

    # ---- attribution: utility curves, labels, r2
    attrs = _attributions(run_dir)
    sp = _find_samples(run_dir, Path(samples_path) if samples_path else None)
    tasks = _sample_tasks(sp)
    by_task: dict[str, list[Any]] = defaultdict(list)
    for a in attrs:
        by_task[tasks.get(a.id, "unknown" if tasks else "all")].append(a)
    sec = ["<h2>Attribution</h2>"]
    if attrs:
        sec.append(f'<p class="meta">{len(attrs)} samples attributed; generator '
                   f"{html.escape(attrs[0].generator)}, target {html.escape(attrs[0].target)}, "
                   f"{attrs[0].n_masks} masks; samples file: "
                   f"{html.escape(str(sp) if sp else 'not found (tasks unknown)')}</p>")
        sec.append("<h3>Sorted utility per task</h3>")
        sec.append(_img(fig_utility_curves(by_task, out / "utility_curves.png"),
                        "sorted utility curves"))
        counts = {t: Counter(lab for a in v for lab in a.label) for t, v in by_task.items()}
        sec.append("<h3>Labels per task</h3>")
        sec.append(_img(fig_label_counts(counts, out / "label_counts.png"), "label counts"))
        sec.append(_table(["task", "samples", "pos", "mid", "neg"],
                          [(t, len(by_task[t]), c["pos"], c["mid"], c["neg"])
                           for t, c in sorted(counts.items())]))
        r2 = {t: [a.r2 for a in v if a.r2 is not None and math.isfinite(a.r2)]
              for t, v in by_task.items()}
        r2 = {t: v for t, v in r2.items() if v}
        sec.append("<h3>Surrogate fit (r2)</h3>")
        if r2:
            sec.append(_img(fig_r2(r2, out / "r2.png"), "surrogate r2 distribution"))
        else:
            sec.append(_not_run("no r2 values recorded"))
    else:
        sec.append(_not_run("attribution (no attribution/attributions/*.parquet)"))
    sections.append("\n".join(sec))

    # ---- labels stage (kept / dropped samples)
    lab_man = _read_json(RunLayout(run_dir).train_file.parent / "manifest.json")
    sec = ["<h2>Training examples</h2>"]
    if lab_man is not None and lab_man.get("counts"):
        sec.append(_table(["count", "value"], sorted(lab_man["counts"].items())))
    else:
        sec.append(_not_run("labels"))
    sections.append("\n".join(sec))

    # ---- retrieval
    ret = _eval_runs(run_dir, "retrieval")
    sec = ["<h2>Retrieval</h2>"]
    if ret:
        sec.append(_img(fig_retrieval(ret, out / "retrieval.png"), "retrieval metrics"))
        sec.append(_table(["retriever", *RETRIEVAL_METRICS, "queries", "model"],
                          [(n, *[m.get(k) for k in RETRIEVAL_METRICS], m.get("n_queries"),
                            m.get("model")) for n, m in ret.items()]))
        for want in ("base", "trained"):
            if want not in ret:
                sec.append(_not_run(f"retrieval evaluation of the {want} retriever"))
    else:
        sec.append(_not_run("retrieval evaluation (eval/retrieval_*/metrics.json)"))
    sections.append("\n".join(sec))

    # ---- RAG
    rag = _eval_runs(run_dir, "rag")
    sec = ["<h2>RAG accuracy</h2>"]
    if rag:
        sec.append(_img(fig_rag(rag, out / "rag.png"), "RAG accuracy"))
        groups, series = rag_series(rag)
        sec.append(_table(["condition", *groups], [(k, *v) for k, v in series.items()]))
        for want in ("base", "trained"):
            if want not in rag:
                sec.append(_not_run(f"RAG evaluation with the {want} retriever"))
    else:
        sec.append(_not_run("RAG evaluation (eval/rag_*/metrics.json)"))
    sections.append("\n".join(sec))

    # ---- time and cost
    mans = _stage_manifests(run_dir)
    sec = ["<h2>Time and cost per stage</h2>"]
    rows, trows = [], []
    for st, _ in RunLayout(run_dir).stage_dirs():
        ms = mans.get(st)
        if not ms:
            trows.append((st, "not run", "", "", ""))
            continue
        secs = sum(_seconds(m) for m in ms)
        costs = [c for c in (_cost(m) for m in ms) if c is not None]
        status = ", ".join(sorted({str(m.get("status", "?")) for m in ms}))
        rows.append((st, secs))
        trows.append((st, status, _fmt_secs(secs), f"${sum(costs):.4f}" if costs else "-",
                      ", ".join(f"{k}={v}" for m in ms
                                for k, v in (m.get("counts") or {}).items())[:160]))
    if rows:
        sec.append(_img(fig_times(rows, out / "stage_times.png"), "time per stage"))
    sec.append(_table(["stage", "status", "time", "cost", "counts"], trows))
    sections.append("\n".join(sec))

    title = f"scarlet-ray report: {run_dir.name}"
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            f"<p class='meta'>run directory {html.escape(str(run_dir.resolve()))}; written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</p>"
            + "\n".join(sections) + "</body></html>")
    path = out / "report.html"
    tmp = out / ".report.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scarlet_ray.evaluation.report RUN_DIR [SAMPLES]``"""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m scarlet_ray.evaluation.report RUN_DIR [SAMPLES.jsonl]")
        return 2
    print(build_report(Path(args[0]), Path(args[1]) if len(args) > 1 else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
