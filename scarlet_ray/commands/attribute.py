"""``scarlet attribute``: stage 3 on one machine (the Ray runner sits behind the same command).

Resumable: ids already in DIR/attributions/ and ids already recorded as failed in
DIR/errors.jsonl are skipped; Parquet parts are written atomically every few samples, so a crash
loses at most the samples in flight. A sample that raises goes to errors.jsonl with the reason
and the run goes on.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from pathlib import Path

from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table, write_manifest
from scarlet_ray.records import (
    Attribution,
    Sample,
    append_errors,
    iter_jsonl_objects,
    read_attributions,
    read_jsonl,
    write_attribution_part,
)

log = logging.getLogger(__name__)


def done_ids(attr_dir: Path) -> set[str]:
    if not attr_dir.is_dir() or not any(attr_dir.glob("*.parquet")):
        return set()
    return {a.id for a in read_attributions(attr_dir)}


def recorded_errors(errors_path: Path) -> tuple[set[str], set[str]]:
    """(sample ids that failed, sources already quarantined) from a previous run."""
    ids, sources = set(), set()
    if errors_path.exists():
        for _, obj in iter_jsonl_objects(errors_path):
            if isinstance(obj, dict):
                if obj.get("stage") == "attribute" and isinstance(obj.get("id"), str):
                    ids.add(obj["id"])
                if isinstance(obj.get("source"), str):
                    sources.add(obj["source"])
    return ids, sources


def main(cfg: Config, args: argparse.Namespace) -> int:
    if cfg.attribution.runner == "ray":
        try:
            from scarlet_ray.distributed.attribute import run_attribution
        except ImportError as exc:
            from scarlet_ray.cli import UsageError

            raise UsageError(f"attribution.runner=ray: the ray runner is not available ({exc})"
                             ) from None
        # the input may be a cloud URI (s3://...): pass it on untouched, not through Path
        return int(run_attribution(cfg, str(args.input), str(args.output)) or 0)
    return run_local(cfg, Path(args.input), Path(args.output))


def run_local(cfg: Config, input_path: Path, out: Path) -> int:
    from tqdm import tqdm

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.models.generator import load_generator

    if not input_path.exists():
        raise FileNotFoundError(2, "No such file", str(input_path))
    t_start = time.time()
    attr_dir, errors_path = out / "attributions", out / "errors.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    failed_before, quarantined_before = recorded_errors(errors_path)
    report = read_jsonl(input_path, Sample, on_error="quarantine")
    new_q = [e for e in report.errors if e.source not in quarantined_before]
    if new_q:
        append_errors(errors_path, [{**e.as_dict(), "stage": "read"} for e in new_q])
    done = done_ids(attr_dir)
    todo = [s for s in report.records if s.id not in done and s.id not in failed_before]
    log.info("%d samples: %d done, %d failed before, %d to attribute", len(report.records),
             len(done & {s.id for s in report.records}), len(failed_before), len(todo))

    t0 = time.time()
    gen = load_generator(cfg.models.generator, cfg.models.dtype, cfg.models.device,
                         cfg.models.attn_implementation) if todo else None
    t_load = time.time() - t0
    engine = AttributionEngine(gen, cfg.attribution, cfg.labels,
                               generator_name=cfg.models.generator)
    buf: list[Attribution] = []
    n_ok = n_fail = tokens = equiv = 0
    t_score = 0.0
    truncations: list[dict] = []

    def flush() -> None:
        if buf:
            write_attribution_part(attr_dir, buf, f"part-{time.time_ns()}-{uuid.uuid4().hex[:6]}")
            buf.clear()

    for s in tqdm(todo, desc="attribute", unit="sample", disable=not todo):
        t1 = time.time()
        try:
            scored = engine.score(s)
            attr = engine.fit(scored)
        except Exception as exc:  # noqa: BLE001 - any failure of one sample is recorded
            n_fail += 1
            append_errors(errors_path, [{"source": f"{input_path}", "id": s.id,
                                         "field": "(sample)", "reason": str(exc),
                                         "stage": "attribute", "type": type(exc).__name__}])
            log.warning("sample %s failed: %s", s.id, exc)
            continue
        finally:
            t_score += time.time() - t1
        if scored.truncated:
            truncations.append({"id": s.id, "passages": scored.truncated,
                                "note": engine.last_note})
            log.warning("sample %s: context truncated: %s", s.id, engine.last_note)
        tokens += scored.n_tokens
        equiv += engine.last_stats.n_equiv_tokens
        n_ok += 1
        buf.append(attr)
        if len(buf) >= cfg.attribution.flush_every:
            flush()
    flush()

    total_attr = len(done_ids(attr_dir))
    counts = {"input_records": len(report.records) + len(report.errors),
              "quarantined": len(report.errors), "already_done": len(done),
              "previously_failed": len(failed_before), "attributed": n_ok, "failed": n_fail,
              "truncated": len(truncations), "attributions_total": total_attr,
              "tokens_forwarded": tokens, "tokens_equivalent_naive": equiv}
    timings = {"load_model": t_load, "scoring": t_score, "total": time.time() - t_start}
    rate = {"tokens_per_s": tokens / t_score if t_score else 0.0,
            "samples_per_s": n_ok / t_score if t_score else 0.0}
    write_manifest(out, "attribute", config=cfg.dump(),
                   models={"generator": cfg.models.generator,
                           "dtype": str(gen.dtype) if gen else None,
                           "dtype_reason": gen.dtype_reason if gen else None},
                   counts=counts, timings=timings,
                   extra={"throughput": rate, "truncation_warnings": truncations})
    print_table("scarlet attribute", [
        ("attributed now", n_ok), ("already done (skipped)", len(done)),
        ("failed (errors.jsonl)", n_fail), ("quarantined lines", len(new_q)),
        ("truncated contexts", len(truncations)), ("attributions in output", total_attr),
        ("tokens/s", round(rate["tokens_per_s"], 1)),
        ("scoring seconds", round(t_score, 1))], headers=("", "value"))
    attempted = n_ok + n_fail
    if attempted and n_fail / attempted > cfg.attribution.max_error_rate:
        log.error("%d of %d samples failed (> max_error_rate %.2f); see %s", n_fail, attempted,
                  cfg.attribution.max_error_rate, errors_path)
        return 1
    return 0


__all__ = ["main", "run_local"]
