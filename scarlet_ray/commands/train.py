"""``scarlet train``: stage 5, the retriever trained on Ray Train, exported for sentence-transformers."""

from __future__ import annotations

import argparse
from pathlib import Path

from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table, read_manifest, write_manifest
from scarlet_ray.training.data import load_examples


def main(cfg: Config, args: argparse.Namespace) -> int:
    out = Path(args.output)
    done = read_manifest(out)
    if done and done.get("stage") == "train" and done.get("status") == "complete":
        print_table("scarlet train", [("status", "already complete (delete the folder to retrain)"),
                                      ("model", str(out))])
        return 0
    # validate the whole file on the driver: bad input fails before any worker starts
    examples = load_examples(args.train)
    tc = cfg.training
    per = tc.num_workers * tc.grad_accum
    if tc.batch_size % per:
        raise ValueError(f"training.batch_size: {tc.batch_size} is not divisible by "
                         f"num_workers x grad_accum = {per}")
    if len(examples) < tc.batch_size:
        raise ValueError(f"training.batch_size: {tc.batch_size} exceeds the number of training "
                         f"examples ({len(examples)}) in {args.train}")

    from scarlet_ray.distributed.train import run_training

    write_manifest(out, "train", config=cfg.dump(), status="running",
                   models={"base": cfg.models.retriever})
    res = run_training(cfg, args.train, out)
    hist = res.history
    first, last = hist[0]["loss"], hist[-1]["loss"]
    avg_eps = sum(h["examples_per_s"] for h in hist) / len(hist)
    write_manifest(out, "train", config=cfg.dump(), models={"base": cfg.models.retriever},
                   counts={"examples": len(examples), "optimizer_steps":
                           res.metrics.get("optimizer_steps"), "world_size": tc.num_workers,
                           "dropped_per_epoch": res.metrics.get("dropped_per_epoch")},
                   timings={"train_s": res.seconds},
                   extra={"first_loss": first, "final_loss": last, "ray_storage": res.storage_path,
                          "ray_run_name": res.run_name, "resumed_from_steps": res.resumed_from,
                          "examples_per_s": avg_eps, "backend": tc.backend,
                          "precision": res.metrics.get("precision")})
    print_table("scarlet train", [
        ("base model", cfg.models.retriever), ("examples", len(examples)),
        ("backend", f"{tc.backend}" + (f" ZeRO-{tc.zero_stage}" if tc.backend == "deepspeed"
                                       else "")),
        ("workers", tc.num_workers), ("optimizer steps", res.metrics.get("optimizer_steps")),
        ("loss first -> last", f"{first:.4f} -> {last:.4f}"), ("examples/s", avg_eps),
        ("resumed from steps", res.resumed_from or "-"), ("seconds", res.seconds),
        ("model", str(out))])
    return 0
