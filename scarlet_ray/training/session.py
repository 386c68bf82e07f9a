"""Where the training loop reports metrics and checkpoints, and where it resumes from.

Ray Train workers use ``scarlet_ray.distributed.train.RaySession``; a direct call of the loop
uses :class:`LocalSession`, which keeps checkpoints in a folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist


class Session(Protocol):
    """Where metrics and checkpoints go, and where the last checkpoint comes from."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None: ...

    def latest_checkpoint(self) -> contextlib.AbstractContextManager[str | None]: ...

    def device(self, use_gpu: bool) -> torch.device: ...


class LocalSession:
    """Checkpoints as ``DIR/checkpoint_<step>`` folders; the newest one resumes."""

    def __init__(self, checkpoint_dir: str | Path, keep: int = 2):
        self.root = Path(checkpoint_dir)
        self.keep = keep
        self.reports: list[dict[str, Any]] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        """Every rank's files are merged into one folder (DeepSpeed writes per-rank shards),
        which then replaces the destination atomically; ``root`` must be shared by the ranks."""
        self.reports.append(dict(metrics))
        if checkpoint_dir is None and not metrics.get("final"):
            return  # metrics only (the same on every rank)
        multi = dist.is_initialized() and dist.get_world_size() > 1
        rank = dist.get_rank() if dist.is_initialized() else 0
        name = "final" if metrics.get("final") else f"checkpoint_{int(metrics['step']):08d}"
        dest = self.root / name
        tmp = dest.with_name(dest.name + ".tmp")
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if multi:
            dist.barrier()
        if checkpoint_dir is not None:
            shutil.copytree(checkpoint_dir, tmp, dirs_exist_ok=True)
        if multi:
            dist.barrier()
        if rank == 0:
            if any(tmp.iterdir()):
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(tmp, dest)
            else:
                tmp.rmdir()
            for old in sorted(self.root.glob("checkpoint_*[0-9]"))[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        if multi:
            dist.barrier()

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        if (self.root / "final").is_dir():
            yield str(self.root / "final")
            return
        found = sorted(self.root.glob("checkpoint_*[0-9]")) if self.root.is_dir() else []
        yield str(found[-1]) if found else None

    def device(self, use_gpu: bool) -> torch.device:
        if use_gpu:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
