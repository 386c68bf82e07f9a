"""Ray Data encoding of index shards: the thin Ray side of ``scarlet_ray.index.build``.

    from_items([{shard}...])  one row per missing shard (the unit of resume)
      -> map_batches(ShardEncoder)  an actor pool; each actor loads the encoder once (GPU on a
                                    cluster), checks its weights against the index's settings,
                                    reads its shard's rows from the passage store, encodes and
                                    writes the fp16 shard + sidecar itself (atomic rename)
      -> the driver streams the sidecars back (progress, dimension)

Actors write into the index folder, so on a cluster it must be on storage every node mounts
(docs/cluster.md). A shard whose actor dies is retried by Ray Data; a shard written twice is
the same bytes under an atomic rename, and a rerun skips every shard with its sidecar.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scarlet_ray.config import Config
from scarlet_ray.distributed.cluster import connect, shutdown

log = logging.getLogger(__name__)


class ShardEncoder:
    """Holds one encoder for its life; encodes whole shards."""

    def __init__(self, cfg_json: str, folder: str, settings: dict[str, Any], n_rows: int,
                 shard_size: int):
        import torch

        from scarlet_ray.evaluation.stages import resolve_device
        from scarlet_ray.index.folder import encoder_settings
        from scarlet_ray.models.encoder import load_encoder

        cfg = Config.model_validate_json(cfg_json)
        ix = cfg.index
        torch.set_num_threads(max(1, int(ix.num_cpus_per_actor)))
        t0 = time.perf_counter()
        device = "cuda" if ix.num_gpus_per_actor > 0 else resolve_device(cfg.models.device)
        self.encoder = load_encoder(cfg.models.retriever, device=device)
        got = encoder_settings(self.encoder, cfg.data.passage_words)
        if got != settings:
            raise ValueError(f"{cfg.models.retriever} on {os.uname().nodename} has other weights "
                             "than the driver's; every node must see the same encoder")
        self.folder, self.n_rows, self.shard_size = Path(folder), n_rows, shard_size
        self.batch_size = ix.batch_size
        log.info("encoder actor pid %d ready in %.1fs", os.getpid(), time.perf_counter() - t0)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from scarlet_ray.index.build import encode_shard

        sides = [encode_shard(self.folder, int(s), self.encoder, self.shard_size, self.n_rows,
                              self.batch_size) for s in batch["shard"]]
        return {k: np.asarray([sd[k] for sd in sides]) for k in ("shard", "rows", "dim",
                                                                  "seconds", "pid")}


def encode_shards(cfg: Config, folder: Path, shards: Sequence[int], n_rows: int,
                  shard_size: int, settings: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Sidecars of ``shards`` as the actors finish them (any order)."""
    import ray

    if not shards:
        return
    ix = cfg.index
    info = connect(cfg.ray)
    if extra is not None:
        extra["cluster"] = info.as_dict()
        extra["actors"] = {"n": ix.num_actors, "num_cpus": ix.num_cpus_per_actor,
                           "num_gpus": ix.num_gpus_per_actor}
    try:
        ds = ray.data.from_items([{"shard": int(s)} for s in shards],
                                 override_num_blocks=len(shards))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            ds = ds.map_batches(
                ShardEncoder,
                fn_constructor_kwargs={"cfg_json": cfg.model_dump_json(), "folder": str(folder),
                                       "settings": settings, "n_rows": n_rows,
                                       "shard_size": shard_size},
                batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(ix.num_actors, len(shards))),
                num_cpus=ix.num_cpus_per_actor, num_gpus=ix.num_gpus_per_actor,
                max_restarts=ix.max_actor_restarts, max_task_retries=ix.max_task_retries)
        try:
            for row in ds.iter_rows():
                yield {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        except Exception as exc:  # a Ray error wraps the actor's own in a traceback
            root = _root_cause(exc)
            if root is exc:
                raise
            raise ValueError(f"index encoder actor: {type(root).__name__}: "
                             f"{str(root).strip().splitlines()[0] if str(root).strip() else ''}"
                             ) from None
    finally:
        shutdown(info)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception under Ray's wrappers (``cause`` or ``__cause__``)."""
    seen = {id(exc)}
    while True:
        nxt = getattr(exc, "cause", None) or exc.__cause__
        if not isinstance(nxt, BaseException) or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt
