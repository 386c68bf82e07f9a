"""The two ways to run the optimizer, one class each: DeepSpeed (ZeRO 0-3) and plain DDP.

The loop talks only to :class:`TrainingBackend` (forward, backward, step, save, load, export);
``training.backend`` picks the class from :data:`BACKENDS`. Both build the same AdamW and the same
warmup schedule classes (DeepSpeed's), so they follow one loss curve.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from scarlet_ray.config import TrainingConfig
from scarlet_ray.training.backend_config import deepspeed_config, resolve_precision, warmup_steps
from scarlet_ray.training.process_group import keep_process_group

DS_TAG = "ds"
DDP_FILE = "ddp_state.pt"


class TrainingBackend(ABC):
    """The slice of DeepSpeed / DDP the loop needs: forward, backward, step, save, load."""

    name = "abstract"

    def __init__(self, model: Any, tc: TrainingConfig, *, world_size: int, total_steps: int,
                 device: torch.device):
        self.tc = tc
        self.precision = resolve_precision(tc, device)
        self.device = device
        self.micro_done = 0
        self.module: Any = model      # the bare SentenceTransformer
        self.engine: Any = model      # what forward runs (DeepSpeed engine, DDP wrapper, model)
        self.optimizer: Any = None
        self.scheduler: Any = None

    def train(self) -> None:
        self.engine.train()

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.engine(features)["sentence_embedding"].float()

    def sync_context(self, last_micro: bool) -> contextlib.AbstractContextManager[Any]:
        """Around a micro-batch's forward/backward: DDP skips the all-reduce until the last."""
        return contextlib.nullcontext()

    @abstractmethod
    def backward(self, loss: torch.Tensor) -> None: ...

    @abstractmethod
    def step_micro(self) -> None:
        """After each micro-batch; the optimizer steps on the accumulation boundary."""

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    @abstractmethod
    def optimizer_steps(self) -> int:
        """The backend's own count (DeepSpeed engine / scheduler), not the loop's counter."""

    @abstractmethod
    def save(self, directory: Path, rank: int) -> None: ...

    @abstractmethod
    def load(self, directory: Path) -> None: ...

    def _full_weights(self) -> contextlib.AbstractContextManager[Any]:
        """Context in which ``self.module`` holds all its weights (ZeRO-3 partitions them)."""
        return contextlib.nullcontext()

    def export(self, directory: Path, rank: int) -> None:
        """Save the bi-encoder as a sentence-transformers folder (rank 0 writes)."""
        with self._full_weights():
            if rank == 0:
                self.module.save(str(directory))

    def write_config(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Write the backend's own resolved config beside the final export, if it has one."""


class DeepSpeedBackend(TrainingBackend):
    name = "deepspeed"

    def __init__(self, model: Any, tc: TrainingConfig, *, world_size: int, total_steps: int,
                 device: torch.device):
        super().__init__(model, tc, world_size=world_size, total_steps=total_steps,
                         device=device)
        import deepspeed

        keep_process_group()
        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
        self.ds_config = deepspeed_config(tc, world_size=world_size, total_steps=total_steps,
                                          precision=self.precision,
                                          on_gpu=device.type == "cuda")
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
            config=self.ds_config)
        self.module = self.engine.module

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)  # DeepSpeed divides by gradient_accumulation_steps

    def step_micro(self) -> None:
        self.micro_done += 1
        self.engine.step()  # DeepSpeed steps the optimizer on the accumulation boundary itself

    def optimizer_steps(self) -> int:
        return int(self.engine.global_steps)

    def save(self, directory: Path, rank: int) -> None:
        self.engine.save_checkpoint(str(directory), tag=DS_TAG)

    def load(self, directory: Path) -> None:
        if not (directory / DS_TAG).is_dir():
            raise FileNotFoundError(f"{directory}: no DeepSpeed checkpoint ({DS_TAG}/); was "
                                    "it written by the ddp backend?")
        path, _ = self.engine.load_checkpoint(str(directory), tag=DS_TAG,
                                              load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if path is None:
            raise RuntimeError(f"{directory}: DeepSpeed could not load the checkpoint")

    def _full_weights(self) -> contextlib.AbstractContextManager[Any]:
        if self.tc.zero_stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.module.parameters()),
                                                 modifier_rank=None)

    def write_config(self, directory: Path) -> None:
        (directory / "deepspeed_config.json").write_text(json.dumps(self.ds_config, indent=2))


class DDPBackend(TrainingBackend):
    name = "ddp"

    def __init__(self, model: Any, tc: TrainingConfig, *, world_size: int, total_steps: int,
                 device: torch.device):
        super().__init__(model, tc, world_size=world_size, total_steps=total_steps,
                         device=device)
        from deepspeed.runtime.lr_schedules import WarmupDecayLR, WarmupLR
        from torch.nn.parallel import DistributedDataParallel as DDP

        model.to(device)
        self.engine = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                          find_unused_parameters=True) if world_size > 1 else model
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=tc.lr,
            betas=(0.9, 0.999), eps=1e-8, weight_decay=tc.weight_decay)
        # the same schedule classes DeepSpeed builds, so both backends follow one lr curve
        kw = dict(warmup_min_lr=0.0, warmup_max_lr=tc.lr,
                  warmup_num_steps=warmup_steps(tc, total_steps), warmup_type="linear")
        self.scheduler = (WarmupDecayLR(self.optimizer, total_num_steps=max(total_steps, 1),
                                        **kw) if tc.scheduler == "warmup_decay"
                          else WarmupLR(self.optimizer, **kw))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.precision in ("bf16", "fp16") and self.device.type == "cuda":
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                return self.engine(features)["sentence_embedding"].float()
        return super().forward(features)

    def sync_context(self, last_micro: bool) -> contextlib.AbstractContextManager[Any]:
        if not last_micro and hasattr(self.engine, "no_sync"):
            return self.engine.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.tc.grad_accum).backward()

    def step_micro(self) -> None:
        self.micro_done += 1
        if self.micro_done % self.tc.grad_accum == 0:
            if self.tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.tc.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)

    def optimizer_steps(self) -> int:
        return int(self.scheduler.last_batch_iteration) + 1

    def save(self, directory: Path, rank: int) -> None:
        if rank == 0:
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict()}, directory / DDP_FILE)

    def load(self, directory: Path) -> None:
        f = directory / DDP_FILE
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no DDP checkpoint; was it written by deepspeed?")
        state = torch.load(f, map_location=self.device, weights_only=False)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


BACKENDS: dict[str, type[TrainingBackend]] = {"deepspeed": DeepSpeedBackend, "ddp": DDPBackend}


def make_backend(model: Any, tc: TrainingConfig, *, world_size: int, total_steps: int,
                 device: torch.device) -> TrainingBackend:
    """The backend named by ``training.backend``, wrapping ``model``."""
    try:
        cls = BACKENDS[tc.backend]
    except KeyError:
        raise ValueError(f"unknown training.backend {tc.backend!r}; known: {sorted(BACKENDS)}"
                         ) from None
    return cls(model, tc, world_size=world_size, total_steps=total_steps, device=device)
