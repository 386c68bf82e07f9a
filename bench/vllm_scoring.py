"""vLLM backend vs the HF token-tree path: tokens/s and agreement, same samples, same run.

On the same HotpotQA samples and masks (default 20 x 64), in one process:
  * ``hf_trie_bf16``: the CPU default (``attribution.backend=hf``, token radix tree, bf16),
  * ``hf_fp32``: the same path in fp32, the reference the agreement is measured against,
  * ``vllm_bf16``: ``attribution.backend=vllm`` (prompt log-probs, prefix cache per call),
  * ``vllm_nocache_bf16``: the same with the prefix cache not read (vLLM's default whenever
    prompt log-probs are asked for), on the first ``--nocache-samples``,
and the bf16 matmul peak of this machine before and after (the higher is reported).
Tokens/s counts the *naive-equivalent* tokens (every mask's full prompt + answer): the work
done for the user, whatever each engine skips. Agreement: per-mask |score - fp32 score| of
both bf16 engines, and Spearman of the ridge utilities of each bf16 engine against fp32.

    python bench/vllm_scoring.py --samples 20 --masks 64
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from _common import RESULTS, hotpotqa_train, write_json
from attribution import matmul_peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--masks", type=int, default=64)
    ap.add_argument("--nocache-samples", type=int, default=5)
    ap.add_argument("--fp32-samples", type=int, default=20)
    ap.add_argument("--generator", default="smollm2-135m-instruct")
    ap.add_argument("--kv-cache-gib", type=float, default=2.0)
    ap.add_argument("--data", default=str(hotpotqa_train()))
    ap.add_argument("--output", default=str(RESULTS / "vllm_scoring.json"))
    args = ap.parse_args()

    from scipy.stats import spearmanr

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.attribution.scoring import ScoreStats, score_masks
    from scarlet_ray.attribution.surrogate import fit_surrogate
    from scarlet_ray.attribution.vllm_scoring import score_masks_vllm
    from scarlet_ray.config import AttributionConfig, LabelsConfig, ModelsConfig
    from scarlet_ray.datasets import convert
    from scarlet_ray.models.generator import load_generator
    from scarlet_ray.models.vllm_engine import load_vllm_generator

    samples = convert("hotpotqa", args.data, limit=args.samples, passage_words=100).records
    cfg = AttributionConfig(n_masks=args.masks)
    g32 = load_generator(args.generator, dtype="float32", device="cpu")
    g16 = load_generator(args.generator, dtype="bfloat16", device="cpu")
    eng = AttributionEngine(g32, cfg, LabelsConfig())
    preps = [eng.prepare(s) for s in samples]
    masks = [eng.masks_for(s.id, len(p.passages)) for s, p in zip(samples, preps, strict=True)]
    t0 = time.perf_counter()
    vgen = load_vllm_generator(ModelsConfig(generator=args.generator, dtype="bfloat16",
                                            vllm={"kv_cache_gib": args.kv_cache_gib}))
    start_s = time.perf_counter() - t0
    peak_before = matmul_peak(torch.bfloat16)

    def hf(g):
        return lambda p, m, st: score_masks(g, p, m, stats=st)

    def vl(cache: bool):
        return lambda p, m, st: score_masks_vllm(vgen, p, m, stats=st,
                                                 prefix_cache=cache)["logprob_sum"]

    n = len(samples)
    plan = [("hf_fp32", hf(g32), min(args.fp32_samples, n)), ("hf_trie_bf16", hf(g16), n),
            ("vllm_bf16", vl(True), n), ("vllm_nocache_bf16", vl(False),
                                         min(args.nocache_samples, n))]
    # one warm-up sample each (first-call compilation is not throughput)
    for _, fn, _ in plan:
        fn(preps[0], masks[0][:4], ScoreStats())
    stats = {k: ScoreStats() for k, *_ in plan}
    secs = {k: 0.0 for k, *_ in plan}
    vals: dict[str, list[np.ndarray]] = {k: [] for k, *_ in plan}
    for i, (p, m) in enumerate(zip(preps, masks, strict=True)):  # interleaved: load hits all
        for name, fn, k in plan:
            if i < k:
                t = time.perf_counter()
                vals[name].append(fn(p, m, stats[name]))
                secs[name] += time.perf_counter() - t
    peak = max(peak_before, matmul_peak(torch.bfloat16))
    results = {}
    for name, _, k in plan:
        st = stats[name]
        results[name] = {"samples": k, "seconds": secs[name],
                         "equivalent_tokens": st.n_equiv_tokens,
                         "tokens_computed": st.n_tokens,
                         "equivalent_tokens_per_s": st.n_equiv_tokens / secs[name],
                         "computed_tokens_per_s": st.n_tokens / secs[name]}
    agree: dict[str, dict] = {}
    for name in ("hf_trie_bf16", "vllm_bf16"):
        k = min(len(vals["hf_fp32"]), len(vals[name]))
        err = np.concatenate([np.abs(vals[name][i] - vals["hf_fp32"][i]) for i in range(k)])
        rho = [float(spearmanr(fit_surrogate(masks[i], vals["hf_fp32"][i]).utility,
                               fit_surrogate(masks[i], vals[name][i]).utility).statistic)
               for i in range(k)]
        agree[name] = {"samples": k, "abs_err_median": float(np.median(err)),
                       "abs_err_p95": float(np.percentile(err, 95)),
                       "abs_err_max": float(err.max()),
                       "spearman": rho, "spearman_min": min(rho),
                       "spearman_median": float(np.median(rho)),
                       "spearman_quartiles": [float(np.percentile(rho, q)) for q in (25, 75)]}
    k = min(len(vals["vllm_bf16"]), len(vals["hf_trie_bf16"]))
    rho_vh = [float(spearmanr(fit_surrogate(masks[i], vals["hf_trie_bf16"][i]).utility,
                              fit_surrogate(masks[i], vals["vllm_bf16"][i]).utility).statistic)
              for i in range(k)]
    out = {"generator": args.generator, "samples": n, "masks": args.masks,
           "vllm_start_s": start_s, "vllm_engine": vgen.info.get("engine_kwargs"),
           "matmul_peak_bf16_flops": peak, "matmul_peak_bf16_flops_before": peak_before,
           "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "platform": platform.platform(), "load_avg": os.getloadavg()},
           "results": results, "agreement_vs_fp32": agree,
           "spearman_vllm_vs_hf_bf16": {"values": rho_vh, "min": min(rho_vh),
                                        "median": float(np.median(rho_vh))}}
    write_json(args.output, out)
    print(f"vLLM engine start {start_s:.0f} s; bf16 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'run':<20}{'samples':>8}{'eq tok/s':>10}{'computed tok/s':>16}")
    for name, r in results.items():
        print(f"{name:<20}{r['samples']:>8}{r['equivalent_tokens_per_s']:>10.0f}"
              f"{r['computed_tokens_per_s']:>16.0f}")
    for name, a in agree.items():
        print(f"{name} vs fp32: |err| median {a['abs_err_median']:.4f} p95 "
              f"{a['abs_err_p95']:.4f} max {a['abs_err_max']:.4f}; utility Spearman median "
              f"{a['spearman_median']:.3f} min {a['spearman_min']:.3f}")
    print(f"vllm vs hf bf16 utility Spearman: median {np.median(rho_vh):.3f} "
          f"min {min(rho_vh):.3f}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
