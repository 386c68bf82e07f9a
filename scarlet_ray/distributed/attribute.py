"""Attribution on Ray Data: generator actors score samples, a CPU stage fits, the driver commits.

Pipeline (``run_attribution``)::

    driver: read + validate input (JSONL/Parquet, local or cloud) -> drop ids already written
      -> from_items (one row per *whole sample*: its canonical JSON)
      -> map_batches(ScoreActor)   actor pool min..max, num_gpus/num_cpus per actor; each actor
                                   loads the generator once; AttributionEngine.score per sample
      -> map_batches(fit_batch)    CPU tasks: AttributionEngine.fit (surrogate + labels)
      -> driver: each finished block -> one atomic Parquet part (sink.OutputDir), error rows ->
         errors.jsonl; manifest and summary table at the end.

Whole samples per row, not one row per mask: the engine batches a sample's masks into few
forwards that share the unmasked prefix through the KV cache, and Ray's per-row cost would be
paid n_masks times over (the measurement is in ``bench/ray_attribution.py`` and docs).

Faults: an exception while scoring or fitting one sample is caught and becomes an error row
with its reason (the other samples of the batch go on). A dead actor process is Ray's business:
the actor is restarted (``max_actor_restarts``) and its in-flight batch retried
(``max_task_retries``); rows only reach the output when the driver commits a finished block, so
a retry can not leave partial or duplicate rows. If more than ``max_error_rate`` of the input
fails, the run stops early (the rate can only grow) and returns 1 with a one-line reason.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import sys
import time
import warnings
from typing import Any

import pyarrow as pa
import ray

from scarlet_ray.config import Config
from scarlet_ray.distributed.cluster import connect, shutdown
from scarlet_ray.distributed.inputs import read_input
from scarlet_ray.distributed.sink import OutputDir
from scarlet_ray.manifest import print_table, write_manifest
from scarlet_ray.records import ATTRIBUTION_COLUMNS, RecordError, attribution_schema

log = logging.getLogger(__name__)

# The fit stage (ridge on n_masks x k, 1-D k-means) takes milliseconds per sample and must run
# while the actors hold every CPU of the node: with any CPU request (even 0.25) on a node whose
# CPUs the actor pool holds, Ray Data held every fit task back until the pool drained, so no
# result reached the driver before the end (measured: first result at 102 s of a 104 s run).
# With 0 CPUs, results stream; concurrency is capped at the actor count instead.
FIT_NUM_CPUS = 0.0
MAX_FAILURES_IN_MANIFEST = 50

SCORED_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("scored", pa.binary()),
    ("error", pa.string()), ("n_tokens", pa.int64()), ("score_s", pa.float64()),
])
OUT_SCHEMA = pa.schema(list(attribution_schema()) + [
    ("source", pa.string()), ("error", pa.string()), ("n_tokens", pa.int64()),
    ("score_s", pa.float64()), ("n_truncated", pa.int64()),
])


def _error(where: str, exc: BaseException) -> str:
    """An error cell: which step, the exception type and its first line (the reason)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return json.dumps({"field": f"({where})", "type": type(exc).__name__, "reason": msg[:500]})


class ScoreActor:
    """Holds one generator for its whole life and scores whole samples with the engine."""

    def __init__(self, cfg_json: str):
        import os

        import torch

        from scarlet_ray.attribution.engine import AttributionEngine
        from scarlet_ray.models.generator import load_generator

        cfg = Config.model_validate_json(cfg_json)
        torch.set_num_threads(max(1, int(cfg.attribution.num_cpus_per_actor)))
        t0 = time.perf_counter()
        gen = load_generator(cfg.models.generator, dtype=cfg.models.dtype,
                             device=cfg.models.device,
                             attn_implementation=cfg.models.attn_implementation)
        self.engine = AttributionEngine(gen, cfg.attribution, cfg.labels,
                                        generator_name=cfg.models.generator)
        log.info("actor pid %d loaded %s in %.1fs", os.getpid(), cfg.models.generator,
                 time.perf_counter() - t0)

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        from scarlet_ray.records import Sample

        rows: list[dict[str, Any]] = []
        for rid, src, js in zip(batch["id"], batch["source"], batch["sample"], strict=True):
            t0 = time.perf_counter()
            row: dict[str, Any] = {"id": str(rid), "source": str(src), "scored": None,
                                   "error": None, "n_tokens": 0}
            try:
                scored = self.engine.score(Sample.model_validate_json(js))
                row["scored"] = pickle.dumps(scored.to_row(), protocol=5)
                row["n_tokens"] = int(scored.n_tokens)
            except Exception as exc:  # noqa: BLE001 - one bad sample must not kill the batch
                row["error"] = _error("score", exc)
            row["score_s"] = time.perf_counter() - t0
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=SCORED_SCHEMA)


_FIT_ENGINES: dict[str, Any] = {}


def _fit_engine(cfg_json: str) -> Any:
    """One fitting engine per worker process (tasks reuse processes); no model is loaded."""
    eng = _FIT_ENGINES.get(cfg_json)
    if eng is None:
        from scarlet_ray.attribution.engine import AttributionEngine

        cfg = Config.model_validate_json(cfg_json)
        eng = _FIT_ENGINES[cfg_json] = AttributionEngine(
            None, cfg.attribution, cfg.labels, generator_name=cfg.models.generator)
    return eng


def fit_batch(table: pa.Table, cfg_json: str) -> pa.Table:
    """Scored rows -> Attribution rows; error rows pass through with their reason."""
    from scarlet_ray.attribution.engine import ScoredSample

    engine = _fit_engine(cfg_json)
    out: list[dict[str, Any]] = []
    for r in table.to_pylist():
        row: dict[str, Any] = {c: None for c in ATTRIBUTION_COLUMNS}
        row.update(id=r["id"], source=r["source"], error=r["error"], n_tokens=r["n_tokens"],
                   score_s=r["score_s"], n_truncated=0)
        if r["error"] is None:
            try:
                scored = ScoredSample.from_row(pickle.loads(r["scored"]))
                att = engine.fit(scored)
                row.update(att.model_dump())
                row["n_truncated"] = len(scored.truncated)
            except Exception as exc:  # noqa: BLE001
                row["error"] = _error("fit", exc)
        out.append(row)
    return pa.Table.from_pylist(out, schema=OUT_SCHEMA)


def build_dataset(cfg: Config, rows: list[dict[str, str]]) -> ray.data.Dataset:
    """The two-stage Ray Data plan over input rows ``{id, source, sample}``."""
    a = cfg.attribution
    cfg_json = cfg.model_dump_json()
    n_blocks = max(1, min(len(rows), math.ceil(len(rows) / a.ray_batch_size)))
    ds = ray.data.from_items(rows, override_num_blocks=n_blocks)
    with warnings.catch_warnings():
        # Ray 2.60 marks extra remote args deprecated (removal planned for 2.64) but offers no
        # named parameter for max_restarts/max_task_retries yet; without them Ray Data's
        # defaults (unbounded restarts and retries) would apply.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = ds.map_batches(
            ScoreActor,
            fn_constructor_kwargs={"cfg_json": cfg_json},
            batch_size=a.ray_batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=a.num_actors_min,
                                               max_size=max(a.num_actors_min, a.num_actors_max)),
            num_cpus=a.num_cpus_per_actor,
            num_gpus=a.num_gpus_per_actor,
            max_restarts=a.max_actor_restarts,
            max_task_retries=a.max_task_retries,
        )
        return ds.map_batches(fit_batch, fn_kwargs={"cfg_json": cfg_json}, batch_size=None,
                              batch_format="pyarrow", num_cpus=FIT_NUM_CPUS,
                              compute=ray.data.TaskPoolStrategy(size=max(1, a.num_actors_max)),
                              max_retries=a.max_task_retries)


class RunStats:
    """Counters the driver keeps while committing results."""

    def __init__(self) -> None:
        self.scored = 0
        self.failed = 0
        self.tokens = 0
        self.score_s = 0.0
        self.truncated = 0
        self.failures: list[dict[str, Any]] = []
        self.first_result_s: float | None = None


def _commit(out: OutputDir, batch: pa.Table, stats: RunStats) -> None:
    ok: list[dict[str, Any]] = []
    errs: list[dict[str, Any]] = []
    for r in batch.to_pylist():
        stats.score_s += r["score_s"] or 0.0
        if r["error"] is None:
            ok.append({c: r[c] for c in ATTRIBUTION_COLUMNS})
            stats.tokens += r["n_tokens"] or 0
            stats.truncated += 1 if r["n_truncated"] else 0
        else:
            errs.append({"source": r["source"], "id": r["id"], **json.loads(r["error"]),
                         "stage": "attribute"})
    stats.scored += out.write_rows(ok)
    out.append_errors(errs)
    stats.failed += len(errs)
    if len(stats.failures) < MAX_FAILURES_IN_MANIFEST:
        stats.failures.extend(errs[: MAX_FAILURES_IN_MANIFEST - len(stats.failures)])


def run_attribution(cfg: Config, input_path: str, output_dir: str) -> int:
    """Attribute every sample of ``input_path`` into ``output_dir`` on Ray; 0 ok, 1 too many errors.

    Resumable like the local runner: samples whose id is already in ``output_dir/attributions``
    or recorded as failed in ``output_dir/errors.jsonl`` are skipped (delete that file, or
    lines of it, to retry failures).
    """
    t_start = time.perf_counter()
    a = cfg.attribution
    report = read_input(input_path)
    t_read = time.perf_counter() - t_start
    n_input = len(report.rows) + len(report.errors)
    allowed = math.floor(a.max_error_rate * n_input)
    stats = RunStats()
    status = "complete"
    message = ""
    info = None
    with OutputDir(output_dir) as out:
        done_before = set(out.written)
        failed_before = out.failed_ids() & {r.id for r in report.rows}
        todo = [r for r in report.rows if r.id not in done_before and r.id not in failed_before]
        out.append_errors([{**e.as_dict(), "stage": "read"} for e in report.errors])
        n_prior = len(report.errors) + len(failed_before)
        counts = _counts(n_input, report.errors, done_before, failed_before, todo, stats, out,
                         None)
        write_manifest(out.root, "attribute", config=cfg.dump(), models=_models(cfg),
                       counts=counts, status="running", extra={"runner": "ray"})
        t_pipe = time.perf_counter()
        try:
            if todo and n_prior <= allowed:
                info = connect(cfg.ray)
                rows = [{"id": r.id, "source": r.source, "sample": r.sample_json} for r in todo]
                ds = build_dataset(cfg, rows)
                for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                    if stats.first_result_s is None:
                        stats.first_result_s = time.perf_counter() - t_pipe
                    _commit(out, batch, stats)
                    if n_prior + stats.failed > allowed:
                        break  # the final rate can only be higher: stop spending compute
        except BaseException:
            status = "interrupted"
            raise
        finally:
            pipeline_s = time.perf_counter() - t_pipe
            n_err = n_prior + stats.failed
            if status != "interrupted" and n_err > allowed:
                status = "failed"
                message = (f"{n_err} of {n_input} samples failed "
                           f"({n_err / max(1, n_input):.1%} > max_error_rate "
                           f"{a.max_error_rate:.1%}); reasons in {out.errors_path}")
            errors_total = out.compact_errors()
            counts = _counts(n_input, report.errors, done_before, failed_before, todo, stats, out,
                             errors_total)
            timings = {"read_s": t_read, "pipeline_s": pipeline_s,
                       "first_result_s": stats.first_result_s or 0.0,
                       "score_s_sum": stats.score_s,
                       "total_s": time.perf_counter() - t_start}
            n_done = stats.scored + stats.failed
            extra = {
                "runner": "ray",
                "throughput": {
                    "tokens_per_s": stats.tokens / pipeline_s if pipeline_s > 0 else 0.0,
                    "samples_per_s": n_done / pipeline_s if pipeline_s > 0 else 0.0},
                "failures": stats.failures,
                "message": message,
                "cluster": info.as_dict() if info else None,
                "actors": {"min": a.num_actors_min, "max": a.num_actors_max,
                           "num_cpus": a.num_cpus_per_actor, "num_gpus": a.num_gpus_per_actor,
                           "batch_size": a.ray_batch_size,
                           "max_restarts": a.max_actor_restarts,
                           "max_task_retries": a.max_task_retries},
            }
            write_manifest(out.root, "attribute", config=cfg.dump(), models=_models(cfg),
                           counts=counts, timings=timings, status=status, extra=extra)
            if info is not None:
                shutdown(info)
    _summary(cfg, n_input, len(done_before), stats, n_prior, pipeline_s,
             time.perf_counter() - t_start)
    if status == "failed":
        print(f"scarlet attribute: {message}", file=sys.stderr)
        return 1
    return 0


def _models(cfg: Config) -> dict[str, Any]:
    return {"generator": cfg.models.generator, "dtype": cfg.models.dtype}


def _counts(n_input: int, read_errors: list[RecordError], done_before: set[str],
            failed_before: set[str], todo: list[Any], stats: RunStats, out: OutputDir,
            errors_total: int | None) -> dict[str, Any]:
    """Same keys as the local runner's manifest, plus the Ray runner's own."""
    return {"input_records": n_input, "quarantined": len(read_errors),
            "already_done": len(done_before), "previously_failed": len(failed_before),
            "to_score": len(todo), "attributed": stats.scored, "failed": stats.failed,
            "truncated": stats.truncated, "attributions_total": len(out.written),
            "tokens_forwarded": stats.tokens, "duplicates_dropped": out.duplicates_dropped,
            "errors_total": errors_total}


def _summary(cfg: Config, n_input: int, n_done_before: int, stats: RunStats, n_prior: int,
             pipeline_s: float, total_s: float) -> None:
    rows = [
        ("input records", n_input),
        ("already done (resumed)", n_done_before),
        ("attributed now", stats.scored),
        ("errors (quarantined + failed)", n_prior + stats.failed),
        ("tokens forwarded", stats.tokens),
        ("tokens/s", stats.tokens / pipeline_s if pipeline_s > 0 else 0.0),
        ("samples/s", (stats.scored + stats.failed) / pipeline_s if pipeline_s > 0 else 0.0),
        ("wall time (s)", total_s),
    ]
    print_table(f"scarlet attribute (ray, {cfg.models.generator})", rows, ("", "value"))
