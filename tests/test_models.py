"""Offline models: named defaults resolve, precision is chosen and said, real scoring works."""

from __future__ import annotations

import time

import pytest
import torch

from scarlet_ray.datasets import convert
from scarlet_ray.models.generator import (
    answer_logprob,
    choose_dtype,
    cpu_supports_bf16,
    load_generator,
    prepare_named_generator,
)
from scarlet_ray.models.registry import ModelNotAvailable, named, require_package


def test_choose_dtype_explicit_and_auto():
    cpu = torch.device("cpu")
    assert choose_dtype("float32", cpu) == (torch.float32, "float32 requested")
    dt, reason = choose_dtype("auto", cpu)
    assert dt == (torch.bfloat16 if cpu_supports_bf16() else torch.float32)
    assert reason.startswith("bf16" if dt == torch.bfloat16 else "fp32")


def test_missing_package_says_what_to_install():
    m = named("smollm2-135m-instruct")
    fake = type(m)(name="x", kind="generator", package="not-a-package==1",
                   import_name="not_a_package_xyz", file=None, description="")
    with pytest.raises(ModelNotAvailable, match="not-a-package==1"):
        require_package(fake)


def test_tiny_model_from_config_loads(tiny_llama):
    gen = load_generator(str(tiny_llama), dtype="float32")
    assert gen.dtype == torch.float32 and gen.n_params < 5_000_000
    ids = gen.prompt_ids("Answer.", [], "q?")
    assert ids and gen.answer_ids("yes")


@pytest.mark.slow
def test_conversion_is_cached():
    t0 = time.time()
    path = prepare_named_generator("smollm2-135m-instruct")
    assert (path / "scarlet_prepared.json").exists()
    assert (path / "config.json").exists() and "quantization_config" not in (
        path / "config.json").read_text()
    assert time.time() - t0 < 5  # second call: no reconversion


@pytest.mark.slow
def test_smollm2_gold_passage_raises_answer_logprob(smollm2, shared_data):
    """The real generator, real HotpotQA: the answer is likelier after a gold passage."""
    assert smollm2.dtype == (torch.bfloat16 if cpu_supports_bf16() else torch.float32)
    assert smollm2.n_params > 100_000_000
    samples = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"),
                      limit=12, passage_words=100).records
    wins, diffs = 0, []
    for s in samples:
        by_id = {p.id: p for p in s.passages}
        gold = [by_id[g] for g in s.gold_passage_ids]
        distract = [p for p in s.passages if p.id not in s.gold_passage_ids][:2]
        lp_gold = answer_logprob(smollm2, s.instruction, gold, s.input, s.output)
        lp_dist = answer_logprob(smollm2, s.instruction, distract, s.input, s.output)
        diffs.append(lp_gold - lp_dist)
        wins += lp_gold > lp_dist
    # a 135M model is noisy on multi-hop questions, but gold context must help most of them
    assert wins >= 9, diffs
    assert sum(diffs) / len(diffs) > 1.0, diffs
