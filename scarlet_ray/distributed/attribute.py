"""Attribution on Ray Data: generator actors score samples, a CPU stage fits, the driver commits.

Pipeline (``ray_results``, driven by ``attribution.stage.run``, which reads, resumes, commits
and applies the error rate for both runners)::

    driver: validated samples still to do
      -> from_items (one row per *whole sample*: its canonical JSON)
      -> map_batches(ScoreActor)   actor pool min..max, num_gpus/num_cpus per actor; each actor
                                   loads the generator once; AttributionEngine.score per sample
      -> map_batches(fit_batch)    CPU tasks: AttributionEngine.fit (surrogate + labels)
      -> driver: each finished block -> one atomic Parquet part (attribution.store), error
         rows -> errors.jsonl (the stage's).

Whole samples per row, not one row per mask: the engine batches a sample's masks into few
forwards that share the unmasked prefix through the KV cache, and Ray's per-row cost would be
paid n_masks times over (the measurement is in ``bench/ray_attribution.py`` and docs).

Faults: an exception while scoring or fitting one sample is caught and becomes an error row
with its reason (the other samples of the batch go on). A dead actor process is Ray's business:
the actor is restarted (``max_actor_restarts``) and its in-flight batch retried
(``max_task_retries``, unbounded by default: after a lost node every retry fails at once until
Ray's health checks declare the node dead, so a finite count can run out before the actor is
restarted elsewhere; see docs/cluster.md); rows only reach the output when the driver commits a
finished block, so a retry can not leave partial or duplicate rows. If more than
``max_error_rate`` of the input fails, the run stops early (the rate can only grow) and returns
1 with a one-line reason.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import ray

from scarlet_ray.attribution.inputs import InputRow
from scarlet_ray.attribution.stage import error_cell
from scarlet_ray.config import Config
from scarlet_ray.distributed.cluster import connect, shutdown
from scarlet_ray.records import ATTRIBUTION_COLUMNS, attribution_schema

log = logging.getLogger(__name__)

# The fit stage (ridge on n_masks x k, 1-D k-means) takes milliseconds per sample and must run
# while the actors hold every CPU of the node: with any CPU request (even 0.25) on a node whose
# CPUs the actor pool holds, Ray Data held every fit task back until the pool drained, so no
# result reached the driver before the end (measured: first result at 102 s of a 104 s run).
# With 0 CPUs, results stream; concurrency is capped at the actor count instead.
FIT_NUM_CPUS = 0.0

SCORED_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("scored", pa.binary()),
    ("error", pa.string()), ("n_tokens", pa.int64()), ("score_s", pa.float64()),
])
OUT_SCHEMA = pa.schema(list(attribution_schema()) + [
    ("source", pa.string()), ("error", pa.string()), ("n_tokens", pa.int64()),
    ("score_s", pa.float64()), ("n_truncated", pa.int64()),
])


class ScoreActor:
    """Holds one generator for its whole life and scores whole samples with the engine."""

    def __init__(self, cfg_json: str):
        import os

        import torch

        from scarlet_ray.attribution.engine import AttributionEngine
        from scarlet_ray.models.generator import load_for_backend

        cfg = Config.model_validate_json(cfg_json)
        torch.set_num_threads(max(1, int(cfg.attribution.num_cpus_per_actor)))
        t0 = time.perf_counter()
        # backend vllm: the actor holds a vLLM engine; on a GPU it sizes its own memory
        # (models.vllm.gpu_memory_utilization of the GPU Ray gave this actor)
        gen = load_for_backend(cfg.models, cfg.attribution.backend, cfg.attribution.target)
        self.engine = AttributionEngine(gen, cfg.attribution, cfg.labels,
                                        generator_name=cfg.models.generator)
        log.info("actor pid %d loaded %s in %.1fs", os.getpid(), cfg.models.generator,
                 time.perf_counter() - t0)
        self.trace = _open_trace()

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        from scarlet_ray.records import Sample

        rows: list[dict[str, Any]] = []
        for rid, src, js in zip(batch["id"], batch["source"], batch["sample"], strict=True):
            t0 = time.perf_counter()
            if self.trace is not None:
                self.trace.write(f"start\t{rid}\t{time.time():.3f}\n")
            row: dict[str, Any] = {"id": str(rid), "source": str(src), "scored": None,
                                   "error": None, "n_tokens": 0}
            try:
                scored = self.engine.score(Sample.model_validate_json(js))
                row["scored"] = pickle.dumps(scored.to_row(), protocol=5)
                row["n_tokens"] = int(scored.n_tokens)
            except Exception as exc:  # noqa: BLE001 - one bad sample must not kill the batch
                row["error"] = error_cell("score", exc)
            row["score_s"] = time.perf_counter() - t0
            rows.append(row)
            if self.trace is not None:
                self.trace.write(f"done\t{rid}\t{time.time():.3f}\t{row['score_s']:.3f}\n")
        return pa.Table.from_pylist(rows, schema=SCORED_SCHEMA)


# Diagnostics: with SCARLET_SCORE_TRACE=DIR (a folder every node sees) each actor appends
# "start<TAB>id<TAB>unix time" before it scores a sample and "done<TAB>id<TAB>unix time<TAB>
# score_s" after, to DIR/<node id>-<pid>.tsv. An id started more than once was computed more than
# once (a batch in flight on a lost node, retried elsewhere; "start" without "done": cut short):
# the output never holds it twice, the trace says what it cost.
TRACE_ENV = "SCARLET_SCORE_TRACE"


def _open_trace() -> Any:
    import os

    d = os.environ.get(TRACE_ENV)
    if not d:
        return None
    node = ray.get_runtime_context().get_node_id()
    os.makedirs(d, exist_ok=True)
    # line-buffered: a SIGKILLed actor has written every line it finished
    return open(os.path.join(d, f"{node}-{os.getpid()}.tsv"), "a", buffering=1,  # noqa: SIM115
                encoding="utf-8")


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
                row["error"] = error_cell("fit", exc)
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


def ray_results(cfg: Config, todo: Sequence[InputRow],
                extra: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Result rows of ``todo``, one list per finished block, as Ray Data hands them over.

    The stage (``attribution.stage.run``) owns reading, resume, committing and the error rate;
    this only runs the Ray Data plan and records the cluster and actor settings in ``extra``.
    """
    if not todo:
        return
    a = cfg.attribution
    info = connect(cfg.ray)
    extra["cluster"] = info.as_dict()
    extra["actors"] = {"min": a.num_actors_min, "max": a.num_actors_max,
                       "num_cpus": a.num_cpus_per_actor, "num_gpus": a.num_gpus_per_actor,
                       "batch_size": a.ray_batch_size, "max_restarts": a.max_actor_restarts,
                       "max_task_retries": a.max_task_retries}
    try:
        rows = [{"id": r.id, "source": r.source, "sample": r.sample_json} for r in todo]
        for batch in build_dataset(cfg, rows).iter_batches(batch_size=None,
                                                           batch_format="pyarrow"):
            yield [{**r, "note": None} for r in batch.to_pylist()]
    finally:
        shutdown(info)
