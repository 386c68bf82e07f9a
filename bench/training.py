"""Training throughput: our loop (DeepSpeed ZeRO-1 and plain torch, 1 process) against
sentence-transformers' own trainer with MultipleNegativesRankingLoss, same model (MiniLM), same
(query, positive, hard negative) triples, same batch size, sequence length, threads, in one run.

Both sides compute the same loss: InfoNCE of each query's positive against its own hard negative
and every other passage in the batch, scale 20 = 1 / temperature 0.05, cosine similarity.
Examples/s = batch size / median optimizer-step time over the steps after ``--warmup``.

    nice python bench/training.py [--steps 8] [--batch 16] [--max-len 64]
        [--threads 1] [--repeat 2]

Writes bench/results/training.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, gold_samples, shared_data_dir, write_json

from scarlet_ray.formatting import passage_text
from scarlet_ray.manifest import print_table

os.environ.setdefault("DS_ACCELERATOR", "cpu")  # read when deepspeed is first imported
os.environ.setdefault("WANDB_DISABLED", "true")


def triples(shared: Path, n: int) -> list[dict[str, str]]:
    out = []
    for s in gold_samples(shared):
        gold = set(s.gold_passage_ids)
        pos = [p for p in s.passages if p.id in gold]
        neg = [p for p in s.passages if p.id not in gold]
        if pos and neg:
            out.append({"query": s.input, "pos": passage_text(pos[0].title, pos[0].text),
                        "neg": passage_text(neg[0].title, neg[0].text)})
    return out[:n]


def ours(backend: str, data: Path, a: argparse.Namespace) -> list[float]:
    from scarlet_ray.models.encoder import resolve_encoder_path
    from scarlet_ray.training.loop import train_loop

    tc = {"backend": backend, "zero_stage": 1, "loss": "infonce", "temperature": 0.05,
          "similarity": "cos", "lr": 3e-5, "batch_size": a.batch, "group_size": 2,
          "max_seq_len": a.max_len, "max_steps": a.steps, "checkpoint_every": 10**6,
          "log_every": 10**6, "warmup_ratio": 0.1, "torch_threads": a.threads,
          "gather_negatives": True, "seed": 0}
    with tempfile.TemporaryDirectory() as ck:
        out = train_loop({"training": tc, "model": resolve_encoder_path("all-minilm-l6-v2"),
                          "train": str(data), "checkpoint_dir": ck})
    return [a.batch / h["examples_per_s"] for h in out["history"]]


def st_trainer(rows: list[dict[str, str]], a: argparse.Namespace) -> list[float]:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    from scarlet_ray.models.encoder import resolve_encoder_path

    torch.set_num_threads(a.threads)
    model = SentenceTransformer(resolve_encoder_path("all-minilm-l6-v2"), device="cpu")
    model.max_seq_length = a.max_len
    ds = Dataset.from_dict({"anchor": [r["query"] for r in rows],
                            "positive": [r["pos"] for r in rows],
                            "negative": [r["neg"] for r in rows]})
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out, per_device_train_batch_size=a.batch, max_steps=a.steps,
            learning_rate=3e-5, warmup_ratio=0.1, save_strategy="no", report_to="none",
            logging_steps=10**6, dataloader_drop_last=True, seed=0, use_cpu=True)
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=ds,
            loss=MultipleNegativesRankingLoss(model, scale=20.0), callbacks=[Timer()])
        trainer.train()
    return times


def finish(r: dict, batch: int) -> None:
    """Pooled median, and the best repeat's median (the least disturbed by other load)."""
    r["median_step_s"] = statistics.median(r["kept_s"])
    r["examples_per_s"] = batch / r["median_step_s"]
    r["best_repeat_step_s"] = min(r["median_step_s_per_repeat"])
    r["examples_per_s_best_repeat"] = batch / r["best_repeat_step_s"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(shared_data_dir()))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()

    rows = triples(Path(a.shared), a.batch * a.steps)
    if len(rows) < a.batch * a.steps:
        raise SystemExit(f"only {len(rows)} triples for {a.steps} steps of {a.batch}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "triples.jsonl"
        data.write_text("".join(json.dumps({"query": r["query"], "pos": [r["pos"]],
                                            "neg": [r["neg"]]}) + "\n" for r in rows))
        # sentence-transformers first: DeepSpeed keeps its process group for the life of the
        # process, and Hugging Face's Trainer would wrap the model in DDP if it saw one
        runs = [("sentence-transformers Trainer + MNRL", lambda: st_trainer(rows, a)),
                ("ours: plain torch (ddp backend, 1 proc)", lambda: ours("ddp", data, a)),
                ("ours: DeepSpeed ZeRO-1", lambda: ours("deepspeed", data, a))]
        # the machine is shared: run the set --repeat times, alternating the order, and pool
        # the post-warmup step times of each trainer so load changes hit all of them alike
        for rep in range(a.repeat):
            for name, fn in (runs if rep % 2 == 0 else runs[::-1]):
                t0 = time.perf_counter()
                steps = fn()
                r = results.setdefault(name, {"step_s": [], "kept_s": [], "wall_s": 0.0,
                                              "median_step_s_per_repeat": []})
                r["step_s"].append(steps)
                r["kept_s"] += steps[a.warmup:]
                r["median_step_s_per_repeat"].append(statistics.median(steps[a.warmup:]))
                r["wall_s"] += time.perf_counter() - t0
        for r in results.values():
            finish(r, a.batch)
    ref = results["sentence-transformers Trainer + MNRL"]["examples_per_s"]
    ref_best = results["sentence-transformers Trainer + MNRL"]["examples_per_s_best_repeat"]
    out = {"model": "all-minilm-l6-v2", "batch": a.batch, "max_seq_len": a.max_len,
           "steps": a.steps, "warmup_steps_excluded": a.warmup, "threads": a.threads,
           "repeats": a.repeat,
           "loss": "InfoNCE / MNRL, (query, pos, hard neg), scale 20", "results": results,
           "host_cpus": os.cpu_count(), "load_avg": os.getloadavg(), "unix_time": time.time()}
    write_json(RESULTS / "training.json", out)
    print_table(f"training throughput, MiniLM, batch {a.batch}, len {a.max_len}, "
                f"{a.threads} threads", [
                    (k, v["examples_per_s"], v["examples_per_s"] / ref,
                     v["examples_per_s_best_repeat"], v["examples_per_s_best_repeat"] / ref_best)
                    for k, v in results.items()],
                headers=("trainer", "examples/s (pooled)", "vs ST", "examples/s (best repeat)",
                         "vs ST"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
