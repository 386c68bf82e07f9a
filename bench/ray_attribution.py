"""Ray attribution runner: per-core throughput against the engine, and a 10,000-sample rehearsal.

Part 1 (``throughput``): the same 20 HotpotQA samples through (a) the single-process engine on
one thread and (b) the Ray runner with 2 one-CPU actors, in the same process and run. Reported:
samples/s and tokens/s of both, the Ray runner's per-core throughput as a fraction of the
engine's (aim >= 0.8), startup latency, and how the actors spent their time. Also measured here:
one row per *sample* (masks batched inside the engine) against one scoring call per *mask*
(what a mask-per-row pipeline would do), which decides the row granularity.

Part 2 (``scale``): a 1-layer, hidden-32 random LLaMA (SmolLM2's tokenizer) so the model costs
almost nothing, 10,000 valid samples built from the shared HotpotQA questions and paragraphs,
through the Ray runner: samples/s, Ray's overhead per sample, driver peak RSS, object store
peak use and spill.

    nice python bench/ray_attribution.py            # both parts -> bench/results/ray_attribution.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import RESULTS, hotpotqa_train, write_json

from scarlet_ray.config import load_config
from scarlet_ray.manifest import print_table, read_manifest
from scarlet_ray.records import Passage, Sample, read_attributions

os.environ.setdefault("HF_HUB_OFFLINE", "1")

def hotpot_samples(limit: int, words: int) -> list[Sample]:
    """HotpotQA samples (10 paragraphs each), every paragraph cut to its first ``words`` words."""
    from scarlet_ray.attribution.engine import cut_words
    from scarlet_ray.datasets import convert

    recs = convert("hotpotqa", str(hotpotqa_train()),
                   limit=limit).records
    return [s.model_copy(update={"passages": cut_words(list(s.passages), words)}) for s in recs]


def write_jsonl(path: Path, samples: list[Sample]) -> None:
    path.write_text("".join(s.model_dump_json() + "\n" for s in samples))


class Sampler(threading.Thread):
    """Polls the object store (bytes used, spill) and the driver's RSS while a run goes on."""

    def __init__(self, gcs_address: str, every: float = 1.0):
        super().__init__(daemon=True)
        self.addr, self.every = gcs_address, every
        self.stop = threading.Event()
        self.peak_store = 0
        self.peak_rss = 0
        self.last: dict[str, float] = {}

    def read(self) -> None:
        import psutil
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        self.peak_rss = max(self.peak_rss, psutil.Process().memory_info().rss)
        try:
            st = get_memory_info_reply(get_state_from_address(self.addr)).store_stats
        except Exception:  # noqa: BLE001 - a missed poll is not a result
            return
        self.peak_store = max(self.peak_store, st.object_store_bytes_used)
        self.last = {"spilled_bytes": st.spilled_bytes_total,
                     "spilled_objects": st.spilled_objects_total,
                     "restored_bytes": st.restored_bytes_total,
                     "store_capacity_bytes": st.object_store_bytes_avail}

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.read()


def ray_run(cfg, inp: Path, out: Path) -> dict:
    """Run the Ray runner on an already started cluster, sampling memory on the side."""
    import ray

    from scarlet_ray.attribution.stage import run as run_attribution

    sampler = Sampler(ray.get_runtime_context().gcs_address)
    sampler.start()
    t0 = time.perf_counter()
    rc = run_attribution(cfg, str(inp), str(out)).exit_code
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    sampler.read()
    m = read_manifest(out)
    return {"rc": rc, "wall_s": wall, "manifest": m, "peak_store_bytes": sampler.peak_store,
            "peak_driver_rss_sampled": sampler.peak_rss, **sampler.last}


# ------------------------------------------------------------------ part 1

def part_throughput(args) -> dict:
    import ray
    import torch

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.attribution.masks import make_masks
    from scarlet_ray.attribution.scoring import prepare_sample, score_masks
    from scarlet_ray.distributed.cluster import connect
    from scarlet_ray.models.generator import load_generator

    samples = hotpot_samples(args.n, args.passage_words)
    over = [f"models.generator={args.generator}", f"attribution.n_masks={args.masks}",
            "attribution.runner=ray", "attribution.num_actors_min=2",
            "attribution.num_actors_max=2", "attribution.num_cpus_per_actor=1",
            f"attribution.ray_batch_size={args.batch}", "ray.num_cpus=2"]
    cfg = load_config(None, over)
    a = cfg.attribution

    torch.set_num_threads(1)
    gen = load_generator(cfg.models.generator, dtype=cfg.models.dtype, device="cpu")
    engine = AttributionEngine(gen, a, cfg.labels)
    engine.attribute(samples[0])  # warm-up (allocator, kernels), not timed
    t0 = time.perf_counter()
    tokens = 0
    for s in samples:
        scored = engine.score(s)
        engine.fit(scored)
        tokens += scored.n_tokens
    eng_s = time.perf_counter() - t0
    engine_res = {"seconds": eng_s, "samples_per_s": len(samples) / eng_s,
                  "tokens": tokens, "tokens_per_s": tokens / eng_s, "threads": 1}

    # whole sample per call (what a row is) vs one call per mask (a mask-per-row pipeline)
    k = min(args.granularity_samples, len(samples))
    t_whole = t_mask = 0.0
    for s in samples[:k]:
        prep = prepare_sample(gen, s.instruction, s.passages, s.input, s.output,
                              max_context_tokens=a.max_context_tokens)
        masks = make_masks(len(prep.passages), a.n_masks, a.keep_prob, seed=a.seed,
                           sample_id=s.id)
        t = time.perf_counter()
        score_masks(gen, prep, masks, a.target, max_batch_tokens=a.max_batch_tokens,
                    prefix_cache=a.prefix_cache)
        t_whole += time.perf_counter() - t
        t = time.perf_counter()
        for i in range(len(masks)):
            score_masks(gen, prep, masks[i:i + 1], a.target, max_batch_tokens=a.max_batch_tokens,
                        prefix_cache=a.prefix_cache)
        t_mask += time.perf_counter() - t
    gran = {"samples": k, "n_masks": a.n_masks, "whole_sample_s_per_sample": t_whole / k,
            "one_call_per_mask_s_per_sample": t_mask / k, "ratio": t_mask / t_whole}
    del engine, gen

    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in.jsonl"
        write_jsonl(inp, samples)
        connect(cfg.ray)
        r = ray_run(cfg, inp, Path(tmp) / "out")
        n_out = len(read_attributions(Path(tmp) / "out" / "attributions"))
        ray.shutdown()
    m = r["manifest"]
    pipe = m["timings"]["pipeline_s"]
    ray_res = {"rc": r["rc"], "rows": n_out, "pipeline_s": pipe, "wall_s": r["wall_s"],
               "first_result_s": m["timings"]["first_result_s"],
               "samples_per_s": len(samples) / pipe, "tokens": m["counts"]["tokens_forwarded"],
               "tokens_per_s": m["throughput"]["tokens_per_s"], "actors": 2,
               "score_s_sum": m["timings"]["score_s_sum"],
               "actor_busy_fraction": m["timings"]["score_s_sum"] / (2 * pipe)}
    per_core = (ray_res["samples_per_s"] / 2) / engine_res["samples_per_s"]
    # after the first committed block (one block = ray_batch_size samples): actor startup and
    # model loading excluded, the rest of the run compared per core
    steady = (len(samples) - args.batch) / max(1e-9, pipe - ray_res["first_result_s"]) / 2
    return {"generator": cfg.models.generator, "n_samples": len(samples), "n_masks": a.n_masks,
            "passage_words": args.passage_words, "ray_batch_size": args.batch,
            "engine_1thread": engine_res, "ray_2actors": ray_res,
            "per_core_ratio": per_core,
            "per_core_ratio_after_startup": steady / engine_res["samples_per_s"],
            "ray_overhead_s_per_sample": (2 * pipe - ray_res["score_s_sum"]) / len(samples),
            "granularity": gran}


# ------------------------------------------------------------------ part 2

def tiny_model(dirpath: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from scarlet_ray.models.generator import prepare_named_generator

    tok = AutoTokenizer.from_pretrained(prepare_named_generator("smollm2-135m-instruct"))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=4096, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(dirpath)
    tok.save_pretrained(dirpath)
    return dirpath


def synthetic_samples(n: int, k: int, words: int, seed: int = 0) -> list[Sample]:
    """Valid samples from real questions and paragraphs: question i%100 over k random passages."""
    seeds = hotpot_samples(100, words)
    pool = [p for s in seeds for p in s.passages]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = seeds[i % len(seeds)]
        ps = [Passage(id=f"p{j}", title=p.title, text=p.text)
              for j, p in enumerate(rng.sample(pool, k))]
        out.append(Sample(id=f"syn-{i:05d}", task=q.task, instruction=q.instruction,
                          input=q.input, output=q.output, passages=ps))
    return out


def part_scale(args) -> dict:
    import psutil
    import ray

    from scarlet_ray.distributed.cluster import connect

    rss_before = psutil.Process().memory_info().rss  # imports done, nothing read yet

    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny")
        samples = synthetic_samples(args.scale_n, args.scale_passages, args.scale_words)
        inp = Path(tmp) / "in.jsonl"
        write_jsonl(inp, samples)
        over = [f"models.generator={model}", "models.dtype=float32",
                f"attribution.n_masks={args.scale_masks}", "attribution.runner=ray",
                "attribution.num_actors_min=2", "attribution.num_actors_max=2",
                "attribution.num_cpus_per_actor=1",
                f"attribution.ray_batch_size={args.scale_batch}", "ray.num_cpus=2"]
        cfg = load_config(None, over)
        connect(cfg.ray)
        r = ray_run(cfg, inp, Path(tmp) / "out")
        n_out = len(read_attributions(Path(tmp) / "out" / "attributions"))
        n_parts = len(list((Path(tmp) / "out" / "attributions").glob("part-*.parquet")))
        ray.shutdown()
    m = r["manifest"]
    pipe = m["timings"]["pipeline_s"]
    n = len(samples)
    return {"n_samples": n, "rows": n_out, "parts": n_parts, "rc": r["rc"],
            "n_masks": args.scale_masks, "passages": args.scale_passages,
            "passage_words": args.scale_words,
            "ray_batch_size": args.scale_batch, "model": "llama 1 layer, hidden 32, random",
            "pipeline_s": pipe, "wall_s": r["wall_s"],
            "first_result_s": m["timings"]["first_result_s"], "samples_per_s": n / pipe,
            "engine_s_per_sample": m["timings"]["score_s_sum"] / n,
            "ray_overhead_s_per_sample": (2 * pipe - m["timings"]["score_s_sum"]) / n,
            "tokens": m["counts"]["tokens_forwarded"],
            "tokens_per_s": m["throughput"]["tokens_per_s"],
            "driver_rss_before_mb": rss_before / 2**20,
            "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "driver_peak_rss_sampled_mb": r["peak_driver_rss_sampled"] / 2**20,
            "object_store_peak_mb": r["peak_store_bytes"] / 2**20,
            "object_store_capacity_mb": r.get("store_capacity_bytes", 0) / 2**20,
            "spilled_mb": r.get("spilled_bytes", 0) / 2**20,
            "spilled_objects": r.get("spilled_objects", 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["throughput", "scale", "all"], default="all")
    ap.add_argument("--generator", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--masks", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--passage-words", type=int, default=20)
    ap.add_argument("--granularity-samples", type=int, default=3)
    ap.add_argument("--scale-n", type=int, default=10_000)
    ap.add_argument("--scale-masks", type=int, default=4)
    ap.add_argument("--scale-passages", type=int, default=3)
    ap.add_argument("--scale-words", type=int, default=15)
    ap.add_argument("--scale-batch", type=int, default=16)
    ap.add_argument("--out", default=str(RESULTS / "ray_attribution.json"))
    args = ap.parse_args()
    out = Path(args.out)
    res: dict = json.loads(out.read_text()) if out.exists() else {}  # keep the other part
    res["machine"] = {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    res["args"] = vars(args)
    if args.part in ("throughput", "all"):
        res["throughput"] = part_throughput(args)
        t = res["throughput"]
        print_table("Ray runner vs single-process engine (same samples, same run)", [
            ("samples", t["n_samples"], t["n_samples"]),
            ("samples/s", t["engine_1thread"]["samples_per_s"], t["ray_2actors"]["samples_per_s"]),
            ("tokens/s", t["engine_1thread"]["tokens_per_s"], t["ray_2actors"]["tokens_per_s"]),
            ("cores", 1, 2),
            ("per-core ratio (ray/engine)", "", t["per_core_ratio"]),
            ("per-core ratio after first result", "", t["per_core_ratio_after_startup"]),
            ("first result (s)", "", t["ray_2actors"]["first_result_s"]),
            ("Ray overhead s/sample (actor-s)", "", t["ray_overhead_s_per_sample"]),
            ("per-mask calls / whole-sample call", t["granularity"]["ratio"], ""),
        ], ("", "engine (1 thread)", "ray (2 actors)"))
    if args.part in ("scale", "all"):
        res["scale"] = part_scale(args)
        s = res["scale"]
        print_table(f"Scale rehearsal: {s['n_samples']:,} samples, tiny model, Ray runner", [
            (k, v) for k, v in s.items() if not isinstance(v, str)], ("", "value"))
    res["machine"]["load_avg_at_end"] = os.getloadavg()
    write_json(out, res, default=str)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
