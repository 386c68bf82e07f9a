"""GPU scoring-path helpers: batch size from free memory, one generator per GPU.

The attribution engine scores many masked copies of a prompt per sample; on a GPU the batch
that fits is set by the memory left after the weights, so it is computed from what
``torch.cuda.mem_get_info`` reports, never hard-coded per card. Under Ray each scoring actor
asks for one GPU and sees it as the current device, hence one generator per GPU; a model that
does not fit one GPU is spread over the visible ones (``device_map="auto"``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2,
          "float32": 4, "float16": 2, "bfloat16": 2, "fp32": 4, "fp16": 2, "bf16": 2}


def dtype_bytes(dtype: torch.dtype | str) -> int:
    try:
        return _BYTES[dtype]
    except KeyError:
        raise ValueError(f"dtype {dtype!r}: expected float32, float16 or bfloat16") from None


@dataclass(frozen=True)
class ArchSpec:
    """The sizes of a decoder-only transformer that set memory per token."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def from_config(cls, cfg: Any) -> ArchSpec:
        """From a transformers ``PretrainedConfig`` (or a dict of its fields)."""
        get = cfg.get if isinstance(cfg, Mapping) else lambda k, d=None: getattr(cfg, k, d)
        hidden, heads = int(get("hidden_size")), int(get("num_attention_heads"))
        return cls(layers=int(get("num_hidden_layers")), hidden=hidden, heads=heads,
                   kv_heads=int(get("num_key_value_heads", None) or heads),
                   head_dim=int(get("head_dim", None) or hidden // heads),
                   intermediate=int(get("intermediate_size", None) or 4 * hidden),
                   vocab=int(get("vocab_size")))

    @property
    def n_params(self) -> int:
        """Parameter count of a LLaMA-style decoder (gated MLP, untied head: an upper bound)."""
        attn = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attn + mlp) + 2 * self.vocab * self.hidden


def bytes_per_token(arch: ArchSpec, dtype: torch.dtype | str, *,
                    logits_fraction: float = 1.0) -> int:
    """Estimated memory one token of a scoring batch needs beyond the weights.

    - KV: K and V of every layer, 2 x layers x kv_heads x head_dim elements (the prefix cache
      and SDPA keep them; counted for every token to stay on the safe side);
    - activations of the one layer being computed (inference frees the others): residual,
      normed input, query and attention output (~4 x hidden) and the MLP's gate, up and
      product (3 x intermediate);
    - logits at the scored positions: vocab in the model dtype, then an fp32 upcast and an
      fp32 log-softmax. ``logits_fraction`` is the share of tokens whose logits are kept
      (answer tokens / all tokens with ``logits_to_keep``; 1.0 when full logits are computed).
    SDPA/flash attention never materialise the L x L score matrix, so it is not counted.
    """
    if not 0.0 <= logits_fraction <= 1.0:
        raise ValueError(f"logits_fraction: must be in [0, 1], got {logits_fraction}")
    e = dtype_bytes(dtype)
    kv = 2 * arch.layers * arch.kv_heads * arch.head_dim * e
    act = (4 * arch.hidden + 3 * arch.intermediate) * e
    logits = arch.vocab * (e + 4 + 4)
    return kv + act + math.ceil(logits_fraction * logits)


def generator_device() -> torch.device:
    """The device of this process's generator: the current CUDA device, else the CPU.

    A Ray actor with ``num_gpus=1`` sees exactly its GPU (Ray sets CUDA_VISIBLE_DEVICES), so
    the current device is that GPU: one generator per GPU without any bookkeeping here.
    """
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _available_ram() -> int:
    """MemAvailable from /proc/meminfo (page cache counts as free), else sysconf."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device`` (call after the weights are loaded)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return _available_ram()


def scoring_batch_tokens(model_config: Any, dtype: torch.dtype | str,
                         device: torch.device | None = None, *, free_bytes: int | None = None,
                         logits_fraction: float = 1.0, safety: float = 0.9,
                         reserve_bytes: int | None = None, min_tokens: int = 256,
                         max_tokens: int | None = None, cpu_max_tokens: int = 16384,
                         multiple: int = 64) -> int:
    """Tokens per scoring batch that fit the free memory of ``device``.

    ``(free x safety - reserve) / bytes_per_token``, rounded down to a multiple of ``multiple``
    and capped by ``max_tokens`` (e.g. ``attribution.max_batch_tokens``). ``safety`` leaves room
    for allocator fragmentation; ``reserve`` (default 1 GiB on CUDA for cuBLAS/SDPA workspaces,
    2 GiB on the CPU for the rest of the process) is taken off first. On the CPU the batch is
    also capped at ``cpu_max_tokens``: past a few thousand tokens a CPU gains no throughput.
    """
    if not 0 < safety <= 1:
        raise ValueError(f"safety: must be in (0, 1], got {safety}")
    dev = device or generator_device()
    arch = model_config if isinstance(model_config, ArchSpec) else ArchSpec.from_config(model_config)
    free = free_memory(dev) if free_bytes is None else int(free_bytes)
    reserve = reserve_bytes if reserve_bytes is not None else (1 << 30 if dev.type == "cuda"
                                                                else 2 << 30)
    per_token = bytes_per_token(arch, dtype, logits_fraction=logits_fraction)
    budget = free * safety - reserve
    n = int(budget // per_token) if budget > 0 else 0
    caps = [c for c in (max_tokens, cpu_max_tokens if dev.type == "cpu" else None) if c]
    if caps:
        n = min(n, *caps)
    if n >= multiple:
        n -= n % multiple
    if n < min_tokens:
        raise RuntimeError(
            f"{dev}: {free / 2**30:.2f} GiB free leaves room for {n} tokens per scoring batch "
            f"({per_token:,} bytes/token), fewer than {min_tokens}; free memory, use a smaller "
            "dtype or spread the model over more GPUs")
    return n


def weight_bytes(n_params: float, dtype: torch.dtype | str) -> int:
    return int(n_params * dtype_bytes(dtype))


def device_map_for(n_params: float, dtype: torch.dtype | str,
                   device: torch.device | None = None, *, total_bytes: int | None = None,
                   max_weight_share: float = 0.8) -> dict[str, Any] | str:
    """``device_map`` for ``from_pretrained``: the whole model on this process's device when
    its weights take at most ``max_weight_share`` of that device's memory (the rest is for
    scoring batches), else ``"auto"`` (layers spread over all visible GPUs; the Ray actor must
    then ask for as many GPUs as that needs)."""
    dev = device or generator_device()
    if dev.type != "cuda":
        return {"": "cpu"}
    total = total_bytes if total_bytes is not None else \
        torch.cuda.get_device_properties(dev).total_memory
    if weight_bytes(n_params, dtype) <= max_weight_share * total:
        return {"": dev.index if dev.index is not None else torch.cuda.current_device()}
    return "auto"


def attn_implementation_for(device: torch.device, dtype: torch.dtype | str) -> str:
    """``flash_attention_2`` on CUDA in bf16/fp16 where flash-attn is installed, else ``sdpa``
    (PyTorch's fused attention, which itself picks flash or memory-efficient kernels)."""
    if device.type == "cuda" and dtype_bytes(dtype) == 2:
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "sdpa"
