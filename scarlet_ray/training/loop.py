"""The per-worker training loop: bi-encoder + contrastive loss under DeepSpeed or DDP.

``train_loop(config, session)`` is a plain function. Ray Train runs it on every worker with a
session that reports through ``ray.train.report`` (``scarlet_ray.distributed.train``); called
directly, it uses :class:`LocalSession`, which keeps checkpoints in a folder. Nothing here imports
ray (house rule: only ``distributed/`` does).

Distributed maths: every worker holds an equal slice of the global batch; the local loss is the
mean over its queries and DeepSpeed / DDP average gradients over workers, so the update is the
gradient of the global-batch mean. For InfoNCE the passages of all workers are gathered with a
differentiable all-gather, so each query sees the same in-batch negatives as in one big batch and
gradients flow back to the worker that encoded each passage.

Checkpoint = model + optimizer + scheduler (DeepSpeed's own ``save_checkpoint``, or one torch file
for DDP) + ``trainer_state.json`` (optimizer step, loss history). Batches are a pure function of
(seed, epoch, step), so a resumed run continues at the next step with the data it would have
seen and ends with the same number of optimizer steps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

from scarlet_ray.config import TrainingConfig
from scarlet_ray.training.data import Batcher, load_examples
from scarlet_ray.training.losses import contrastive_loss

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
DS_TAG = "ds"
DDP_FILE = "ddp_state.pt"
MODEL_SUBDIR = "model"


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


# ----------------------------------------------------------------------------------------------
# configuration helpers


def resolve_precision(tc: TrainingConfig, device: torch.device) -> str:
    """``auto``: bf16 on GPUs that have it, else fp16 on GPU; fp32 on CPU."""
    if tc.precision != "auto":
        return tc.precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def warmup_steps(tc: TrainingConfig, total_steps: int) -> int:
    # DeepSpeed refuses 0 warmup steps; with one step in all, that step warms up
    return max(1, min(math.ceil(tc.warmup_ratio * total_steps), total_steps - 1))


def deepspeed_config(tc: TrainingConfig, *, world_size: int, total_steps: int,
                     precision: str, on_gpu: bool) -> dict[str, Any]:
    """A complete, concrete DeepSpeed config (no "auto" values left for DeepSpeed to guess)."""
    micro = tc.batch_size // (world_size * tc.grad_accum)
    if micro * world_size * tc.grad_accum != tc.batch_size:
        raise ValueError(f"training.batch_size: {tc.batch_size} is not divisible by "
                         f"num_workers x grad_accum = {world_size * tc.grad_accum}")
    zero: dict[str, Any] = {"stage": tc.zero_stage}
    if tc.zero_stage >= 1:
        zero.update(reduce_bucket_size=int(5e7), allgather_bucket_size=int(5e7),
                    overlap_comm=on_gpu, contiguous_gradients=True)
    if tc.zero_stage == 3:
        zero.update(stage3_gather_16bit_weights_on_model_save=True)
    sched_params: dict[str, Any] = {"warmup_min_lr": 0.0, "warmup_max_lr": tc.lr,
                                    "warmup_num_steps": warmup_steps(tc, total_steps),
                                    "warmup_type": "linear"}
    if tc.scheduler == "warmup_decay":
        sched_params["total_num_steps"] = max(total_steps, 1)
    return {
        "train_batch_size": tc.batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": tc.grad_accum,
        "gradient_clipping": tc.grad_clip,
        "optimizer": {"type": "AdamW", "params": {
            "lr": tc.lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": tc.weight_decay,
            # torch's AdamW on CPU: no JIT-compiled op, identical maths to the DDP path
            **({} if on_gpu else {"torch_adam": True})}},
        "scheduler": {"type": "WarmupDecayLR" if tc.scheduler == "warmup_decay" else "WarmupLR",
                      "params": sched_params},
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


# ----------------------------------------------------------------------------------------------
# distributed plumbing


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward all-reduces (sums) the gradient and keeps this rank's slice.

    torch.distributed.nn's all_gather emulates reduce-scatter with all_to_all in backward, which
    gloo does not implement; all_reduce works on every backend.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ws, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(ws)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    return _GatherWithGrad.apply(x)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_GROUP_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")


def ensure_process_group(on_gpu: bool) -> list[str] | None:
    """Use the group Ray Train / torchrun made; else start a 1-process group.

    Returns the environment variables it set (to undo in :func:`release_process_group`), or
    None when the group already existed.
    """
    if dist.is_initialized():
        return None
    defaults = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    added = [k for k in _GROUP_ENV if k not in os.environ]
    for k in added:
        os.environ[k] = defaults[k]
    dist.init_process_group("nccl" if on_gpu else "gloo")
    return added


_KEEP_GROUP = False  # set once DeepSpeed has wrapped the group in this process


def release_process_group(added: list[str] | None) -> None:
    """Tear down a group this module made, so later code in the process sees no leftovers.

    Not after DeepSpeed ran: it caches the world group in module globals (deepspeed.utils.groups)
    and a later ``deepspeed.initialize`` in the same process would use the destroyed one; the
    group then lives as long as the process and the next run reuses it.
    """
    if added is None or _KEEP_GROUP:
        return
    dist.destroy_process_group()
    for k in added:
        os.environ.pop(k, None)


# ----------------------------------------------------------------------------------------------
# the loop


class _Engine:
    """The slice of DeepSpeed / DDP the loop needs: forward, backward, step, save, load."""

    def __init__(self, model: Any, tc: TrainingConfig, *, world_size: int, total_steps: int,
                 device: torch.device):
        self.tc = tc
        self.backend = tc.backend
        self.model = model
        self.precision = resolve_precision(tc, device)
        self.device = device
        if self.backend == "deepspeed":
            import deepspeed

            global _KEEP_GROUP
            _KEEP_GROUP = True
            deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
            self.ds_config = deepspeed_config(tc, world_size=world_size, total_steps=total_steps,
                                              precision=self.precision,
                                              on_gpu=device.type == "cuda")
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
                config=self.ds_config)
            self.module = self.engine.module
        else:
            from deepspeed.runtime.lr_schedules import WarmupDecayLR, WarmupLR
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ds_config = None
            model.to(device)
            self.module = model
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
        self.micro_done = 0

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.backend == "ddp" and self.precision in ("bf16", "fp16") and \
                self.device.type == "cuda":
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                return self.engine(features)["sentence_embedding"].float()
        return self.engine(features)["sentence_embedding"].float()

    def sync_context(self, last_micro: bool) -> contextlib.AbstractContextManager[Any]:
        if self.backend == "ddp" and not last_micro and hasattr(self.engine, "no_sync"):
            return self.engine.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        if self.backend == "deepspeed":
            self.engine.backward(loss)  # DeepSpeed divides by gradient_accumulation_steps
        else:
            (loss / self.tc.grad_accum).backward()

    def step_micro(self) -> None:
        """After each micro-batch; the optimizer steps on the accumulation boundary."""
        self.micro_done += 1
        if self.backend == "deepspeed":
            self.engine.step()
            return
        if self.micro_done % self.tc.grad_accum == 0:
            if self.tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.tc.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def optimizer_steps(self) -> int:
        """The backend's own count (DeepSpeed engine / scheduler), not the loop's counter."""
        if self.backend == "deepspeed":
            return int(self.engine.global_steps)
        return int(self.scheduler.last_batch_iteration) + 1

    def save(self, directory: Path, rank: int) -> None:
        if self.backend == "deepspeed":
            self.engine.save_checkpoint(str(directory), tag=DS_TAG)
        elif rank == 0:
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict()}, directory / DDP_FILE)

    def load(self, directory: Path) -> None:
        if self.backend == "deepspeed":
            if not (directory / DS_TAG).is_dir():
                raise FileNotFoundError(f"{directory}: no DeepSpeed checkpoint ({DS_TAG}/); was "
                                        "it written by the ddp backend?")
            path, _ = self.engine.load_checkpoint(str(directory), tag=DS_TAG,
                                                  load_optimizer_states=True,
                                                  load_lr_scheduler_states=True)
            if path is None:
                raise RuntimeError(f"{directory}: DeepSpeed could not load the checkpoint")
        else:
            f = directory / DDP_FILE
            if not f.is_file():
                raise FileNotFoundError(f"{f}: no DDP checkpoint; was it written by deepspeed?")
            state = torch.load(f, map_location=self.device, weights_only=False)
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])

    def export(self, directory: Path, rank: int) -> None:
        """Save the bi-encoder as a sentence-transformers folder (rank 0 writes)."""
        ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.backend == "deepspeed" and self.tc.zero_stage == 3:
            import deepspeed

            ctx = deepspeed.zero.GatheredParameters(list(self.module.parameters()),
                                                    modifier_rank=None)
        with ctx:
            if rank == 0:
                self.module.save(str(directory))


def _maybe_fault(fault: dict[str, Any] | None, step: int, rank: int) -> None:
    """Fault injection for resume tests: SIGKILL this worker once, at a given step."""
    if not fault or step != int(fault["kill_at_step"]) or rank != int(fault.get("rank", 0)):
        return
    marker = Path(fault["marker"])
    if marker.exists():
        return
    # let the controller register the last reported checkpoint first, as it would have in a real
    # run where steps take seconds (a report still in the worker's queue dies with it)
    time.sleep(float(fault.get("delay_s", 0)))
    marker.write_text(f"killed rank {rank} at step {step} pid {os.getpid()}\n")
    log.warning("fault injection: SIGKILL rank %d at step %d", rank, step)
    os.kill(os.getpid(), signal.SIGKILL)


def _report_finished(session: Session, directory: Path, state: dict[str, Any],
                     rank: int) -> dict[str, Any]:
    """The latest checkpoint is already the final export: hand it on again, train nothing."""
    metrics = dict(state.get("final_metrics", {}))
    with tempfile.TemporaryDirectory(prefix="scarlet-final-") as tmp:
        if rank == 0:
            shutil.copytree(directory, tmp, dirs_exist_ok=True)
        session.report(metrics, tmp if rank == 0 else None)
    return {**metrics, "history": state["history"], "resumed_from": state["resumed_from"]}


def train_loop(config: dict[str, Any], session: Session | None = None) -> dict[str, Any]:
    """Train on ``config["train"]`` starting from ``config["model"]``; return a summary.

    config keys: ``training`` (TrainingConfig fields), ``model`` (encoder ref or folder),
    ``train`` (JSONL path), optional ``checkpoint_dir`` (direct use), ``fault`` (tests).
    """
    tc = TrainingConfig.model_validate(config.get("training", {}))
    if session is None:
        session = LocalSession(config.get("checkpoint_dir") or tempfile.mkdtemp(prefix="ckpt-"))
    device = session.device(tc.use_gpu)
    if device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        # one intra-op thread per CPU the worker was given: oversubscribed OpenMP threads spin
        # and made a tiny model's backward 100x slower on a busy 2-core machine
        torch.set_num_threads(tc.torch_threads or max(1, int(tc.cpus_per_worker)))
    elif device.type == "cuda":
        torch.cuda.set_device(device)
    made_group = ensure_process_group(device.type == "cuda")
    try:
        return _train(config, session, tc, device)
    finally:
        release_process_group(made_group)


def _train(config: dict[str, Any], session: Session, tc: TrainingConfig,
           device: torch.device) -> dict[str, Any]:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(tc.seed)

    from scarlet_ray.models.encoder import load_encoder

    model = load_encoder(str(config["model"]), device=str(device))
    model.max_seq_length = tc.max_seq_len
    examples = load_examples(config["train"])
    batcher = Batcher(examples, global_batch=tc.batch_size, group_size=tc.group_size,
                      world_size=world, rank=rank, grad_accum=tc.grad_accum, seed=tc.seed,
                      query_instruction=tc.query_instruction)
    total = batcher.steps_per_epoch * tc.epochs
    if tc.max_steps is not None:
        total = min(total, tc.max_steps)
    if total < 1:
        raise ValueError("training: no optimizer step fits (fewer examples than batch_size?)")
    eng = _Engine(model, tc, world_size=world, total_steps=total, device=device)

    state: dict[str, Any] = {"step": 0, "history": [], "resumed_from": []}
    with session.latest_checkpoint() as ckpt:
        if ckpt is not None:
            d = Path(ckpt)
            state = json.loads((d / STATE_FILE).read_text())
            if state.get("final"):
                return _report_finished(session, d, state, rank)
            eng.load(d)
            state["resumed_from"] = [*state.get("resumed_from", []), state["step"]]
            log.info("rank %d resumed from step %d (%s)", rank, state["step"], ckpt)
    start = int(state["step"])
    if eng.optimizer_steps() != start:
        raise RuntimeError(f"checkpoint mismatch: backend at step {eng.optimizer_steps()}, "
                           f"trainer state at step {start}")
    eng.engine.train()
    gather = tc.loss == "infonce" and tc.gather_negatives and world > 1
    t_run = time.perf_counter()
    examples_seen = 0
    metrics: dict[str, Any] = {}
    for step in range(start, total):
        _maybe_fault(config.get("fault"), step, rank)
        epoch, in_epoch = divmod(step, batcher.steps_per_epoch)
        t0 = time.perf_counter()
        lr = eng.lr()
        loss_sum = torch.zeros((), dtype=torch.float64)
        mbs = batcher.micro_batches(epoch, in_epoch)
        for k, mb in enumerate(mbs):
            feats = model.preprocess(mb.queries + mb.docs)
            feats = {n: t.to(device) if torch.is_tensor(t) else t for n, t in feats.items()}
            with eng.sync_context(k == len(mbs) - 1):
                emb = eng.forward(feats)
                q, docs = emb[: len(mb.queries)], emb[len(mb.queries) :]
                kw: dict[str, Any] = {}
                if gather:
                    kw = {"extra_docs": gather_with_grad(docs), "doc_offset": rank * docs.shape[0]}
                loss = contrastive_loss(tc.loss, q, docs, tc.temperature, tc.similarity, **kw)
                eng.backward(loss)
            eng.step_micro()
            loss_sum += loss.detach().double().cpu()
        mean_loss = (loss_sum / len(mbs)).to(device)
        if world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        dt = time.perf_counter() - t0
        examples_seen += tc.batch_size
        rec = {"step": step + 1, "epoch": epoch, "loss": float(mean_loss), "lr": lr,
               "examples_per_s": tc.batch_size / dt if dt > 0 else 0.0}
        state["history"].append(rec)
        state["step"] = step + 1
        done = step + 1 == total
        metrics = {**rec, "optimizer_steps": eng.optimizer_steps(),
                   "examples_per_s_avg": examples_seen / (time.perf_counter() - t_run),
                   "attempt": len(state["resumed_from"]), "final": False}
        if (step + 1) % tc.checkpoint_every == 0 and not done:
            with tempfile.TemporaryDirectory(prefix="scarlet-ckpt-") as tmp:
                eng.save(Path(tmp), rank)
                if rank == 0:
                    (Path(tmp) / STATE_FILE).write_text(json.dumps(state))
                session.report(metrics, tmp)
        elif (step + 1) % tc.log_every == 0 and not done:
            session.report(metrics, None)

    # final: the exported sentence-transformers folder plus the whole history, as one checkpoint
    metrics = {**metrics, "final": True, "optimizer_steps": eng.optimizer_steps(),
               "train_examples": len(examples), "dropped_per_epoch": batcher.dropped_per_epoch,
               "world_size": world, "backend": tc.backend, "precision": eng.precision}
    state["final"] = True
    state["final_metrics"] = metrics
    with tempfile.TemporaryDirectory(prefix="scarlet-final-") as tmp:
        eng.export(Path(tmp) / MODEL_SUBDIR, rank)
        if rank == 0:
            (Path(tmp) / STATE_FILE).write_text(json.dumps(state))
            if eng.ds_config is not None:
                (Path(tmp) / "deepspeed_config.json").write_text(json.dumps(eng.ds_config,
                                                                            indent=2))
        session.report(metrics, tmp if rank == 0 else None)
    return {**metrics, "history": state["history"], "resumed_from": state["resumed_from"]}
