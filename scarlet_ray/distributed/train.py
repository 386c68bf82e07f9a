"""Stage 5 on Ray Train: ``TorchTrainer`` around :func:`scarlet_ray.training.loop.train_loop`.

Ray supplies the workers, the process group (gloo on CPU, nccl on GPU), checkpoint persistence
to ``storage_path`` (local disk or shared storage such as s3:// or NFS on a cluster) and restarts
after a lost worker (``FailureConfig``); the loop resumes from ``ray.train.get_checkpoint()``.
Rerunning with the same output directory and run name resumes an interrupted run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarlet_ray.config import Config
from scarlet_ray.distributed.cluster import connect, shutdown


class RaySession:
    """The loop's Session on a Ray Train worker."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        import ray.train

        ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        name = None
        if ckpt is not None or metrics.get("final"):
            name = "final" if metrics.get("final") else f"checkpoint_step_{metrics['step']:08d}"
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield d

    def device(self, use_gpu: bool) -> Any:
        import ray.train.torch
        import torch

        return ray.train.torch.get_device() if use_gpu else torch.device("cpu")


def _worker(config: dict[str, Any]) -> None:
    from scarlet_ray.training.loop import train_loop

    if not config["training"].get("use_gpu"):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before deepspeed is first imported
    train_loop(config, RaySession())


@dataclass
class TrainResult:
    model_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    resumed_from: list[int]
    storage_path: str
    run_name: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_name_for(cfg: Config) -> str:
    return cfg.training.run_name or f"scarlet-train-{cfg.name}"


def run_training(cfg: Config, train_path: str | Path, output: str | Path, *,
                 model: str | None = None, fault: dict[str, Any] | None = None,
                 hooks: list[Any] | None = None,
                 extra_resources: dict[str, float] | None = None) -> TrainResult:
    """Train with ``cfg.training`` on Ray and export a sentence-transformers folder to ``output``.

    ``hooks``: step hooks (``training.hooks``) run on every worker; ``extra_resources``: more
    resources per worker beside ``CPU`` (e.g. ``{"accelerator_type:L40S": 0.001}`` pins the
    workers to a node type without asking for CUDA, as the cluster rehearsal does).
    """

    tc = cfg.training
    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = tc.storage_path or str(out / "ray_results")
    name = run_name_for(cfg)
    info = connect(cfg.ray)
    try:
        return _fit(cfg, train_path, out, storage, name, model, fault, hooks or [],
                    extra_resources or {})
    finally:
        shutdown(info)  # only a cluster this call started; never a shared one


def _fit(cfg: Config, train_path: str | Path, out: Path, storage: str, name: str,
         model: str | None, fault: dict[str, Any] | None, hooks: list[Any],
         extra_resources: dict[str, float]) -> TrainResult:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    tc = cfg.training
    loop_config: dict[str, Any] = {
        "training": tc.model_dump(mode="json"),
        "model": model or cfg.models.retriever,
        "train": str(Path(train_path).resolve()),
    }
    if fault:
        loop_config["fault"] = fault
    if hooks:
        loop_config["hooks"] = hooks
    trainer = TorchTrainer(
        _worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu,
                                     resources_per_worker={"CPU": tc.cpus_per_worker,
                                                           **extra_resources}),
        torch_config=TorchConfig(backend="nccl" if tc.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name, storage_path=storage,
            failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints)),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("training finished without a final checkpoint")
    with tempfile.TemporaryDirectory(prefix="scarlet-export-") as tmp:
        final = Path(result.checkpoint.to_directory(tmp))
        state = json.loads((final / "trainer_state.json").read_text())
        src = final / "model"
        if not src.is_dir():
            raise RuntimeError(f"{result.checkpoint.path}: last checkpoint holds no exported model")
        for item in src.iterdir():
            dest = out / item.name
            if item.is_dir():
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(item, dest)
            else:
                shutil.copy2(item, dest)
        ds_cfg = final / "deepspeed_config.json"
        if ds_cfg.is_file():
            shutil.copy2(ds_cfg, out / "deepspeed_config.json")
    (out / "training_log.json").write_text(json.dumps(state["history"], indent=1))
    return TrainResult(model_dir=out, metrics=dict(result.metrics or {}),
                       history=state["history"], resumed_from=state.get("resumed_from", []),
                       storage_path=storage, run_name=name, seconds=seconds)
