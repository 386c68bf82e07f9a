"""``scarlet plan``: the token count at the paper's scale, checked by hand, and the tables."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scarlet_ray.attribution.plan import (
    DEVICES,
    Assumptions,
    estimate_tokens,
    generator_params,
    make_plan,
)
from scarlet_ray.cli import main as cli_main
from scarlet_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
LLAMA_JOB = ROOT / "jobs" / "llama3-8b.yaml"
PAPER_SAMPLES = 17_529


def test_paper_scale_token_count_without_dedup():
    cfg = load_config(LLAMA_JOB, ["attribution.dedupe_masks=false"])
    plan = make_plan(cfg, PAPER_SAMPLES)
    # by hand: 100 prompt + 0.5 keep x 10 passages x 140 tokens + 48 answer = 848 per forward
    per_forward = 100 + 700 + 48
    assert plan.total_tokens == pytest.approx(17_529 * 64 * 848)
    assert plan.total_tokens == pytest.approx(951_333_888)
    assert plan.tokens.tokens_per_forward == pytest.approx(per_forward)
    assert plan.flops == pytest.approx(2 * 8.03e9 * 951_333_888)


def test_paper_scale_token_count_with_expected_dedup():
    cfg = load_config(LLAMA_JOB)
    assert cfg.attribution.dedupe_masks
    plan = make_plan(cfg, PAPER_SAMPLES)
    # at keep 0.5 all 2^10 masks are equally likely: E[distinct of 64 draws] = 1024(1-(1023/1024)^64)
    distinct = 1024 * (1 - (1023 / 1024) ** 64)
    assert distinct == pytest.approx(62.07, abs=0.01)
    assert plan.tokens.masks_per_sample == pytest.approx(distinct)
    # symmetric around 5 kept passages, so the mean forward is still 848 tokens
    assert plan.total_tokens == pytest.approx(17_529 * distinct * 848)


def test_device_arithmetic_and_measured_override():
    cfg = load_config(LLAMA_JOB, ["plan.gpus.H100.measured_tokens_per_s=5000",
                                  "plan.gpus.L40S.usd_per_hour=3.0"])
    plan = make_plan(cfg, 1000)
    by = {c.device.name: c for c in plan.costs}
    h100 = by["H100"]
    assert h100.device.source == "measured"
    assert h100.gpu_hours == pytest.approx(plan.total_tokens / 5000 / 3600)
    l40s = by["L40S"]
    assert l40s.device.source == "estimate"
    # estimate: peak x MFU / (2 x params) tokens/s
    tps = 362e12 * DEVICES["L40S"].mfu / (2 * 8.03e9)
    assert l40s.tokens_per_s == pytest.approx(tps)
    assert l40s.cost == pytest.approx(plan.total_tokens / tps / 3600 * 3.0)


def test_generator_params_table_and_errors():
    assert generator_params(load_config(None)) == 1.35e8
    qwen = load_config(ROOT / "jobs" / "qwen2.5-3b.yaml")
    assert generator_params(qwen) == 3.09e9
    with pytest.raises(ValueError, match="plan.generator_params"):
        generator_params(load_config(None, ["models.generator=some/unknown-model"]))
    assert generator_params(load_config(None, ["models.generator=x/y",
                                               "plan.generator_params=7e9"])) == 7e9


def _simulate(a: Assumptions, trials: int, rng: random.Random) -> tuple[float, float]:
    masks = tokens = 0.0
    for _ in range(trials):
        seen = {tuple(rng.random() < a.keep_prob for _ in range(a.passages))
                for _ in range(a.n_masks)}
        masks += len(seen)
        tokens += sum(a.prompt_tokens + sum(m) * a.tokens_per_passage + a.answer_tokens
                      for m in seen)
    return masks / trials, tokens / trials


@settings(max_examples=15, deadline=None)
@given(P=st.integers(1, 6), n=st.integers(2, 40), p=st.sampled_from([0.2, 0.5, 0.7]))
def test_expected_dedup_matches_simulation(P: int, n: int, p: float):
    a = Assumptions(passages=P, prompt_tokens=10, tokens_per_passage=7, answer_tokens=3,
                    n_masks=n, keep_prob=p, dedupe=True)
    est = estimate_tokens(a)
    assert 1 <= est.masks_per_sample <= min(n, 2**P) + 1e-9
    masks, tokens = _simulate(a, 1500, random.Random(P * 1000 + n))
    assert est.masks_per_sample == pytest.approx(masks, rel=0.05, abs=0.3)
    assert est.tokens_per_sample == pytest.approx(tokens, rel=0.05, abs=5)


def test_plan_command_prints_the_tables(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    rc = cli_main(["plan", "--config", str(LLAMA_JOB), "--samples", str(PAPER_SAMPLES)])
    out = capsys.readouterr().out
    assert rc == 0
    expected = round(17_529 * 1024 * (1 - (1023 / 1024) ** 64) * 848)
    assert f"{expected:,}" in out
    for name in ("H100", "A100-80G", "L40S", "A10G", "CPU"):
        assert name in out
    assert "estimate" in out and "GPU-hours" in out


def test_plan_command_rejects_unknown_generator(capsys):
    rc = cli_main(["plan", "--samples", "10", "--set", "models.generator=acme/unknown-7b"])
    assert rc == 2
    assert "plan.generator_params" in capsys.readouterr().err


def test_index_plan_at_kilt_scale_checked_by_hand(capsys, monkeypatch):
    from scarlet_ray.context.ann import AnnSpec, build, index_bytes
    from scarlet_ray.index.plan import ann_bytes, make_index_plan

    cfg = load_config(LLAMA_JOB)
    n = 21_015_324
    p = make_index_plan(cfg, n)
    assert (p.params, p.dim) == (109.5e6, 768)  # BGE-base
    assert p.flops == pytest.approx(2 * 109.5e6 * n * 140)
    assert p.shard_bytes == n * 768 * 2  # fp16
    # ivfpq at the job's settings: 96 code bytes + an 8-byte id per passage, plus centroids
    assert p.ann["ivfpq"] == n * (96 + 8) + 16384 * 768 * 4 + 256 * 768 * 4
    h100 = next(r for r in p.rows if r.device.name == "H100")
    assert h100.passages_per_s == pytest.approx(989e12 * 0.30 / (2 * 109.5e6 * 140))
    assert h100.gpu_hours == pytest.approx(n / h100.passages_per_s / 3600)
    # the size formulas against what FAISS really serialises (small n: centroids dominate less
    # for flat kinds; ivfpq within 10% once the codes outweigh the codebooks)
    x = np.random.default_rng(0).standard_normal((4000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for kind, spec in (("ivf", AnnSpec("ivf", nlist=16)), ("hnsw", AnnSpec("hnsw", m=16)),
                       ("ivfpq", AnnSpec("ivfpq", nlist=16, pq_m=16, train_size=4000))):
        real = index_bytes(build(x, spec))
        assert ann_bytes(kind, 4000, 64, nlist=16, m=16, pq_m=16) == pytest.approx(real, rel=0.1)

    monkeypatch.setenv("COLUMNS", "250")
    assert cli_main(["plan", "--config", str(LLAMA_JOB), "--passages", str(n)]) == 0
    out = capsys.readouterr().out
    assert "32.3 GB" in out and "ivfpq (index.kind)" in out and "passages/s/GPU" in out
    assert cli_main(["plan"]) == 2
    assert "--passages" in capsys.readouterr().err
