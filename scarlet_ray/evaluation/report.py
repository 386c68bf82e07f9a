"""The run report: one self-contained HTML page plus PNG figures in RUN_DIR/report/.

Reads what the stages left in a run directory (manifests, the Attribution Parquet dataset, the
samples, the evaluation metrics) and draws: the sorted utility curve per task with its cluster
boundaries (the paper's inverse S), label counts per task, the surrogate r2 distribution,
the results per evaluation set (``eval/<set>/<kind>_<variant>``: the paper's Table 2, closed and
pooled corpus, then each set's retrieval and RAG metrics), retrieval on ``evaluation.beir``, and
time (and cost) per stage. Any piece that is missing is shown as "not run"; the report never
fails because a stage did not run.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scarlet_ray.layout import VARIANTS, RunLayout

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


def _eval_runs(dirs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """name -> metrics.json of each folder that has one, in the order given."""
    out: dict[str, dict[str, Any]] = {}
    for name, d in dirs.items():
        m = _read_json(d / "metrics.json")
        if m is not None:
            out[name] = m
    return out


# ------------------------------------------------------------------ evaluation sets

NOT_RUN = "not run"
VARIANT_NAMES = {"base": "base", "trained": "SCARLet (trained)", "gold": "gold-label retriever"}
CORPUS_KINDS = {"closed": "rag", "pooled": "rag-pooled"}
RESULT_HEADERS = ("set", "task", "metric", "n", "no retrieval", *VARIANT_NAMES.values(),
                  "gold passages")


def set_runs(lay: RunLayout, set_name: str, kind: str) -> dict[str, dict[str, Any]]:
    """variant -> metrics.json of eval/<set>/<kind>_<variant>, base, trained, gold."""
    return _eval_runs({v: lay.eval_run(kind, v, set_name) for v in VARIANTS})


def _set_names(lay: RunLayout) -> list[str]:
    """Sets with runs on disk or prepared (eval_sets/<set>/manifest.json), in name order."""
    names = set(lay.eval_set_names())
    if lay.eval_dir.is_dir():  # runs whose manifest is missing but whose metrics are there
        names.update(d.name for d in lay.eval_dir.iterdir()
                     if d.is_dir() and d.name != "attribution" and not d.name.startswith("_")
                     and any(d.glob("*_*/metrics.json")))
    if lay.eval_sets_dir.is_dir():
        names.update(d.name for d in lay.eval_sets_dir.iterdir()
                     if d.is_dir() and not d.name.startswith("_")
                     and (d / "manifest.json").exists())
    return sorted(names)


def _conditions(runs: Sequence[dict[str, Any]], cond: str) -> dict[str, Any] | None:
    """The first run's ``cond`` condition (none and gold are only in the base closed run)."""
    for m in runs:
        c = (m.get("conditions") or {}).get(cond)
        if c:
            return c
    return None


class EvalSetResults:
    """What a run directory holds for one evaluation set: its preparation manifest and the
    metrics of every retrieval / RAG run, read once."""

    def __init__(self, lay: RunLayout, name: str) -> None:
        self.name = name
        self.manifest = _read_json(lay.eval_set_dir(name) / "manifest.json") or {}
        self.retrieval = set_runs(lay, name, "retrieval")
        self.rag = {corpus: set_runs(lay, name, kind) for corpus, kind in CORPUS_KINDS.items()}

    @property
    def _all_rag(self) -> list[dict[str, Any]]:
        return [*self.rag["closed"].values(), *self.rag["pooled"].values()]

    @property
    def beir_only(self) -> bool:
        """A BEIR-format set: retrieval metrics only, no RAG."""
        return (self.manifest.get("kind") == "beir"
                or (self.manifest.get("extra") or {}).get("kind") == "beir")

    @property
    def has_gold(self) -> bool | None:
        """Whether the set has gold passages (None: unknown)."""
        q = (self.manifest.get("counts") or {}).get("qrels")
        return None if q is None else bool(q)

    def _per_task(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for m in self._all_rag:
            for c in (m.get("conditions") or {}).values():
                for t, v in (c.get("per_task") or {}).items():
                    out.setdefault(t, v)
        return out

    @property
    def task(self) -> str:
        t = self.manifest.get("task") or (self.manifest.get("extra") or {}).get("task")
        return str(t) if t else ("/".join(sorted(self._per_task())) or "?")

    @property
    def metric(self) -> str:
        ms = sorted({str(v.get("metric")) for v in self._per_task().values() if v.get("metric")})
        return "/".join(ms) or "?"

    def n(self, corpus: str = "closed") -> int | str:
        for m in self.rag[corpus].values():
            if isinstance(m.get("n_samples"), int):
                return m["n_samples"]
        q = (self.manifest.get("counts") or {}).get("questions")
        return q if isinstance(q, int) else NOT_RUN

    def row(self, corpus: str) -> list[Any]:
        """One row of the results table: the set's task metric per condition and retriever;
        the floor and the ceiling don't depend on the corpus, so they come from whichever run
        generated them (the base closed-corpus run)."""
        runs = self.rag[corpus]
        floor, ceiling = _conditions(self._all_rag, "none"), _conditions(self._all_rag, "gold")
        cells: list[Any] = [floor["overall"] if floor else NOT_RUN]
        for v in VARIANT_NAMES:
            c = (runs.get(v, {}).get("conditions") or {}).get("retrieved")
            cells.append(c["overall"] if c else NOT_RUN)
        cells.append(ceiling["overall"] if ceiling else NOT_RUN)
        return [self.name, self.task, self.metric, self.n(corpus), *cells]


def eval_sets(run_dir: Path) -> list[EvalSetResults]:
    lay = RunLayout(run_dir)
    return [EvalSetResults(lay, n) for n in _set_names(lay)]


def _macro(rows: Sequence[Sequence[Any]], first: int) -> list[Any]:
    """The mean over sets of each score column; a column some set lacks is not averaged
    over the others (that would compare different sets), it says how many sets it has."""
    out: list[Any] = [f"macro average ({len(rows)} sets)", "", "", ""]
    for j in range(first, len(rows[0])):
        vals = [r[j] for r in rows if isinstance(r[j], (int, float))]
        out.append(sum(vals) / len(vals) if len(vals) == len(rows)
                   else f"incomplete ({len(vals)}/{len(rows)} sets)")
    return out


def results_rows(run_dir: Path, corpus: str = "closed",
                 sets: Sequence[EvalSetResults] | None = None) -> list[list[Any]] | None:
    """The paper's Table 2 for one corpus setting: a row per evaluation set (set, task, metric,
    n, no retrieval, base, SCARLet, gold-label retriever, gold passages) and a macro-average
    row; missing runs are ``"not run"``. None when there is nothing to show (no RAG set; for
    ``pooled``: no rag-pooled run at all)."""
    sets = eval_sets(run_dir) if sets is None else sets
    rag_sets = [s for s in sets if not s.beir_only]
    if not rag_sets or (corpus == "pooled" and not any(s.rag["pooled"] for s in rag_sets)):
        return None
    rows = [s.row(corpus) for s in rag_sets]
    return [*rows, _macro(rows, 4)] if len(rows) > 1 else rows


def retrieval_rows(run_dir: Path, sets: Sequence[EvalSetResults] | None = None,
                   metric: str = "ndcg@10") -> list[list[Any]] | None:
    """A row per evaluation set: set, queries, ``metric`` per retriever variant."""
    sets = eval_sets(run_dir) if sets is None else sets
    if not sets:
        return None
    rows = []
    for s in sets:
        queries = next((m["n_queries"] for m in s.retrieval.values()
                        if isinstance(m.get("n_queries"), int)), "")
        missing = (f"{NOT_RUN} (no gold passages)" if s.has_gold is False and not s.beir_only
                   else NOT_RUN)
        rows.append([s.name, queries, *[s.retrieval[v].get(metric, NOT_RUN)
                                        if v in s.retrieval else missing
                                        for v in VARIANT_NAMES]])
    return rows


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                   digits: int = 3) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


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


def fig_retrieval(runs: dict[str, dict[str, Any]], path: Path, title: str | None = None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    series = {name: [m.get(k) for k in RETRIEVAL_METRICS] for name, m in runs.items()}
    _grouped_bars(ax, RETRIEVAL_METRICS, series)
    first = next(iter(runs.values()))
    ax.set_title(title or f"Retrieval on {Path(str(first.get('beir', ''))).name or 'BEIR'}"
                 f"/{first.get('split', '')}: before and after training", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def rag_series(runs: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, list[float | None]]]:
    """Rows of the RAG chart: floor (no retrieval), retrieved per retriever, ceiling (gold).

    Groups are the tasks plus "overall" (only the task where there is one); the floor and the
    ceiling come from the first run that has them (the base closed-corpus run generates them).
    """
    tasks: set[str] = set()
    for m in runs.values():
        for c in (m.get("conditions") or {}).values():
            tasks.update(c.get("per_task", {}))
    groups = sorted(tasks) + (["overall"] if len(tasks) != 1 else [])

    def vals(cond: dict[str, Any] | None) -> list[float | None]:
        if not cond:
            return [None] * len(groups)
        return [cond.get("overall") if t == "overall"
                else cond.get("per_task", {}).get(t, {}).get("score") for t in groups]

    series: dict[str, list[float | None]] = {}
    floor = _conditions(list(runs.values()), "none")
    if floor:
        series["no retrieval"] = vals(floor)
    for name, m in runs.items():
        if "retrieved" in (m.get("conditions") or {}):
            series[f"retrieved ({name})"] = vals(m["conditions"]["retrieved"])
    ceiling = _conditions(list(runs.values()), "gold")
    if ceiling:
        series["gold passages"] = vals(ceiling)
    return groups, series


def fig_rag(runs: dict[str, dict[str, Any]], path: Path, title: str | None = None) -> str:
    plt = _plt()
    groups, series = rag_series(runs)
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(groups) * len(series) + 3), 3.8))
    _grouped_bars(ax, groups, series)
    ax.set_ylabel("task metric")
    ax.set_title(title or "RAG with the generator: floor, retrievers, ceiling", fontsize=11)
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


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _retrieval_block(runs: dict[str, dict[str, Any]], png: Path, title: str | None) -> str:
    """Figure, table and "not run" notes for retrieval runs keyed by retriever name."""
    sec = [_img(fig_retrieval(runs, png, title), "retrieval metrics"),
           _table(["retriever", *RETRIEVAL_METRICS, "queries", "model"],
                  [(n, *[m.get(k) for k in RETRIEVAL_METRICS], m.get("n_queries"), m.get("model"))
                   for n, m in runs.items()])]
    sec += [_not_run(f"retrieval evaluation, {name}")
            for name in VARIANT_NAMES.values() if name not in runs]
    return "\n".join(sec)


def _eval_sets_section(run_dir: Path, out: Path) -> str:
    sets = eval_sets(run_dir)
    sec = ["<h2>Results per evaluation set</h2>"]
    if not sets:
        sec.append(_not_run("evaluation (no eval/<set>/*/metrics.json, no eval_sets/)"))
        return "\n".join(sec)
    closed = results_rows(run_dir, "closed", sets)
    pooled = results_rows(run_dir, "pooled", sets)
    for corpus, rows, what in (
            ("closed", closed, "each set retrieves from its own corpus"),
            ("pooled", pooled, "every set retrieves from one corpus pooled from all sets")):
        if rows is None:
            continue
        sec.append(f"<h3>RAG, {corpus} corpus</h3><p class='meta'>{what}; the set's task metric "
                   "with the generator; no retrieval (floor) and gold passages (ceiling) don't "
                   "depend on the retriever or the corpus.</p>")
        sec.append(_table(RESULT_HEADERS, rows))
    if closed is None and pooled is None:
        sec.append(_not_run("RAG evaluation (every set is retrieval-only)"))
    ret = retrieval_rows(run_dir, sets)
    if ret and any(s.retrieval for s in sets):
        sec.append("<h3>Retrieval, nDCG@10</h3>")
        sec.append(_table(["set", "queries", *VARIANT_NAMES.values()], ret))
    for s in sets:
        sec.append(f"<h3>Set {html.escape(s.name)}</h3>")
        meta = (["BEIR-format set (retrieval only)" + (f", task {s.task}" if s.task != "?"
                                                        else "")] if s.beir_only
                else [f"task {s.task}, metric {s.metric}"])
        meta.append(f"{s.n()} questions" if s.manifest or not s.beir_only else "")
        if not s.manifest:
            meta.append("no preparation manifest (eval_sets/<set>/manifest.json)")
        sec.append(f'<p class="meta">{html.escape(", ".join(m for m in meta if m))}</p>')
        name = _safe(s.name)
        if s.retrieval:
            sec.append(_retrieval_block(
                {VARIANT_NAMES[v]: m for v, m in s.retrieval.items()},
                out / f"retrieval_{name}.png", f"Retrieval on {s.name}: base and trained"))
        elif s.has_gold is False and not s.beir_only:
            sec.append(_not_run(f"retrieval evaluation on {s.name} (the set has no gold "
                                "passages: RAG only)"))
        else:
            sec.append(_not_run(f"retrieval evaluation on {s.name}"))
        if s.beir_only:
            continue
        runs = {VARIANT_NAMES[v]: m for v, m in s.rag["closed"].items()}
        runs.update({f"{VARIANT_NAMES[v]}, pooled": m for v, m in s.rag["pooled"].items()})
        if not runs:
            sec.append(_not_run(f"RAG evaluation on {s.name}"))
            continue
        sec.append(_img(fig_rag(runs, out / f"rag_{name}.png",
                                f"RAG on {s.name} ({s.metric}): floor, retrievers, ceiling"),
                        f"RAG on {s.name}"))
        groups, series = rag_series(runs)
        sec.append(_table(["condition", *groups], [(k, *v) for k, v in series.items()]))
        for v, vname in VARIANT_NAMES.items():
            if v not in s.rag["closed"]:
                sec.append(_not_run(f"RAG on {s.name}, closed corpus, {vname}"))
        if s.rag["pooled"]:
            for v, vname in VARIANT_NAMES.items():
                if v not in s.rag["pooled"]:
                    sec.append(_not_run(f"RAG on {s.name}, pooled corpus, {vname}"))
    return "\n".join(sec)


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

    # ---- evaluation sets: the results table (closed, pooled), then each set
    sections.append(_eval_sets_section(run_dir, out))

    # ---- evaluation.beir (a BEIR folder outside the evaluation sets)
    lay = RunLayout(run_dir)
    beir = _eval_runs({VARIANT_NAMES[v]: lay.eval_run("beir", v) for v in VARIANTS})
    if beir:
        sec = ["<h2>Retrieval on evaluation.beir</h2>",
               _retrieval_block(beir, out / "retrieval_beir.png", None)]
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
