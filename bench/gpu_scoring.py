"""Scoring throughput and model FLOP utilisation of a generator architecture on this machine.

The model is built from its published config with random weights (no weights need to reach the
machine), in bf16 where the device supports it, and runs the attribution engine's kind of work:
teacher-forced forwards over padded batches with logits kept only at the answer positions,
then a log-softmax and a gather. MFU = 2 x parameters x tokens/s over the matmul peak that the
same run measures on the same device in the same dtype (DESIGN.md section 6).

    python bench/gpu_scoring.py --arch llama3-8b --seconds 60      # on a GPU machine
    python bench/gpu_scoring.py --arch smollm2-135m --seconds 5     # CPU smoke run

Writes bench/results/gpu_scoring-<arch>-<device>.json and prints a table; feed the measured
tokens/s to `scarlet plan --set plan.gpus.<GPU>.measured_tokens_per_s=<tokens/s>`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from scarlet_ray.models.generator import choose_device, choose_dtype
from scarlet_ray.models.gpu import attn_implementation_for, scoring_batch_tokens

# Published configs (config.json of each model), enough to build the architecture.
ARCHS: dict[str, dict[str, Any]] = {
    "llama3-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=False),
    "qwen2.5-3b": dict(model_type="qwen2", hidden_size=2048, intermediate_size=11008,
                       num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                       vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                       rms_norm_eps=1e-6, tie_word_embeddings=True),
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=True),
}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_peak_tflops(dev: torch.device, dtype: torch.dtype, n: int, seconds: float) -> float:
    """Best sustained TFLOP/s of an n x n x n matmul in ``dtype`` on ``dev``."""
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(dev)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        reps = 10 if dev.type == "cuda" else 2
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(dev)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12)
    return best


def build_model(arch: str, dev: torch.device, dtype: torch.dtype, num_layers: int | None):
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(ARCHS[arch])
    if num_layers:
        spec["num_hidden_layers"] = num_layers
    cfg = AutoConfig.for_model(**spec)
    cfg._attn_implementation = attn_implementation_for(dev, dtype)
    torch.manual_seed(0)
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval(), cfg


@torch.no_grad()
def score_batch(model, ids: torch.Tensor, answer_tokens: int) -> torch.Tensor:
    """Sum of log-probs of the last ``answer_tokens`` tokens of each row (teacher forcing)."""
    out = model(input_ids=ids, logits_to_keep=answer_tokens + 1)
    logp = out.logits[:, :-1].float().log_softmax(-1)
    target = ids[:, -answer_tokens:]
    return logp.gather(-1, target[..., None]).squeeze(-1).sum(-1)


def run(arch: str, device: str = "auto", dtype: str = "auto", seq: int = 848,
        answer_tokens: int = 48, batch_tokens: int | None = None, seconds: float = 30.0,
        matmul_n: int | None = None, num_layers: int | None = None) -> dict[str, Any]:
    dev = choose_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    tdtype, why = choose_dtype(dtype, dev)
    n = matmul_n or (8192 if dev.type == "cuda" else 1024)
    peak = matmul_peak_tflops(dev, tdtype, n, min(10.0, max(1.0, seconds / 4)))
    model, cfg = build_model(arch, dev, tdtype, num_layers)
    params = sum(p.numel() for p in model.parameters())
    if batch_tokens is None:
        batch_tokens = scoring_batch_tokens(cfg, tdtype, dev,
                                            logits_fraction=(answer_tokens + 1) / seq)
    rows = max(1, batch_tokens // seq)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (rows, seq), generator=gen).to(dev)
    score_batch(model, ids, answer_tokens)  # warm-up (kernels, allocator)
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    tokens, t0 = 0, time.perf_counter()
    while True:
        score_batch(model, ids, answer_tokens)
        _sync(dev)
        tokens += rows * seq
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    tps = tokens / elapsed
    result = {
        "arch": arch, "layers": cfg.num_hidden_layers, "params": params,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
        or platform.machine(),
        "dtype": str(tdtype).replace("torch.", ""), "dtype_reason": why,
        "attn_implementation": cfg._attn_implementation, "seq": seq,
        "answer_tokens": answer_tokens, "rows_per_batch": rows, "batch_tokens": rows * seq,
        "seconds": round(elapsed, 2), "tokens": tokens, "tokens_per_s": tps,
        "model_tflops": 2 * params * tps / 1e12, "matmul_peak_tflops": peak,
        "mfu": 2 * params * tps / (peak * 1e12),
        "peak_memory_gib": (torch.cuda.max_memory_allocated(dev) / 2**30
                            if dev.type == "cuda" else None),
        "torch": torch.__version__,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="llama3-8b")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    ap.add_argument("--seq", type=int, default=848, help="tokens per masked forward (plan's)")
    ap.add_argument("--answer-tokens", type=int, default=48)
    ap.add_argument("--batch-tokens", type=int, default=None, help="default: from free memory")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--layers", type=int, default=None, help="fewer layers (smoke runs only)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    r = run(a.arch, a.device, a.dtype, a.seq, a.answer_tokens, a.batch_tokens, a.seconds,
            num_layers=a.layers)
    out = Path(a.out or f"bench/results/gpu_scoring-{a.arch}-{r['device'].split()[-1]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2))
    from scarlet_ray.manifest import print_table

    print_table(f"scoring throughput: {a.arch} on {r['device']}",
                [(k, v) for k, v in r.items()], headers=("", "measured"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
