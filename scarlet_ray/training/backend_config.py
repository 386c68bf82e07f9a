"""Training settings made concrete for a backend: precision, warmup and the DeepSpeed config.

Both backends follow one learning-rate curve and one optimizer from these, so a DDP run and a
DeepSpeed run of the same settings give the same losses (tests/test_training_ray.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scarlet_ray.config import TrainingConfig


def resolve_precision(tc: TrainingConfig, device: torch.device) -> str:
    """``auto``: bf16 on GPUs that have it, else fp16 on GPU; fp32 on CPU."""
    if tc.precision != "auto":
        return tc.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def warmup_steps(tc: TrainingConfig, total_steps: int) -> int:
    # DeepSpeed refuses 0 warmup steps; with one step in all, that step warms up
    return max(1, min(math.ceil(tc.warmup_ratio * total_steps), total_steps - 1))


def deepspeed_config(tc: TrainingConfig, *, world_size: int, total_steps: int,
                     precision: str, on_gpu: bool) -> dict[str, Any]:
    """A complete, concrete DeepSpeed config (no "auto" values left for DeepSpeed to guess)."""
    micro = tc.batch_size // (world_size * tc.grad_accum)
    if micro * world_size * tc.grad_accum != tc.batch_size:
        raise ValueError(f"training.batch_size: {tc.batch_size} is not divisible by "
                         f"num_workers x grad_accum = {world_size * tc.grad_accum}")
    zero: dict[str, Any] = {"stage": tc.zero_stage}
    if tc.zero_stage >= 1:
        zero.update(reduce_bucket_size=int(5e7), allgather_bucket_size=int(5e7),
                    overlap_comm=on_gpu, contiguous_gradients=True)
    if tc.zero_stage == 3:
        zero.update(stage3_gather_16bit_weights_on_model_save=True)
    sched_params: dict[str, Any] = {"warmup_min_lr": 0.0, "warmup_max_lr": tc.lr,
                                    "warmup_num_steps": warmup_steps(tc, total_steps),
                                    "warmup_type": "linear"}
    if tc.scheduler == "warmup_decay":
        sched_params["total_num_steps"] = max(total_steps, 1)
    return {
        "train_batch_size": tc.batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": tc.grad_accum,
        "gradient_clipping": tc.grad_clip,
        "optimizer": {"type": "AdamW", "params": {
            "lr": tc.lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": tc.weight_decay,
            # torch's AdamW on CPU: no JIT-compiled op, identical maths to the DDP path
            **({} if on_gpu else {"torch_adam": True})}},
        "scheduler": {"type": "WarmupDecayLR" if tc.scheduler == "warmup_decay" else "WarmupLR",
                      "params": sched_params},
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
