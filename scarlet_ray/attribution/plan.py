"""What an attribution run will cost, before it starts (``scarlet plan``). Pure arithmetic.

Attribution is the pipeline's cost (DESIGN.md section 6): every sample is scored once per
distinct mask, each a teacher-forced forward of the generator over the prompt with the kept
passages and the ground-truth answer. Model FLOPs are taken as 2 x parameters x tokens.

Every device figure below is a documented ESTIMATE (datasheet peak, an assumed model FLOP
utilisation, list prices); a measured ``plan.gpus.<NAME>.measured_tokens_per_s`` in the job
config replaces the estimate for that device, and the table says which one it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scarlet_ray.config import Config

# Generator parameter counts (total, embeddings included), from the models' published configs.
KNOWN_PARAMS: dict[str, float] = {
    "llama-3-8b": 8.03e9,  # Meta-Llama-3-8B(-Instruct), also 3.1-8B
    "llama-3.1-8b": 8.03e9,
    "qwen2.5-3b": 3.09e9,  # Qwen2.5-3B(-Instruct)
    "smollm2-135m": 1.35e8,  # SmolLM2-135M(-Instruct), the laptop default
}

PRICES_AS_OF = "2025-06"
PRICE_NOTE = (f"AWS us-east-1 Linux list prices as of {PRICES_AS_OF} (after the June-2025 P4/P5 "
              "cut), per GPU = instance price / GPUs; spot is a typical level, it moves hourly")
MFU_NOTE = ("assumed MFU for HF-transformers bf16 teacher-forced forwards with SDPA and padded, "
            "length-bucketed batches (no FP8), for models of 1B+ parameters (small models run at far "
            "lower MFU); replace with a measured figure")


@dataclass(frozen=True)
class Device:
    """Throughput and price assumptions for one device type (per GPU)."""

    name: str
    instance: str
    peak_tflops: float  # dense bf16 tensor-core peak (no sparsity), datasheet
    mfu: float  # assumed model FLOP utilisation
    usd_per_hour: float  # on-demand, per GPU
    spot_usd_per_hour: float | None  # spot, per GPU
    measured_tokens_per_s: float | None = None

    def tokens_per_s(self, params: float) -> float:
        if self.measured_tokens_per_s:
            return self.measured_tokens_per_s
        return self.peak_tflops * 1e12 * self.mfu / (2.0 * params)

    @property
    def source(self) -> str:
        return "measured" if self.measured_tokens_per_s else "estimate"


# Datasheet peaks: H100 SXM 989 TFLOP/s bf16 dense; A100 SXM 312; L40S 362; A10 125 (the A10G is
# AWS's A10 variant at lower clocks, so its MFU is set lower). CPU: an 8-core AVX-512 laptop.
DEVICES: dict[str, Device] = {
    "H100": Device("H100", "p5.48xlarge (8x)", 989.0, 0.35, 55.04 / 8, 3.50),
    "A100-80G": Device("A100-80G", "p4de.24xlarge (8x)", 312.0, 0.45, 27.45 / 8, 1.80),
    "L40S": Device("L40S", "g6e.2xlarge", 362.0, 0.40, 2.242, 0.90),
    "A10G": Device("A10G", "g5.2xlarge", 125.0, 0.35, 1.212, 0.50),
    "CPU": Device("CPU", "laptop (own machine)", 1.0, 0.25, 0.0, None),
}


@dataclass(frozen=True)
class Assumptions:
    """Per-sample size assumptions (``plan.*`` in the job config)."""

    passages: int
    prompt_tokens: int  # system prompt + chat template + instruction + input
    tokens_per_passage: int  # "Title: ..\nText: .." of a ~100-word passage
    answer_tokens: int  # ground-truth answer, teacher-forced
    n_masks: int
    keep_prob: float
    dedupe: bool
    include_full: bool = False
    include_empty: bool = False


@dataclass(frozen=True)
class TokenEstimate:
    masks_per_sample: float  # expected masks actually scored (after dedup)
    tokens_per_forward: float  # mean tokens of one scored masked forward
    tokens_per_sample: float

    def total(self, samples: int) -> float:
        return samples * self.tokens_per_sample


def _p_drawn(q: float, n: int) -> float:
    """P(a mask of probability q appears at least once in n independent draws)."""
    if q <= 0:
        return 0.0
    if q >= 1:
        return 1.0
    return -math.expm1(n * math.log1p(-q))


def estimate_tokens(a: Assumptions) -> TokenEstimate:
    """Expected masks scored and tokens per sample.

    Masks are i.i.d. Bernoulli(keep_prob) per passage. With dedup, the expected number of
    distinct masks is sum over masks m of P(m drawn at least once); masks with the same number
    k of kept passages share a probability q_k = p^k (1-p)^(P-k), so the sum runs over k. For 10
    passages at p=0.5 and 64 draws that is 1024 * (1 - (1023/1024)^64) = 62.07, not 64.
    """
    P, p, n = a.passages, a.keep_prob, a.n_masks

    def tokens(k: int) -> float:
        return a.prompt_tokens + k * a.tokens_per_passage + a.answer_tokens

    if a.dedupe:
        masks = tok = 0.0
        for k in range(P + 1):
            q = p**k * (1 - p) ** (P - k)
            drawn = math.comb(P, k) * _p_drawn(q, n)
            masks += drawn
            tok += drawn * tokens(k)
    else:
        masks = float(n)
        tok = n * (a.prompt_tokens + p * P * a.tokens_per_passage + a.answer_tokens)
    for wanted, k in ((a.include_full, P), (a.include_empty, 0)):
        if wanted:  # scored in addition, unless dedup finds it among the random draws
            q = p**k * (1 - p) ** (P - k)
            extra = (1 - _p_drawn(q, n)) if a.dedupe else 1.0
            masks += extra
            tok += extra * tokens(k)
    return TokenEstimate(masks, tok / masks, tok)


def generator_params(cfg: Config) -> float:
    """``plan.generator_params`` if set, else the known-model table by name."""
    if cfg.plan.generator_params:
        return float(cfg.plan.generator_params)
    ref = cfg.models.generator.lower().replace("_", "-")
    for key in sorted(KNOWN_PARAMS, key=len, reverse=True):
        if key in ref:
            return KNOWN_PARAMS[key]
    raise ValueError(f"models.generator: {cfg.models.generator!r} is not in the known-model "
                     f"table ({', '.join(KNOWN_PARAMS)}); set plan.generator_params")


def devices(cfg: Config) -> list[Device]:
    """Built-in devices with ``plan.gpus`` overrides applied; new names need all figures."""
    out = dict(DEVICES)
    for name, spec in cfg.plan.gpus.items():
        given = {k: v for k, v in spec.model_dump().items() if v is not None}
        if name in out:
            out[name] = replace(out[name], **given)
            continue
        if spec.measured_tokens_per_s is None and (spec.peak_tflops is None or spec.mfu is None):
            raise ValueError(f"plan.gpus.{name}: a new device needs measured_tokens_per_s or "
                             "peak_tflops and mfu")
        out[name] = Device(name=name, instance="(config)", peak_tflops=spec.peak_tflops or 0.0,
                           mfu=spec.mfu or 0.0, usd_per_hour=spec.usd_per_hour or 0.0,
                           spot_usd_per_hour=spec.spot_usd_per_hour,
                           measured_tokens_per_s=spec.measured_tokens_per_s)
    return list(out.values())


def assumptions(cfg: Config) -> Assumptions:
    a, pl = cfg.attribution, cfg.plan
    return Assumptions(passages=pl.passages or cfg.context.context_size,
                       prompt_tokens=pl.prompt_tokens, tokens_per_passage=pl.tokens_per_passage,
                       answer_tokens=pl.answer_tokens, n_masks=a.n_masks, keep_prob=a.keep_prob,
                       dedupe=a.dedupe_masks, include_full=a.include_full,
                       include_empty=a.include_empty)


@dataclass(frozen=True)
class DeviceCost:
    device: Device
    tokens_per_s: float
    gpu_hours: float
    cost: float
    spot_cost: float | None


@dataclass(frozen=True)
class Plan:
    samples: int
    generator: str
    params: float
    assumptions: Assumptions
    tokens: TokenEstimate
    total_tokens: float
    flops: float
    costs: list[DeviceCost]


def make_plan(cfg: Config, samples: int) -> Plan:
    """The whole estimate for ``samples`` samples under ``cfg``."""
    if samples < 1:
        raise ValueError(f"--samples: must be >= 1, got {samples}")
    a = assumptions(cfg)
    est = estimate_tokens(a)
    params = generator_params(cfg)
    total = est.total(samples)
    costs = []
    for d in devices(cfg):
        tps = d.tokens_per_s(params)
        hours = total / tps / 3600.0
        spot = hours * d.spot_usd_per_hour if d.spot_usd_per_hour is not None else None
        costs.append(DeviceCost(d, tps, hours, hours * d.usd_per_hour, spot))
    return Plan(samples, cfg.models.generator, params, a, est, total, 2.0 * params * total, costs)


def workload_rows(plan: Plan) -> list[tuple[str, str, str]]:
    """(quantity, value, how it was obtained) rows of the workload table."""
    a, t = plan.assumptions, plan.tokens
    per_fwd = (f"{a.prompt_tokens} + {a.keep_prob:g} x {a.passages} x {a.tokens_per_passage} + "
               f"{a.answer_tokens}")
    dedup = "expected distinct of the draws" if a.dedupe else "dedupe_masks off"
    return [
        ("samples", f"{plan.samples:,}", "--samples"),
        ("passages per sample", str(a.passages), "assumed (plan.passages or context.context_size)"),
        ("masks drawn per sample", str(a.n_masks), f"attribution.n_masks, keep_prob {a.keep_prob:g}"),
        ("masks scored per sample", f"{t.masks_per_sample:.2f}", dedup),
        ("prompt tokens (system, instruction, input)", str(a.prompt_tokens),
         "assumed (plan.prompt_tokens)"),
        ("tokens per passage", str(a.tokens_per_passage), "assumed (plan.tokens_per_passage)"),
        ("answer tokens", str(a.answer_tokens), "assumed (plan.answer_tokens)"),
        ("tokens per masked forward", f"{t.tokens_per_forward:.1f}", per_fwd),
        ("tokens to score", f"{plan.total_tokens:,.0f}",
         "samples x masks scored x tokens per forward"),
        ("generator", plan.generator, "models.generator"),
        ("generator parameters", f"{plan.params:.3g}", "known-model table or plan.generator_params"),
        ("model FLOPs", f"{plan.flops:.3e}", "2 x parameters x tokens"),
    ]


def _num(x: float) -> str:
    """Whole numbers when large, three significant digits when small (a 50-sample plan)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def device_rows(plan: Plan) -> list[tuple[str, ...]]:
    """One row per device: throughput, GPU-hours and cost."""
    rows = []
    for c in plan.costs:
        d = c.device
        peak = f"{d.peak_tflops:g}" if not d.measured_tokens_per_s else "-"
        mfu = f"{d.mfu:.0%}" if not d.measured_tokens_per_s else "-"
        spot_price = f"{d.spot_usd_per_hour:.2f}" if d.spot_usd_per_hour is not None else "-"
        spot_cost = _num(c.spot_cost) if c.spot_cost is not None else "-"
        rows.append((d.name, d.instance, peak, mfu, f"{c.tokens_per_s:,.0f}",
                     _num(c.gpu_hours), f"{d.usd_per_hour:.2f}", spot_price,
                     _num(c.cost), spot_cost, d.source))
    return rows


DEVICE_HEADERS = ("device", "instance", "bf16 peak TFLOP/s", "MFU", "tokens/s/GPU", "GPU-hours",
                  "$/GPU-h", "$/GPU-h spot", "$ total", "$ total spot", "throughput")
