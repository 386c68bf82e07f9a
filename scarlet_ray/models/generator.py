"""Causal LM loading (named GGUF default, HF id or path) and reference answer scoring.

The fast batched scoring engine lives in ``attribution/scoring.py``; this module gives the one
obvious, unoptimised way to score an answer, used as the reference and for sanity checks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scarlet_ray.models.registry import cache_root, named, require_package
from scarlet_ray.prompt import chat_messages
from scarlet_ray.records import Passage

log = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Generator:
    """A loaded causal LM with its tokenizer and the precision decision that was made."""

    model: Any
    tokenizer: Any
    name: str
    device: torch.device
    dtype: torch.dtype
    dtype_reason: str
    info: dict[str, Any] = field(default_factory=dict)
    engine: Any = None  # a vllm.LLM where the backend is vllm (then ``model`` is None)

    @property
    def window(self) -> int | None:
        """Tokens the model takes (prompt plus generated); None where its config does not say."""
        if self.engine is not None:
            return self.info.get("window")
        return model_window(self.model)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def prompt_ids(self, instruction: str, passages: Sequence[Passage], input_text: str) -> list[int]:
        msgs = chat_messages(instruction, passages, input_text)
        ids = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def answer_ids(self, answer: str) -> list[int]:
        return list(self.tokenizer(answer, add_special_tokens=False)["input_ids"])


def model_window(model: Any) -> int | None:
    """The context window from a transformers config (the first of the usual keys set)."""
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matmul (AVX512-BF16 or AMX)."""
    try:
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
            return any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    except Exception:  # noqa: BLE001 - any failure means "don't risk bf16"
        return False
    return False


def choose_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(requested: str, device: torch.device) -> tuple[torch.dtype, str]:
    """Resolve ``auto`` to bf16 where the hardware runs it natively, else fp32; say why."""
    if requested != "auto":
        return _DTYPES[requested], f"{requested} requested"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16: CUDA device supports it"
        return torch.float16, "fp16: CUDA device without bf16"
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16, "bf16: CPU has native bf16 (avx512_bf16/amx)"
    return torch.float32, "fp32: no native bf16 on this device"


def prepare_named_generator(name: str) -> Path:
    """Convert a named GGUF default once into an HF folder in the cache; return the folder.

    A GGUF-loaded model cannot ``save_pretrained`` (its config carries a quantization_config),
    so it is rebuilt from a clean config, loaded with the dequantised weights and saved in bf16.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = named(name)
    assert m is not None and m.file is not None
    out = cache_root() / "models" / m.name
    marker = out / "scarlet_prepared.json"
    if marker.exists():
        return out
    pkg = require_package(m)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=m.file)
    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=m.file, dtype=torch.float32)
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.dtype = torch.bfloat16
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {name}: missing {missing}, unexpected {unexpected}")
    clean.tie_weights()
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    clean.to(torch.bfloat16).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "scarlet_prepared.json").write_text(json.dumps(
        {"name": name, "source": f"{m.package}:{m.file}", "seconds": round(time.time() - t0, 1)}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def resolve_generator_path(ref: str) -> str:
    """Named default -> prepared cache folder; HF id or local path -> unchanged."""
    if named(ref) is not None:
        return str(prepare_named_generator(ref))
    return ref


def load_generator(ref: str, dtype: str = "auto", device: str = "auto",
                   attn_implementation: str | None = None) -> Generator:
    """Load a causal LM for scoring/generation in eval mode, precision chosen for the hardware."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = choose_device(device)
    torch_dtype, reason = choose_dtype(dtype, dev)
    path = resolve_generator_path(ref)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    elif dev.type == "cuda":
        from scarlet_ray.models.gpu import attn_implementation_for

        kwargs["attn_implementation"] = attn_implementation_for(dev, torch_dtype)
    if dev.type == "cuda":
        # one generator per GPU: load straight onto it (no CPU copy of 16 GB of weights);
        # a model too big for one GPU is spread with device_map="auto"
        from transformers import AutoConfig

        from scarlet_ray.models.gpu import ArchSpec, device_map_for

        n_params = ArchSpec.from_config(AutoConfig.from_pretrained(path)).n_params
        kwargs["device_map"] = device_map_for(n_params, torch_dtype, dev)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(dev).eval()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    log.info("generator %s on %s in %s (%s)", ref, dev, torch_dtype, reason)
    return Generator(model=model, tokenizer=tok, name=ref, device=dev, dtype=torch_dtype,
                     dtype_reason=reason, info={"path": path})


def load_for_backend(models: Any, backend: str = "hf", target: str = "logprob_sum") -> Generator:
    """The generator for a stage's backend: transformers (``hf``) or a vLLM engine (``vllm``,
    started once per process; ``target`` picks its log-prob mode)."""
    if backend == "vllm":
        from scarlet_ray.models.vllm_engine import load_vllm_generator, logprobs_mode

        return load_vllm_generator(models, logprobs_mode(target))
    if backend != "hf":
        raise ValueError(f"unknown generator backend {backend!r}; known: hf, vllm")
    return load_generator(models.generator, models.dtype, models.device,
                          models.attn_implementation)


@torch.no_grad()
def answer_logprob(gen: Generator, instruction: str, passages: Sequence[Passage],
                   input_text: str, answer: str) -> float:
    """Sum of the answer tokens' log-probabilities, teacher forced after the chat prompt."""
    prompt = gen.prompt_ids(instruction, passages, input_text)
    ans = gen.answer_ids(answer)
    if not ans:
        raise ValueError("answer is empty after tokenisation")
    ids = torch.tensor([prompt + ans], device=gen.device)
    logits = gen.model(ids).logits[0, len(prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(logp.gather(1, torch.tensor(ans, device=gen.device)[:, None]).sum())
