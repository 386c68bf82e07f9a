"""``scarlet evaluate rag``: retriever + generator on samples -> predictions.jsonl, metrics.json."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table, read_manifest, write_manifest


def _extra_tasks(cfg: Config) -> dict[str, Any]:
    from scarlet_ray.synthesis.tasks import BUILTIN_TASKS, task_pool

    pool = task_pool(cfg.synthesis.extra_tasks)
    return {k: v for k, v in pool.items() if k not in BUILTIN_TASKS}


def _check_tasks(samples: list[Any], path: str, extra: dict[str, Any]) -> None:
    from scarlet_ray.synthesis.tasks import get_task

    for s in samples:
        try:
            get_task(s.task, extra)
        except KeyError as exc:
            raise ValueError(f"{path}: sample {s.id!r}: task: {exc.args[0]}") from None


def main(cfg: Config, args: argparse.Namespace) -> int:
    from scarlet_ray.commands.evaluate_retrieval import resolve_device
    from scarlet_ray.evaluation.dense import model_fingerprint, passage_text, search
    from scarlet_ray.evaluation.rag import (
        build_items,
        load_corpus,
        read_predictions,
        rescore,
        run_items,
        summarize,
    )
    from scarlet_ray.models.encoder import load_encoder
    from scarlet_ray.models.generator import load_generator
    from scarlet_ray.records import (
        Passage,
        Sample,
        completed_ids,
        read_jsonl,
        repair_tail,
        write_jsonl,
    )

    ev = cfg.evaluation
    out = Path(args.output)
    preds_path = out / "predictions.jsonl"
    timings: dict[str, float] = {}
    extra = _extra_tasks(cfg)
    conditions = list(dict.fromkeys(ev.rag_conditions))

    t0 = time.perf_counter()
    samples = read_jsonl(args.samples, Sample, require_passages=False).records
    if ev.limit is not None:
        samples = samples[:ev.limit]
    if not samples:
        raise ValueError(f"{args.samples}: no samples")
    _check_tasks(samples, args.samples, extra)
    repair_tail(preds_path)
    done = completed_ids(preds_path)
    todo = [s for s in samples if s.id not in done]
    timings["read"] = time.perf_counter() - t0

    # The same output dir must not mix predictions of different models or settings.
    run_key = {"retriever": args.model, "generator": cfg.models.generator,
               "corpus": args.corpus, "samples": str(args.samples), "top_k": ev.rag_top_k,
               "max_new_tokens": ev.max_new_tokens, "conditions": conditions,
               "query_prefix": cfg.training.query_instruction}
    old_man = read_manifest(out) or {}
    old_key = dict(old_man.get("run_key") or {})
    retriever_fp = old_key.pop("retriever_fingerprint", None)
    if done and old_key and old_key != run_key:
        raise ValueError(f"{out}: holds predictions of a different run ({old_key}); "
                         "use a fresh --output")
    retrieved: dict[str, list[Passage]] = {}
    info: dict[str, Any] = {}
    if todo and "retrieved" in conditions:
        t0 = time.perf_counter()
        encoder = load_encoder(args.model, device=resolve_device(cfg.models.device))
        fp = model_fingerprint(encoder)
        if done and retriever_fp is not None and fp != retriever_fp:
            raise ValueError(f"{out}: predictions were made with other weights under "
                             f"{args.model!r}; use a fresh --output")
        retriever_fp = fp
        corpus = load_corpus(args.corpus)
        timings["load_retriever_and_corpus"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hits, info = search(encoder, [s.input for s in todo], [p.id for p in corpus],
                            [passage_text(p.title, p.text) for p in corpus], ev.rag_top_k,
                            out / "cache", batch_size=cfg.context.encode_batch_size,
                            query_prefix=cfg.training.query_instruction, model_key=fp)
        by_id = {p.id: p for p in corpus}
        for s, h in zip(todo, hits, strict=True):
            retrieved[s.id] = [Passage(id=d, title=by_id[d].title, text=by_id[d].text)
                               for d, _ in h]
        timings["retrieve"] = time.perf_counter() - t0
        del encoder
    run_key["retriever_fingerprint"] = retriever_fp
    write_manifest(out, "evaluate_rag", config=cfg.dump(), status="running",
                   models={"retriever": args.model, "generator": cfg.models.generator},
                   extra={"run_key": run_key})

    written = 0
    if todo:
        t0 = time.perf_counter()
        gen = load_generator(cfg.models.generator, dtype=cfg.models.dtype,
                             device=cfg.models.device,
                             attn_implementation=cfg.models.attn_implementation)
        timings["load_generator"] = time.perf_counter() - t0
        items = build_items(todo, retrieved, conditions, extra)
        t0 = time.perf_counter()
        written = run_items(gen, items, max_new_tokens=ev.max_new_tokens,
                            batch_size=ev.rag_batch_size, chunk=max(ev.rag_batch_size, 8),
                            on_rows=lambda rows: write_jsonl(preds_path, rows, append=True))
        timings["generate"] = time.perf_counter() - t0

    rows = read_predictions(preds_path, {s.id for s in samples})
    rescore(rows)
    summary = summarize(rows, conditions)
    metrics = {"conditions": summary, "n_samples": len(rows), "retriever": args.model,
               "generator": cfg.models.generator, "top_k": ev.rag_top_k,
               "samples": str(args.samples), "corpus": args.corpus}
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out / "metrics.json")
    # time spent over every invocation that built this output (a resumed run adds to it)
    total = dict(old_man.get("timings_total") or old_man.get("timings") or {}) if done else {}
    for k, v in timings.items():
        total[k] = round(float(total.get(k, 0.0)) + v, 3)
    write_manifest(out, "evaluate_rag", config=cfg.dump(),
                   models={"retriever": args.model, "generator": cfg.models.generator},
                   counts={"samples": len(samples), "generated_now": written,
                           "resumed": len(samples) - len(todo),
                           "corpus_encoded": info.get("encoded", 0)},
                   timings=timings, extra={"run_key": run_key, "timings_total": total})

    tasks = sorted({t for c in summary.values() for t in c["per_task"]})
    table = []
    for c in conditions:
        if c not in summary:
            continue
        row = [c, summary[c]["overall"], summary[c]["n"]]
        row += [summary[c]["per_task"].get(t, {}).get("score", "-") for t in tasks]
        table.append(row)
    print_table(f"scarlet evaluate rag: {args.model} + {cfg.models.generator}", table,
                headers=["condition", "overall", "n", *tasks])
    return 0
