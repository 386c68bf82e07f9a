"""Embedding shards of an index folder: ``shards/emb-NNNNN.npy`` (fp16) + ``emb-NNNNN.json``.

Shard ``s`` holds the rows ``[s * shard_size, (s + 1) * shard_size)`` of the passage store, in
row order. fp16 halves disk and page cache against fp32 (a 768-dim KILT-scale corpus is 32 GB
instead of 64); scores are rescored in float64 from these values, so every search ranks on the
same numbers. The ``.npy`` is written under a temporary name and renamed; its sidecar (rows,
dim, sha256) is written after it, so a shard counts as done only when both are there and agree:
a killed encoder leaves no shard that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SHARD_DIR = "shards"


def shard_path(folder: Path, shard: int) -> Path:
    return folder / SHARD_DIR / f"emb-{shard:05d}.npy"


def n_shards(n_rows: int, shard_size: int) -> int:
    return (n_rows + shard_size - 1) // shard_size


def shard_rows(shard: int, n_rows: int, shard_size: int) -> tuple[int, int]:
    start = shard * shard_size
    return start, min(n_rows, start + shard_size)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def write_shard(folder: Path, shard: int, emb: np.ndarray, **info: Any) -> dict[str, Any]:
    """Atomically write one shard (as fp16) and then its sidecar; returns the sidecar."""
    path = shard_path(folder, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(emb, dtype=np.float16)
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: the encoder gave non-finite embeddings")
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    side = {"shard": shard, "rows": int(arr.shape[0]), "dim": int(arr.shape[1]),
            "sha256": _sha(path), **info}
    meta = path.with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp")
    tmp.write_text(json.dumps(side))
    os.replace(tmp, meta)
    return side


def shard_done(folder: Path, shard: int, rows: int, dim: int | None = None) -> bool:
    """The shard and its sidecar are there and agree on size (the cheap resume test)."""
    path = shard_path(folder, shard)
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        side = json.loads(meta.read_text())
    except ValueError:
        return False
    return side.get("rows") == rows and (dim is None or side.get("dim") == dim)


def open_shard(folder: Path, shard: int, rows: int, dim: int, verify: bool = False) -> np.ndarray:
    """The shard memory-mapped (read-only, fp16), checked against the record; one-line errors."""
    path = shard_path(folder, shard)
    if not path.is_file():
        raise ValueError(f"{path}: missing shard (rebuild with scarlet index build --output "
                         f"{folder})")
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: corrupt shard ({str(exc).splitlines()[0][:120]}); delete it "
                         f"and rerun scarlet index build --output {folder}") from None
    if arr.dtype != np.float16 or arr.shape != (rows, dim):
        raise ValueError(f"{path}: holds {arr.dtype} {tuple(arr.shape)}, the index records "
                         f"float16 ({rows}, {dim}); delete it and rerun scarlet index build")
    if verify:
        meta = path.with_suffix(".json")
        try:
            want = json.loads(meta.read_text()).get("sha256")
        except (OSError, ValueError):
            want = None
        if want != _sha(path):
            raise ValueError(f"{path}: corrupt shard (checksum differs from {meta.name}); "
                             f"delete it and rerun scarlet index build --output {folder}")
    return arr


class Shards:
    """All shards of a folder, memory-mapped: rows by number, or shard by shard."""

    def __init__(self, folder: Path, n_rows: int, dim: int, shard_size: int,
                 verify: bool = False):
        self.folder, self.n_rows, self.dim, self.shard_size = folder, n_rows, dim, shard_size
        self.maps = []
        for s in range(n_shards(n_rows, shard_size)):
            a, b = shard_rows(s, n_rows, shard_size)
            self.maps.append(open_shard(folder, s, b - a, dim, verify=verify))

    def __len__(self) -> int:
        return len(self.maps)

    def shard(self, s: int) -> np.ndarray:
        """Shard ``s`` as float32 (a copy: one shard in memory at a time)."""
        return np.asarray(self.maps[s], dtype=np.float32)

    def take(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 vectors of ``rows`` (any order, repeats allowed), read from the maps."""
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(r), self.dim), dtype=np.float32)
        if len(r) == 0:
            return out
        if r.min() < 0 or r.max() >= self.n_rows:
            raise IndexError(f"row out of range 0..{self.n_rows - 1}")
        sh = r // self.shard_size
        for s in np.unique(sh):
            sel = np.nonzero(sh == s)[0]
            out[sel] = self.maps[int(s)][r[sel] - s * self.shard_size]
        return out

