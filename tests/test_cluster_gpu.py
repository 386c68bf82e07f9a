"""GPU scoring-path helpers: memory per token and batch sizes, checked by hand for LLaMA-3-8B
and SmolLM2-135M built from their published configs (no weights needed)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig

from scarlet_ray.models.gpu import (
    ArchSpec,
    attn_implementation_for,
    bytes_per_token,
    device_map_for,
    generator_device,
    scoring_batch_tokens,
)

GiB = 2**30
CUDA0 = torch.device("cuda", 0)  # a device object only: no CUDA call is made with free_bytes


def llama3_8b() -> LlamaConfig:
    return LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256)


def smollm2_135m() -> LlamaConfig:
    return LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, vocab_size=49152)


def test_arch_from_config():
    a = ArchSpec.from_config(llama3_8b())
    assert (a.layers, a.hidden, a.heads, a.kv_heads, a.head_dim, a.intermediate, a.vocab) == \
        (32, 4096, 32, 8, 128, 14336, 128256)
    s = ArchSpec.from_config(smollm2_135m().to_dict())
    assert (s.kv_heads, s.head_dim) == (3, 64)


def test_llama3_8b_bytes_per_token_by_hand():
    a = ArchSpec.from_config(llama3_8b())
    kv = 2 * 32 * 8 * 128 * 2  # K,V x layers x kv heads x head_dim x bf16 = 131,072
    act = (4 * 4096 + 3 * 14336) * 2  # = 118,784
    logits = 128256 * (2 + 4 + 4)  # bf16 logits + fp32 upcast + fp32 log-softmax = 1,282,560
    assert (kv, act, logits) == (131_072, 118_784, 1_282_560)
    assert bytes_per_token(a, torch.bfloat16) == 1_532_416
    assert bytes_per_token(a, "bfloat16", logits_fraction=0.0) == kv + act
    assert bytes_per_token(a, torch.bfloat16, logits_fraction=1 / 16) == 131_072 + 118_784 + 80_160


def test_llama3_8b_batch_on_an_h100_by_hand():
    # 60 GiB free after the 16 GB of weights; 0.9 x 60 GiB - 1 GiB reserve = 53 GiB budget;
    # one in 16 tokens keeps logits: 330,016 bytes/token -> 172,441 -> multiple of 64: 172,416
    n = scoring_batch_tokens(llama3_8b(), torch.bfloat16, CUDA0, free_bytes=60 * GiB,
                             logits_fraction=1 / 16)
    assert n == 172_416
    capped = scoring_batch_tokens(llama3_8b(), torch.bfloat16, CUDA0, free_bytes=60 * GiB,
                                  logits_fraction=1 / 16, max_tokens=65536)
    assert capped == 65536


def test_batch_grows_with_free_memory_and_shrinks_with_logits():
    kw = dict(device=CUDA0, logits_fraction=0.1)
    sizes = [scoring_batch_tokens(llama3_8b(), "bf16", free_bytes=g * GiB, **kw)
             for g in (8, 20, 60)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    full = scoring_batch_tokens(llama3_8b(), "bf16", CUDA0, free_bytes=60 * GiB)
    assert full < sizes[-1]


def test_smollm2_cpu_fallback_by_hand():
    a = ArchSpec.from_config(smollm2_135m())
    # fp32 on CPU: KV 2x30x3x64x4 = 46,080; act (2,304 + 4,608) x 4 = 27,648;
    # logits 49,152 x 12 = 589,824 -> 663,552 bytes/token
    assert bytes_per_token(a, torch.float32) == 46_080 + 27_648 + 589_824 == 663_552
    # 8 GiB available: 0.9 x 8 GiB - 2 GiB = 5,583,457,484.8 B -> 8,414 tokens -> 8,384
    cpu = torch.device("cpu")
    assert scoring_batch_tokens(a, torch.float32, cpu, free_bytes=8 * GiB) == 8384
    # plenty of RAM: the CPU cap applies
    assert scoring_batch_tokens(a, torch.float32, cpu, free_bytes=512 * GiB) == 16384


def test_too_little_memory_is_a_clear_error():
    with pytest.raises(RuntimeError, match="fewer than 256"):
        scoring_batch_tokens(llama3_8b(), torch.bfloat16, CUDA0, free_bytes=int(1.2 * GiB))


def test_live_cpu_path():
    """Without CUDA the device is the CPU and the batch comes from the machine's real RAM."""
    if torch.cuda.is_available():
        pytest.skip("CPU fallback test")
    dev = generator_device()
    assert dev.type == "cpu"
    n = scoring_batch_tokens(smollm2_135m(), torch.float32, max_tokens=4096)
    assert 256 <= n <= 4096 and n % 64 == 0
    assert attn_implementation_for(dev, torch.bfloat16) == "sdpa"
    assert device_map_for(1.35e8, torch.float32, dev) == {"": "cpu"}


def test_one_generator_per_gpu_unless_it_does_not_fit():
    # LLaMA-3-8B bf16 = 16.06 GB of weights
    assert device_map_for(8.03e9, torch.bfloat16, CUDA0, total_bytes=80 * GiB) == {"": 0}
    assert device_map_for(8.03e9, torch.bfloat16, CUDA0, total_bytes=24 * GiB) == {"": 0}
    assert device_map_for(8.03e9, torch.float32, CUDA0, total_bytes=24 * GiB) == "auto"
    assert device_map_for(70.6e9, torch.bfloat16, CUDA0, total_bytes=80 * GiB) == "auto"


def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_scoring.py"
    spec = importlib.util.spec_from_file_location("gpu_scoring", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("arch,params", [("llama3-8b", 8.03e9), ("qwen2.5-3b", 3.09e9),
                                         ("smollm2-135m", 1.35e8)])
def test_bench_archs_match_the_plan_parameter_table(arch: str, params: float):
    """The bench builds each architecture from its config; its size is the plan's table entry."""
    from scarlet_ray.attribution.plan import KNOWN_PARAMS

    bench = _bench()
    model, _cfg = bench.build_model(arch, torch.device("meta"), torch.bfloat16, None)
    n = sum(p.numel() for p in model.parameters())
    assert n == pytest.approx(params, rel=0.005)
    key = {"llama3-8b": "llama-3-8b"}.get(arch, arch)
    assert KNOWN_PARAMS[key] == params


def test_bench_smoke_on_cpu():
    """The prepared GPU script runs end to end (1 layer, tiny batch) and reports sane numbers."""
    r = _bench().run("smollm2-135m", device="cpu", dtype="float32", seq=64, answer_tokens=8,
                     batch_tokens=128, seconds=0.2, matmul_n=256, num_layers=1)
    assert r["tokens"] >= 128 and r["tokens_per_s"] > 0
    assert r["params"] < 1.35e8 and r["layers"] == 1
    # MFU is over the matmul peak measured in the same run (on a shared CPU the tiny matmul's
    # peak is noisy, so only the definition is checked here, not the value)
    assert r["matmul_peak_tflops"] > 0
    assert r["mfu"] == pytest.approx(2 * r["params"] * r["tokens_per_s"]
                                     / (r["matmul_peak_tflops"] * 1e12))


def test_arch_n_params_matches_llama3_8b():
    from transformers import LlamaConfig

    from scarlet_ray.models.gpu import ArchSpec

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256)
    # Meta-Llama-3-8B has 8,030,261,248 parameters (untied embeddings and head)
    assert ArchSpec.from_config(cfg).n_params == 8_030_261_248 - 32 * 2 * 4096 - 4096


def test_engine_keeps_configured_batch_on_cpu(tiny_llama):
    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.config import load_config
    from scarlet_ray.models.generator import load_generator

    cfg = load_config(None, ["attribution.max_batch_tokens=1024"])
    eng = AttributionEngine(load_generator(str(tiny_llama), dtype="float32"), cfg.attribution,
                            cfg.labels)
    assert eng.max_batch_tokens == 1024
