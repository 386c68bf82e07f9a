"""Attribution scoring throughput: naive reference vs fast path, in one run, on shared HotpotQA.

Measures, in the same process and on the same samples and masks:
  * the naive reference (one forward per mask, full-vocabulary logits, fp32),
  * the fast path (token-tree KV sharing on CPU, parallel subtree walks) in fp32 (exactness
    check against the reference) and in bf16 (speed); in bf16 also the tree walked by one
    thread (tree1) and the batched shared-prefix variant (prefix),
  * ContextCite 0.0.4 with the same model and the same number of ablations (optional),
  * the machine's matmul peak right now (fp32 and bf16 square matmuls, FLOP/s),
and prints tokens/s, naive-equivalent tokens/s, samples/s, model FLOP utilisation (decoder
FLOPs on forwarded tokens + LM-head FLOPs on the rows it ran on, over the peak of the dtype)
and the speed-up in naive-equivalent tokens/s; writes bench/results/attribution.json.

    python bench/attribution.py --samples 20 --masks 64 --naive-masks 8 \
        --contextcite-samples 2
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, hotpotqa_train, write_json


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """Achieved FLOP/s of an n x n x n matmul in ``dtype`` on this machine, now."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.matmul(a, b)
        reps += 1
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t0)


def non_embedding_params(model) -> int:
    emb = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not emb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--naive-samples", type=int, default=None,
                    help="run the (slow) naive reference on only the first K samples")
    ap.add_argument("--masks", type=int, default=64)
    ap.add_argument("--naive-masks", type=int, default=None,
                    help="run the naive reference on only the first K masks of each sample: "
                         "its cost is the same per mask, so its rate is measured on fewer")
    ap.add_argument("--target", default="logprob_sum")
    ap.add_argument("--check-samples", type=int, default=3,
                    help="fast fp32 (the exactness check) and the batched-prefix variant run "
                         "on the first K samples only")
    ap.add_argument("--contextcite-samples", type=int, default=0,
                    help="also run ContextCite 0.0.4 (same model, same ablation count) on K")
    ap.add_argument("--generator", default="smollm2-135m-instruct")
    ap.add_argument("--data", default=str(hotpotqa_train()))
    ap.add_argument("--output", default=str(RESULTS / "attribution.json"))
    args = ap.parse_args()

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.attribution.scoring import ScoreStats, naive_scores, score_masks
    from scarlet_ray.attribution.surrogate import fit_surrogate
    from scarlet_ray.config import AttributionConfig, LabelsConfig
    from scarlet_ray.datasets import convert
    from scarlet_ray.models.generator import cpu_supports_bf16, load_generator

    samples = convert("hotpotqa", args.data, limit=args.samples, passage_words=100).records
    k_naive = min(args.naive_samples or len(samples), len(samples))
    cfg = AttributionConfig(n_masks=args.masks, target=args.target)
    g32 = load_generator(args.generator, dtype="float32")
    use_bf16 = g32.device.type == "cuda" or cpu_supports_bf16()
    g16 = load_generator(args.generator, dtype="bfloat16") if use_bf16 else None
    eng = AttributionEngine(g32, cfg, LabelsConfig())
    preps = [eng.prepare(s) for s in samples]
    masks = [eng.masks_for(s.id, len(p.passages)) for s, p in zip(samples, preps, strict=True)]
    n_params = g32.n_params
    n_ne = non_embedding_params(g32.model)
    n_head = g32.model.get_output_embeddings().weight.numel()

    peak = {"fp32": matmul_peak(torch.float32)}
    if use_bf16:
        peak["bf16"] = matmul_peak(torch.bfloat16)
    peak_before: dict[str, float] = {}

    k_masks = args.naive_masks or args.masks

    def naive(g, p, m, st):
        return naive_scores(g, p, m[:k_masks], args.target, st)

    def fast_with(sharing: str, walkers: int | None = None):
        def fn(g, p, m, st):
            return score_masks(g, p, m, args.target, stats=st, sharing=sharing,
                               walkers=walkers, max_batch_tokens=cfg.max_batch_tokens)
        return fn

    # "fast" is the default path (token tree on CPU); "prefix" the batched shared-prefix path
    k_check = min(args.check_samples, len(samples))
    plan = [("naive_fp32", g32, naive, k_naive), ("fast_fp32", g32, fast_with("auto"), k_check)]
    if g16 is not None:
        plan += [("fast_bf16", g16, fast_with("auto"), len(samples)),
                 ("tree1_bf16", g16, fast_with("trie", walkers=1), k_check),
                 ("prefix_bf16", g16, fast_with("prefix"), k_check)]
    stats = {name: ScoreStats() for name, *_ in plan}
    secs = {name: 0.0 for name, *_ in plan}
    vals: dict[str, list] = {name: [] for name, *_ in plan}
    # interleaved per sample, so that a change in machine load hits every method alike
    for i, (p, m) in enumerate(zip(preps, masks, strict=True)):
        for name, gen, fn, k in plan:
            if i >= k:
                continue
            t0 = time.perf_counter()
            vals[name].append(fn(gen, p, m, stats[name]))
            secs[name] += time.perf_counter() - t0
    results = {}
    for name, _, _, k in plan:
        st = stats[name]
        results[name] = {"name": name, "seconds": secs[name], "samples": k,
                         "tokens_forwarded": st.n_tokens, "tokens_padded": st.n_padded_tokens,
                         "tokens_equivalent": st.n_equiv_tokens, "forwards": st.n_forwards,
                         "logit_rows": st.n_logit_rows}
    v_naive, v_f32, v_bf = vals["naive_fp32"], vals["fast_fp32"], vals.get("fast_bf16")

    if args.contextcite_samples:
        from contextcite_peer import contextcite_utilities

        gcc = g16 or g32
        kc = min(args.contextcite_samples, len(samples))
        t_cc = tok_cc = 0.0
        for s in samples[:kc]:
            _, info = contextcite_utilities(gcc, s, args.masks)
            t_cc += info["seconds"]
            tok_cc += info["tokens"]
        results["contextcite_" + ("bf16" if g16 else "fp32")] = {
            "name": "contextcite_" + ("bf16" if g16 else "fp32"), "seconds": t_cc,
            "samples": kc, "tokens_forwarded": int(tok_cc), "tokens_padded": None,
            "tokens_equivalent": int(tok_cc), "forwards": None, "logit_rows": int(tok_cc)}

    # the peak again after the runs: the machine is shared, take the higher of the two
    for key, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if key in peak:
            peak_before[key] = peak[key]
            peak[key] = max(peak[key], matmul_peak(dt))

    # exactness on the samples both ran
    diffs, spear = [], []
    from scipy.stats import spearmanr

    for i in range(min(k_naive, k_check)):
        if k_masks < len(masks[i]):  # partial reference: compare the scores it has
            ref, f32 = v_naive[i], v_f32[i][:k_masks]
            diffs.append(float(np.abs(ref - f32).max() / max(np.ptp(ref), 1e-9)))
            continue
        u_ref = fit_surrogate(masks[i], v_naive[i]).utility
        u_f32 = fit_surrogate(masks[i], v_f32[i]).utility
        diffs.append(float(np.abs(u_ref - u_f32).max() / max(np.ptp(u_ref), 1e-9)))
        if v_bf is not None:
            u_bf = fit_surrogate(masks[i], v_bf[i]).utility
            spear.append(float(spearmanr(u_ref, u_bf).statistic))

    for r in results.values():
        dt = r["seconds"]
        r["tokens_per_s"] = r["tokens_forwarded"] / dt
        r["equivalent_tokens_per_s"] = r["tokens_equivalent"] / dt
        r["samples_per_s"] = r["samples"] / dt
        p = peak["bf16"] if r["name"].endswith("bf16") else peak["fp32"]
        r["tokens_forwarded"] = int(r["tokens_forwarded"])
        r["peak_flops"] = p
        # model FLOPs actually needed: the decoder on every forwarded token, the vocabulary
        # projection only on the rows that went through it (every row for naive / ContextCite)
        flops = 2 * n_ne * r["tokens_forwarded"] + 2 * n_head * r["logit_rows"]
        r["model_flops"] = flops
        r["mfu"] = flops / dt / p
        r["mfu_2_params_tokens"] = 2 * n_params * r["tokens_forwarded"] / dt / p  # DESIGN §6
    # speed-up in naive-equivalent tokens per second: the work the naive loop would do for the
    # same masks, per second; independent of which samples / masks each method ran on
    base = results["naive_fp32"]["equivalent_tokens_per_s"]
    for r in results.values():
        r["speedup_vs_naive"] = r["equivalent_tokens_per_s"] / base
    out = {
        "generator": args.generator, "params": n_params, "non_embedding_params": n_ne,
        "samples": len(samples), "naive_samples": k_naive, "masks": args.masks,
        "naive_masks_per_sample": k_masks,
        "target": args.target, "matmul_peak_flops": peak,
        "matmul_peak_flops_before_runs": peak_before,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "load_avg": os.getloadavg(),
                    "device": str(g32.device)},
        "exactness_fp32_max_abs_diff_over_range": max(diffs) if diffs else None,
        "bf16_vs_naive_utility_spearman_min": min(spear) if spear else None,
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.output, out)
    print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()))
    print(f"{'run':<14}{'samples':>8}{'tok/s':>10}{'eq tok/s':>10}{'samples/s':>11}"
          f"{'MFU':>8}{'speedup':>9}")
    for r in results.values():
        print(f"{r['name']:<14}{r['samples']:>8}{r['tokens_per_s']:>10.1f}"
              f"{r['equivalent_tokens_per_s']:>10.1f}{r['samples_per_s']:>11.4f}"
              f"{r['mfu']:>8.3f}{r['speedup_vs_naive']:>9.2f}")
    print(f"exactness (fp32 fast vs naive, max |du| / range(u), or |ds| / range(s) when the "
          f"reference ran on {k_masks} masks): "
          f"{out['exactness_fp32_max_abs_diff_over_range']}")
    print(f"bf16 vs naive utility Spearman (min): {out['bf16_vs_naive_utility_spearman_min']}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
