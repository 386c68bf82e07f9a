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

One job per module: :mod:`~scarlet_ray.training.session` (reports and checkpoints),
:mod:`~scarlet_ray.training.backends` (DeepSpeed or DDP, one class each),
:mod:`~scarlet_ray.training.backend_config` (precision, warmup, DeepSpeed config),
:mod:`~scarlet_ray.training.process_group` (group setup, differentiable all-gather),
:mod:`~scarlet_ray.training.hooks` (step hooks such as the tests' fault injection); this module is
the loop itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from scarlet_ray.config import TrainingConfig
from scarlet_ray.training.backend_config import deepspeed_config, resolve_precision, warmup_steps
from scarlet_ray.training.backends import DDP_FILE, DS_TAG, make_backend
from scarlet_ray.training.data import Batcher, load_examples
from scarlet_ray.training.hooks import hooks_from_config
from scarlet_ray.training.losses import contrastive_loss
from scarlet_ray.training.process_group import (
    ensure_process_group,
    gather_with_grad,
    release_process_group,
)
from scarlet_ray.training.session import LocalSession, Session
from scarlet_ray.training.validation import BestTracker, split_validation, validation_ndcg

__all__ = ["DDP_FILE", "DS_TAG", "MODEL_SUBDIR", "STATE_FILE", "LocalSession", "Session",
           "deepspeed_config", "resolve_precision", "train_loop", "warmup_steps"]

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
MODEL_SUBDIR = "model"
BEST_SUBDIR = "best"  # in a checkpoint: the best-validating export so far (training.keep_best)


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
    ``train`` (JSONL path), optional ``checkpoint_dir`` (direct use), ``hooks`` (step hooks,
    see :mod:`scarlet_ray.training.hooks`) and ``fault`` (a KillOnceAt's fields, for tests).
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
        with tempfile.TemporaryDirectory(prefix="scarlet-best-") as best_root:
            # rank 0's copy of the best-validating export (training.keep_best)
            return _train(config, session, tc, device, Path(best_root) / MODEL_SUBDIR)
    finally:
        release_process_group(made_group)


def _train(config: dict[str, Any], session: Session, tc: TrainingConfig,
           device: torch.device, best_dir: Path) -> dict[str, Any]:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(tc.seed)

    from scarlet_ray.models.encoder import load_encoder

    model = load_encoder(str(config["model"]), device=str(device))
    model.max_seq_length = tc.max_seq_len
    examples = load_examples(config["train"], require_scores=tc.loss == "utility_kl")
    examples, held_out = split_validation(examples, tc.validation_fraction, tc.seed)
    batcher = Batcher(examples, global_batch=tc.batch_size, group_size=tc.group_size,
                      world_size=world, rank=rank, grad_accum=tc.grad_accum, seed=tc.seed,
                      query_instruction=tc.query_instruction)
    total = batcher.steps_per_epoch * tc.epochs
    if tc.max_steps is not None:
        total = min(total, tc.max_steps)
    if total < 1:
        raise ValueError("training: no optimizer step fits (fewer examples than batch_size?)")
    eng = make_backend(model, tc, world_size=world, total_steps=total, device=device)
    hooks = hooks_from_config(config)

    state: dict[str, Any] = {"step": 0, "history": [], "resumed_from": []}
    with session.latest_checkpoint() as ckpt:
        if ckpt is not None:
            d = Path(ckpt)
            state = json.loads((d / STATE_FILE).read_text())
            if state.get("final"):
                return _report_finished(session, d, state, rank)
            eng.load(d)
            if rank == 0 and (d / BEST_SUBDIR).is_dir():
                shutil.copytree(d / BEST_SUBDIR, best_dir, dirs_exist_ok=True)
            state["resumed_from"] = [*state.get("resumed_from", []), state["step"]]
            log.info("rank %d resumed from step %d (%s)", rank, state["step"], ckpt)
    start = int(state["step"])
    if eng.optimizer_steps() != start:
        raise RuntimeError(f"checkpoint mismatch: backend at step {eng.optimizer_steps()}, "
                           f"trainer state at step {start}")
    tracker = BestTracker.from_state(tc.early_stopping_patience, state.get("validation"))

    def validate(step: int) -> float:
        """Rank the held-out examples' passages; export the weights if they are the best."""
        value = _validate(eng, model, held_out, batcher, tc, device, world)
        if tracker.update(step, value) and tc.keep_best:
            if rank == 0:
                shutil.rmtree(best_dir, ignore_errors=True)
            eng.export(best_dir, rank)
        state["validation"] = tracker.state()
        return value

    if held_out and start == 0:
        validate(0)  # the starting model: training must beat it to be exported
    eng.train()
    gather = tc.loss == "infonce" and tc.gather_negatives and world > 1
    t_run = time.perf_counter()
    examples_seen = 0
    metrics: dict[str, Any] = {}
    for step in range(start, total):
        for hook in hooks:
            hook(step, rank)
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
                if tc.loss == "utility_kl":
                    kw = {"utilities": torch.tensor(mb.scores, dtype=torch.float32,
                                                    device=q.device).view(len(mb.queries), -1),
                          "label_temperature": tc.label_temperature}
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
        done = step + 1 == total
        if held_out and (done or (step + 1) % batcher.steps_per_epoch == 0
                         or (tc.eval_every and (step + 1) % tc.eval_every == 0)):
            rec["val_ndcg"] = validate(step + 1)
            done = done or tracker.should_stop
        state["history"].append(rec)
        state["step"] = step + 1
        metrics = {**rec, "optimizer_steps": eng.optimizer_steps(),
                   "examples_per_s_avg": examples_seen / (time.perf_counter() - t_run),
                   "attempt": len(state["resumed_from"]), "final": False}
        if (step + 1) % tc.checkpoint_every == 0 and not done:
            with tempfile.TemporaryDirectory(prefix="scarlet-ckpt-") as tmp:
                eng.save(Path(tmp), rank)
                if rank == 0:
                    (Path(tmp) / STATE_FILE).write_text(json.dumps(state))
                    if best_dir.is_dir():
                        shutil.copytree(best_dir, Path(tmp) / BEST_SUBDIR)
                session.report(metrics, tmp)
        elif (step + 1) % tc.log_every == 0 and not done:
            session.report(metrics, None)
        if done:
            break

    # final: the exported sentence-transformers folder plus the whole history, as one checkpoint
    metrics = {**metrics, "final": True, "optimizer_steps": eng.optimizer_steps(),
               "train_examples": len(examples), "dropped_per_epoch": batcher.dropped_per_epoch,
               "world_size": world, "backend": tc.backend, "precision": eng.precision}
    use_best = bool(held_out) and tc.keep_best and tracker.best_step != state["step"]
    if held_out:
        metrics.update(validation_examples=len(held_out), best_step=tracker.best_step,
                       best_val_ndcg=tracker.best_value,
                       start_val_ndcg=tracker.history[0]["val_ndcg"],
                       stopped_early=state["step"] < total, exported_step=(
                           tracker.best_step if use_best else state["step"]))
    state["final"] = True
    state["final_metrics"] = metrics
    with tempfile.TemporaryDirectory(prefix="scarlet-final-") as tmp:
        if use_best:
            if rank == 0:
                shutil.copytree(best_dir, Path(tmp) / MODEL_SUBDIR)
        else:
            eng.export(Path(tmp) / MODEL_SUBDIR, rank)
        if rank == 0:
            (Path(tmp) / STATE_FILE).write_text(json.dumps(state))
            eng.write_config(Path(tmp))
        session.report(metrics, tmp if rank == 0 else None)
    return {**metrics, "history": state["history"], "resumed_from": state["resumed_from"]}


def _validate(eng: Any, model: Any, held_out: list[Any], batcher: Batcher, tc: TrainingConfig,
              device: torch.device, world: int) -> float:
    """nDCG of the held-out examples' own passages under the current weights (eval mode, no
    gradients); rank 0's number is broadcast so every rank takes the same branch."""
    eng.engine.eval()

    def encode(texts: list[str]) -> Any:
        feats = model.preprocess(texts)
        feats = {n: t.to(device) if torch.is_tensor(t) else t for n, t in feats.items()}
        with torch.no_grad():
            emb = eng.forward(feats)
        if tc.similarity == "cos":
            emb = torch.nn.functional.normalize(emb, dim=-1)
        return emb.float().cpu().numpy()

    value = validation_ndcg(encode, held_out, batcher.query_text)
    eng.train()
    if world > 1:
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(t, 0)
        value = float(t.item())
    return value
