"""Stage 3 as one plain function: read, resume, score (here or on Ray), commit, error rate.

Both runners share everything but the scoring loop: the input reader (JSONL/Parquet, local or
object store, bad records quarantined with their location), the resume path (ids committed in
``DIR/attributions``; ids that failed before are retried unless told otherwise), the Parquet
writer (``AttributionStore``), errors.jsonl and the error-rate rule. A runner only turns samples
into *result rows* (the Attribution columns plus ``source``, ``error``, ``n_tokens``,
``score_s``, ``n_truncated``, ``note``); the local runner is below, the Ray runner is
``scarlet_ray.distributed.attribute.ray_results``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scarlet_ray.attribution.inputs import InputRow, read_input
from scarlet_ray.attribution.store import AttributionStore, local_output
from scarlet_ray.cancel import Cancelled
from scarlet_ray.config import Config
from scarlet_ray.records import ATTRIBUTION_COLUMNS
from scarlet_ray.stagedir import StageOptions, StageRun, shielded
from scarlet_ray.stages import StageOutcome

log = logging.getLogger(__name__)

OUTPUTS = ("attributions",)
MAX_FAILURES_IN_MANIFEST = 50


def error_cell(where: str, exc: BaseException) -> str:
    """An error cell: which step, the exception type and its first line (the reason)."""
    from scarlet_ray.redact import redact

    text = redact(str(exc)).strip()  # before the cut: a cut key would no longer look like one
    msg = text.splitlines()[0] if text else type(exc).__name__
    return json.dumps({"field": f"({where})", "type": type(exc).__name__, "reason": msg[:500]})


def local_results(cfg: Config, todo: Sequence[InputRow],
                  extra: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The one-process runner: load the generator once, one result row per sample; the
    engine's prompt-window tally goes to ``extra["prompt_window"]``."""

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.models.generator import load_for_backend

    if not todo:
        return
    gen = load_for_backend(cfg.models, cfg.attribution.backend, cfg.attribution.target)
    extra["engine"] = engine_info(gen)
    engine = AttributionEngine(gen, cfg.attribution, cfg.labels,
                               generator_name=cfg.models.generator)
    try:
        yield from _score_each(engine, todo)
    finally:
        extra["prompt_window"] = engine.window_log.summary()


def engine_info(gen: Any) -> dict[str, Any]:
    """What scored, for the manifest: the backend and, for vLLM, its settings and start time."""
    if gen.engine is None:
        return {"backend": "hf", "dtype": str(gen.dtype), "device": str(gen.device)}
    kw = dict(gen.info.get("engine_kwargs", {}))
    return {"backend": "vllm", "engine_kwargs": kw, "start_s": gen.info.get("start_s"),
            "window": gen.info.get("window")}


def _score_each(engine: Any, todo: Sequence[InputRow]) -> Iterator[list[dict[str, Any]]]:
    from tqdm import tqdm

    from scarlet_ray.records import Sample

    for r in tqdm(todo, desc="attribute", unit="sample"):
        t0 = time.perf_counter()
        row: dict[str, Any] = {c: None for c in ATTRIBUTION_COLUMNS}
        row.update(id=r.id, source=r.source, error=None, n_tokens=0, n_truncated=0, note=None)
        try:
            scored = engine.score(Sample.model_validate_json(r.sample_json))
            row.update(engine.fit(scored).model_dump())
            row.update(n_tokens=scored.n_tokens, n_truncated=len(scored.truncated),
                       note=engine.last_note if scored.truncated else None)
        except Cancelled:
            raise  # a signal, not this sample's fault: the stage flushes and exits
        except Exception as exc:  # noqa: BLE001 - any failure of one sample is recorded
            row["error"] = error_cell("sample", exc)
        row["score_s"] = time.perf_counter() - t0
        yield [row]


def run(cfg: Config, input_path: str | Path, out: str | Path,
        options: StageOptions | None = None) -> StageOutcome:
    """Attribute every sample of ``input_path`` into ``out``; exit code 1 over max_error_rate."""
    a = cfg.attribution
    options = options or StageOptions()
    with StageRun(local_output(out), "attribute", cfg.dump(), OUTPUTS, options) as st:
        t0 = time.perf_counter()
        report = read_input(str(input_path))  # the input may be a cloud URI: not through Path
        store = AttributionStore(st.path("attributions"))
        ids = {r.id for r in report.rows}
        failed_before = st.errors.failed_ids() & ids
        done_before = store.written & ids
        skip = done_before | (set() if options.retry_failed else failed_before)
        todo = [r for r in report.rows if r.id not in skip]
        st.errors.add(report.errors, stage="read")
        st.require_records(len(report.rows), str(input_path), len(report.errors))
        st.timings["read_s"] = time.perf_counter() - t0
        n_input = len(report.rows) + len(report.errors)
        allowed = math.floor(a.max_error_rate * n_input)
        n_prior = len(report.errors) + (0 if options.retry_failed else len(failed_before))
        st.models.update(generator=cfg.models.generator, dtype=cfg.models.dtype)
        st.extra["runner"] = a.runner
        st.extra["backend"] = a.backend
        log.info("%d samples: %d done, %d failed before (%s), %d to attribute", len(ids),
                 len(done_before), len(failed_before),
                 "retried" if options.retry_failed else "skipped", len(todo))

        n_ok = n_fail = tokens = 0
        score_s = 0.0
        failures: list[dict[str, Any]] = []
        truncations: list[dict[str, Any]] = []
        buf: list[dict[str, Any]] = []
        flush_each = a.runner == "ray"  # a Ray batch is already a unit of work

        def flush() -> None:
            nonlocal n_ok
            with shielded():  # a signal between write and count would lose nothing, but
                n_ok += store.write_rows(buf)  # keep the counts honest
                buf.clear()

        def count() -> None:
            st.counts.update(
                input_records=n_input, quarantined=len(report.errors),
                already_done=len(done_before), previously_failed=len(failed_before),
                to_score=len(todo), attributed=n_ok, failed=n_fail,
                truncated=len(truncations), attributions_total=len(store.written),
                tokens_forwarded=tokens, duplicates_dropped=store.duplicates_dropped)

        count()
        t_pipe = time.perf_counter()
        first_result: float | None = None
        results = (_ray_results(cfg, todo, st) if a.runner == "ray"
                   else local_results(cfg, todo, st.extra))
        try:
            for batch in results:
                if first_result is None:
                    first_result = time.perf_counter() - t_pipe
                errs = []
                for r in batch:
                    score_s += r.get("score_s") or 0.0
                    if r["error"] is None:
                        buf.append({c: r[c] for c in ATTRIBUTION_COLUMNS})
                        tokens += r.get("n_tokens") or 0
                        if r.get("n_truncated"):
                            truncations.append({"id": r["id"], "passages": r["n_truncated"],
                                                "note": r.get("note")})
                    else:
                        errs.append({"source": r["source"], "id": r["id"],
                                     **json.loads(r["error"]), "stage": "attribute"})
                st.errors.add(errs)
                n_fail += len(errs)
                failures.extend(errs[: max(0, MAX_FAILURES_IN_MANIFEST - len(failures))])
                if flush_each or len(buf) >= a.flush_every:
                    flush()
                if n_prior + n_fail > allowed:
                    break  # the final rate can only be higher: stop spending compute
        finally:
            flush()
            results.close()
            pipeline_s = time.perf_counter() - t_pipe
            st.errors.compact(store.written)
            count()
            st.timings.update(pipeline_s=pipeline_s, scoring_s=score_s,
                              first_result_s=first_result or 0.0)
            st.extra.update(
                throughput={"tokens_per_s": tokens / pipeline_s if pipeline_s > 0 else 0.0,
                            "samples_per_s": (n_ok + n_fail) / pipeline_s
                            if pipeline_s > 0 else 0.0},
                failures=failures, truncation_warnings=truncations)
            if a.runner == "ray":  # each actor fits its own prompts: the stage tallies rows
                from scarlet_ray.prompt import RULE

                st.extra["prompt_window"] = {
                    "rule": RULE, "prompts": n_ok + n_fail, "prompts_cut": len(truncations),
                    "ids_cut": [t["id"] for t in truncations][:100],
                    "passages_cut": sum(t["passages"] for t in truncations)}
        n_err = n_prior + n_fail
        code = 0
        if n_err > allowed:
            code = 1
            st.fail(f"{n_err} of {n_input} samples failed ({n_err / max(1, n_input):.1%} > "
                    f"attribution.max_error_rate {a.max_error_rate:.1%}); reasons in "
                    f"{st.errors.path}; rerun to retry them")
        rows = [
            ("input records", n_input), ("already done (resumed)", len(done_before)),
            ("attributed now", n_ok), ("failed now (errors.jsonl)", n_fail),
            ("quarantined lines", len(report.errors)), ("truncated contexts", len(truncations)),
            ("attributions in output", len(store.written)), ("tokens forwarded", tokens),
            ("tokens/s", st.extra["throughput"]["tokens_per_s"]),
            ("runner", a.runner), ("backend", a.backend),
        ]
        return StageOutcome("attribute", code, rows, st.message, st.out)


def _ray_results(cfg: Config, todo: Sequence[InputRow],
                 st: StageRun) -> Iterator[list[dict[str, Any]]]:
    """The Ray runner, imported only when asked for (stage code does not need Ray)."""
    try:
        from scarlet_ray.distributed.attribute import ray_results
    except ImportError as exc:
        from scarlet_ray.errors import UsageError

        raise UsageError(f"attribution.runner=ray: the ray runner is not available ({exc})"
                         ) from None
    yield from ray_results(cfg, todo, st.extra)


__all__ = ["OUTPUTS", "engine_info", "error_cell", "local_results", "run"]
