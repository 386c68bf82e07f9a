"""The torch.distributed plumbing of the loop: the process group and a differentiable gather.

Ray Train (or torchrun) makes the group on a cluster; a direct call gets a 1-process group so the
loop has one code path. DeepSpeed caches the group in module globals, so once it has run in a
process the group must outlive the run (:func:`keep_process_group`).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import torch
import torch.distributed as dist


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
    """Every rank's ``x`` concatenated, with gradients flowing back to the rank that made each."""
    return _GatherWithGrad.apply(x)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_GROUP_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
_KEEP_GROUP = False  # set once DeepSpeed has wrapped the group in this process


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


def keep_process_group() -> None:
    """Mark the group as owned by DeepSpeed for the rest of the process (see module doc)."""
    global _KEEP_GROUP
    _KEEP_GROUP = True


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
