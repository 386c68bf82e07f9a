"""The output directory of a Ray attribution run: atomic Parquet parts, resume, errors, lock.

Why the driver writes and not Ray's ``write_parquet``: a Ray write task that dies mid-file
leaves a partial file under its final name, and a retried task writes a second file with new
rows, so neither "no partial rows" nor "no duplicates" would hold after a kill. Here every
finished block that reaches the driver becomes one part written to a hidden temporary name,
fsynced and renamed: a part exists completely or not at all. The part's name is a hash of its
sorted ids, so the same rows always map to the same file, and the driver also refuses an id it
has already written (counted as ``duplicates_dropped``; expected to stay 0). Attribution rows are
a few hundred bytes, so routing them through the driver costs nothing next to scoring.

Resume reads only the ``id`` column of every committed part. A lock file keeps a second driver
from writing into the same directory at the same time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scarlet_ray.records import (
    RecordError,
    append_errors,
    attribution_schema,
    iter_jsonl_objects,
)


class OutputBusy(ValueError):
    """Another driver holds the output directory (the CLI reports it in one line, exit 2)."""


def part_name(ids: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()
    return f"part-{digest[:24]}.parquet"


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputDir:
    """``DIR/attributions/`` (Parquet parts), ``DIR/errors.jsonl``, ``DIR/.lock``."""

    def __init__(self, directory: str | Path):
        s = str(directory)
        if "://" in s and not s.startswith("file://"):
            raise ValueError(f"{s}: output must be a local or mounted shared path (NFS, FUSE); "
                             "object-store output is not supported by the Ray runner")
        self.root = Path(s.removeprefix("file://")).resolve()
        self.parts = self.root / "attributions"
        self.errors_path = self.root / "errors.jsonl"
        self._lock_fd: int | None = None
        self.written: set[str] = set()
        self.duplicates_dropped = 0

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> OutputDir:
        self.parts.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusy(f"{self.root}: another run is writing this output directory") from None
        self._lock_fd = fd
        for stale in self.parts.glob(".*.tmp"):  # torn writes of a killed driver
            stale.unlink()
        self.written = self.done_ids()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------- resume
    def done_ids(self) -> set[str]:
        """Ids in committed parts; a duplicate across parts is reported, never hidden."""
        seen: set[str] = set()
        for part in sorted(self.parts.glob("part-*.parquet")):
            for rid in pq.read_table(part, columns=["id"]).column("id").to_pylist():
                if rid in seen:
                    raise RecordError(str(part), "id", f"duplicate id {rid!r} in output", rid)
                seen.add(rid)
        return seen

    def failed_ids(self) -> set[str]:
        """Ids an earlier run (local or Ray) recorded as failed in errors.jsonl."""
        out: set[str] = set()
        if self.errors_path.exists():
            for _, e in iter_jsonl_objects(self.errors_path):
                if isinstance(e, dict) and e.get("stage") == "attribute" and isinstance(
                        e.get("id"), str):
                    out.add(e["id"])
        return out

    # ------------------------------------------------------------- writing
    def write_rows(self, rows: list[dict[str, Any]]) -> int:
        """Commit Attribution rows as one atomic part; returns the rows written."""
        fresh = []
        for r in rows:
            if r["id"] in self.written:
                self.duplicates_dropped += 1
                continue
            fresh.append(r)
        if not fresh:
            return 0
        table = pa.Table.from_pylist(fresh, schema=attribution_schema())
        name = part_name(r["id"] for r in fresh)
        tmp = self.parts / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.parts / name)
        _fsync_dir(self.parts)
        self.written.update(r["id"] for r in fresh)
        return len(fresh)

    def append_errors(self, entries: list[RecordError | dict[str, Any]]) -> None:
        if entries:
            append_errors(self.errors_path, entries)

    def compact_errors(self) -> int:
        """Keep one entry per failure and drop ids that have since succeeded; returns the count.

        A rerun retries failed samples; without this, errors.jsonl would list an id twice or
        list an id that is now in the output.
        """
        if not self.errors_path.exists():
            return 0
        seen: set[str] = set()
        keep: list[str] = []
        for line in self.errors_path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError:  # torn last line of a killed driver
                continue
            if isinstance(e, dict) and e.get("id") in self.written:
                continue
            key = json.dumps(e, sort_keys=True)
            if key not in seen:
                seen.add(key)
                keep.append(line)
        tmp = self.errors_path.with_name("errors.jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        os.replace(tmp, self.errors_path)
        return len(keep)
