"""``scarlet evaluate retrieval``: a retriever on a BEIR set -> metrics.json, run.trec, manifest."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table, write_manifest


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(cfg: Config, args: argparse.Namespace) -> int:
    from scarlet_ray.datasets.beir import read_beir
    from scarlet_ray.evaluation.retrieval import evaluate_dense, write_trec_run
    from scarlet_ray.models.encoder import load_encoder

    out = Path(args.output)
    beir_dir = Path(args.beir)
    if not beir_dir.is_dir():
        raise FileNotFoundError(2, "not a BEIR directory", str(beir_dir))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    beir = read_beir(beir_dir, args.split)
    timings["read"] = time.perf_counter() - t0
    if not beir.queries:
        raise ValueError(f"{beir_dir}: no queries with qrels in split {args.split!r}")
    write_manifest(out, "evaluate_retrieval", config=cfg.dump(), status="running",
                   models={"retriever": args.model},
                   extra={"beir": str(beir_dir), "split": args.split})
    t0 = time.perf_counter()
    encoder = load_encoder(args.model, device=resolve_device(cfg.models.device))
    timings["load_model"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate_dense(encoder, beir, k=cfg.evaluation.top_k, cache_dir=out / "cache",
                         batch_size=cfg.context.encode_batch_size,
                         query_prefix=cfg.training.query_instruction,
                         limit=cfg.evaluation.limit)
    timings["search_and_score"] = time.perf_counter() - t0
    tag = Path(args.model).name if os.sep in args.model else args.model
    n_lines = write_trec_run(out / "run.trec", res["hits"], tag=tag)
    metrics = {
        **{k: round(v, 6) for k, v in res["metrics"].items()},
        "n_queries": len(res["per_query"]),
        "n_docs": len(beir.corpus),
        "model": args.model,
        "beir": str(beir_dir),
        "split": args.split,
        "top_k": max(cfg.evaluation.top_k, 100),
    }
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out / "metrics.json")
    tmp = out / "per_query.json.tmp"
    tmp.write_text(json.dumps(res["per_query"], indent=1))
    os.replace(tmp, out / "per_query.json")
    write_manifest(out, "evaluate_retrieval", config=cfg.dump(),
                   models={"retriever": args.model},
                   counts={"queries": len(res["per_query"]), "docs": len(beir.corpus),
                           "run_lines": n_lines, "docs_encoded": res["info"]["encoded"],
                           "docs_from_cache": res["info"]["cached"]},
                   timings=timings,
                   extra={"beir": str(beir_dir), "split": args.split,
                          "cache_key": res["info"]["cache_key"], "metrics": res["metrics"]})
    rows = [(m, res["metrics"][m]) for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10")]
    rows += [("queries", len(res["per_query"])), ("docs", len(beir.corpus)),
             ("docs encoded (rest cached)", res["info"]["encoded"]),
             ("seconds", round(sum(timings.values()), 1)), ("output", str(out))]
    print_table(f"scarlet evaluate retrieval: {args.model} on {beir_dir.name}/{args.split}", rows)
    return 0
