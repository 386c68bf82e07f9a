"""Training on Ray Train with 2 CPU workers over gloo: DeepSpeed ZeRO-1/2, DDP, equivalence,
resume after a killed worker, export, bad input.

One tiny config-built BERT (dropout off, fp32) and 48 synthetic examples; 12 optimizer steps per
run (batch 8, 2 epochs). Ray runs are shared between tests through module fixtures so the file
starts only four trainers.

Tolerance of the loss-curve comparisons: 1e-5 absolute on losses of about 3. All runs are fp32
with dropout off, so the only differences are floating-point summation order (two half-batch
gradients all-reduced vs one full-batch backward; ZeRO-1 vs ZeRO-2 bucketing; DeepSpeed's vs
torch's clipping). float32 rounds at ~1.2e-7 relative, i.e. ~4e-7 on a loss of 3; the measured
gap over 12 steps is < 1e-6. 1e-5 leaves 10x headroom yet is ~1000x smaller than a real bug
would cause (a missing all-gather changes the in-batch candidates and the first loss by ~0.7;
a wrong gradient average or a skipped batch changes later losses by >1e-3).
"""

from __future__ import annotations

import json
import os

import pytest
from training_helpers import make_examples, make_tiny_encoder

from scarlet_ray.config import load_config

pytestmark = [pytest.mark.slow]

TOL = 1e-5
COMMON = ["training.batch_size=8", "training.lr=1e-3", "training.epochs=2",
          "training.checkpoint_every=4", "training.temperature=0.1", "training.loss=infonce",
          "training.log_every=100"]


def falls(history: list[dict]) -> bool:
    losses = [h["loss"] for h in history]
    return sum(losses[-3:]) / 3 < 0.93 * sum(losses[:3]) / 3


def assert_same_curve(a: list[dict], b: list[dict]) -> None:
    assert [h["step"] for h in a] == [h["step"] for h in b]
    gaps = [abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True)]
    assert max(gaps) < TOL, gaps


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return {"root": root, "model": make_tiny_encoder(root / "tiny"),
            "data": make_examples(root / "train.jsonl")}


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def one_worker_direct(assets):
    """1 process, global batch 8, DeepSpeed ZeRO-1, run directly (no Ray)."""
    from scarlet_ray.training.loop import train_loop

    cfg = load_config(None, [*COMMON, "training.zero_stage=1"])
    return train_loop({"training": cfg.training.model_dump(), "model": str(assets["model"]),
                       "train": str(assets["data"]),
                       "checkpoint_dir": str(assets["root"] / "direct-ckpt")})


@pytest.fixture(scope="module")
def two_workers_zero1(assets, ray_cluster):
    from scarlet_ray.distributed.train import run_training

    cfg = load_config(None, [*COMMON, "training.zero_stage=1", "training.num_workers=2",
                             f"models.retriever={assets['model']}"])
    return run_training(cfg, assets["data"], assets["root"] / "zero1")


def test_direct_run_finishes_and_loss_falls(one_worker_direct, assets):
    assert one_worker_direct["optimizer_steps"] == 12 and one_worker_direct["world_size"] == 1
    assert falls(one_worker_direct["history"])
    # checkpoints went to the local folder; at most keep_checkpoints remain
    kept = sorted(p.name for p in (assets["root"] / "direct-ckpt").iterdir())
    assert kept == ["checkpoint_00000004", "checkpoint_00000008", "final"]
    assert (assets["root"] / "direct-ckpt" / "final" / "model" / "modules.json").is_file()


@pytest.mark.ray
def test_zero1_two_workers_equal_one_worker(one_worker_direct, two_workers_zero1):
    r = two_workers_zero1
    assert r.metrics["optimizer_steps"] == 12 and r.metrics["world_size"] == 2
    assert falls(r.history)
    assert_same_curve(one_worker_direct["history"], r.history)
    ds = json.loads((r.model_dir / "deepspeed_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 1
    assert ds["train_batch_size"] == 8 and ds["train_micro_batch_size_per_gpu"] == 4


@pytest.mark.ray
def test_zero2_resumes_after_worker_killed(assets, ray_cluster, two_workers_zero1):
    """Rank 1 SIGKILLs itself at step 6 on the first attempt; Ray restarts the group, the loop
    resumes from the step-4 checkpoint and ends with the same steps and the same losses."""
    from scarlet_ray.distributed.train import run_training

    marker = assets["root"] / "killed.marker"
    cfg = load_config(None, [*COMMON, "training.zero_stage=2", "training.num_workers=2",
                             "training.max_failures=1", f"models.retriever={assets['model']}"])
    r = run_training(cfg, assets["data"], assets["root"] / "zero2",
                     fault={"kill_at_step": 6, "rank": 1, "marker": str(marker),
                            "delay_s": 4})
    assert marker.exists(), "the fault was never injected"
    assert r.resumed_from == [4]
    assert r.metrics["optimizer_steps"] == two_workers_zero1.metrics["optimizer_steps"] == 12
    assert falls(r.history)
    # steps 1-4 come from before the kill, 5-12 from the resumed attempt: all match the
    # uninterrupted ZeRO-1 run, so model, optimizer, scheduler and data position were restored
    assert_same_curve(two_workers_zero1.history, r.history)


@pytest.mark.ray
def test_cli_ddp_two_workers_exports_sentence_transformers(assets, ray_cluster, capsys,
                                                          two_workers_zero1):
    from sentence_transformers import SentenceTransformer

    from scarlet_ray.cli import main

    out = assets["root"] / "ddp-model"
    args = ["train", "--train", str(assets["data"]), "--output", str(out)]
    for s in [*COMMON, "training.backend=ddp", "training.num_workers=2",
              f"models.retriever={assets['model']}"]:
        args += ["--set", s]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["optimizer_steps"] == 12
    assert manifest["final_loss"] < manifest["first_loss"]
    history = json.loads((out / "training_log.json").read_text())
    assert falls(history)
    # plain DDP follows the same curve as DeepSpeed ZeRO-1 (same AdamW, schedule, clipping)
    assert_same_curve(two_workers_zero1.history, history)
    model = SentenceTransformer(str(out), device="cpu")
    emb = model.encode(["the river is described here", "tell me about the river"])
    assert emb.shape == (2, 32)
    assert "scarlet train" in capsys.readouterr().out
    # idempotent: a rerun on a finished folder does not train again
    assert main(args) == 0
    assert "already complete" in capsys.readouterr().out


def test_zero3_direct_run_exports_gathered_weights(assets, one_worker_direct, tmp_path):
    """ZeRO-3 partitions parameters; the export must gather them into a loadable folder."""
    from sentence_transformers import SentenceTransformer

    from scarlet_ray.training.loop import train_loop

    cfg = load_config(None, [*COMMON, "training.zero_stage=3"])
    out = train_loop({"training": cfg.training.model_dump(), "model": str(assets["model"]),
                      "train": str(assets["data"]), "checkpoint_dir": str(tmp_path / "ck")})
    assert out["optimizer_steps"] == 12
    # one process: ZeRO-3 does the same maths as ZeRO-1
    assert_same_curve(one_worker_direct["history"], out["history"])
    model = SentenceTransformer(str(tmp_path / "ck" / "final" / "model"), device="cpu")
    assert model.encode(["the river"]).shape == (1, 32)


@pytest.mark.ray
def test_cli_two_workers_validate_and_export_the_best(assets, ray_cluster, capsys):
    """The guard on two Ray workers: both rank the held-out examples, rank 0's number decides
    for both (a split decision would hang the next collective), and the summary says which
    step's weights were exported."""
    from scarlet_ray.cli import main

    out = assets["root"] / "guarded"
    args = ["train", "--train", str(assets["data"]), "--output", str(out)]
    for s in [*COMMON, "training.backend=ddp", "training.num_workers=2", "training.epochs=4",
              "training.validation_fraction=0.25", "training.eval_every=2",
              "training.early_stopping_patience=2", f"models.retriever={assets['model']}"]:
        args += ["--set", s]
    assert main(args) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["validation_examples"] == 12 and m["counts"]["examples"] == 48
    assert m["best_val_ndcg"] >= m["start_val_ndcg"]
    assert m["exported_step"] == m["best_step"]
    history = json.loads((out / "training_log.json").read_text())
    vals = [h["val_ndcg"] for h in history if "val_ndcg" in h]
    assert max(vals) <= m["best_val_ndcg"]
    assert len(history) == m["counts"]["optimizer_steps"] <= 16  # 36 examples / 8 x 4 epochs
    text = capsys.readouterr().out
    assert "held-out nDCG start -> best" in text and "exported weights" in text
