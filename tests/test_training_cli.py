"""Fast training checks: bad input through the CLI, the DeepSpeed config builder."""

from __future__ import annotations

import json

import pytest

from scarlet_ray.config import load_config


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    from scarlet_ray.cli import main

    missing = tmp_path / "missing.jsonl"
    assert main(["train", "--train", str(missing), "--output", str(tmp_path / "m")]) == 2
    assert f"{missing}: (file): No such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "pos": ["p"], "neg": ["n"]}) + "\n"
                   + json.dumps({"query": "q2", "pos": [], "neg": ["n"]}) + "\n")
    assert main(["train", "--train", str(bad), "--output", str(tmp_path / "m")]) == 2
    assert f"{bad}:2: pos: empty" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # nothing started


def test_deepspeed_config_is_complete():
    import torch

    from scarlet_ray.training.loop import deepspeed_config, resolve_precision

    tc = load_config(None, ["training.batch_size=32", "training.grad_accum=2",
                            "training.zero_stage=3"]).training
    c = deepspeed_config(tc, world_size=4, total_steps=100, precision="bf16", on_gpu=True)
    assert c["train_batch_size"] == 32 and c["train_micro_batch_size_per_gpu"] == 4
    assert c["gradient_accumulation_steps"] == 2 and c["bf16"]["enabled"]
    assert c["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]
    assert c["scheduler"]["params"]["total_num_steps"] == 100
    assert c["scheduler"]["params"]["warmup_num_steps"] == 10
    assert "auto" not in json.dumps(c)
    assert resolve_precision(tc, torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="not divisible"):
        deepspeed_config(tc, world_size=3, total_steps=10, precision="fp32", on_gpu=False)


