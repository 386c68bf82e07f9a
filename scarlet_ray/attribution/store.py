"""``DIR/attributions/``: the Attribution Parquet dataset, written by parts, read for resume.

One writer for both runners. Every batch of finished rows becomes one part written to a hidden
temporary name, fsynced and renamed: a part exists completely or not at all. The part's name is a
hash of its sorted ids, so the same rows always map to the same file, and the store refuses an id
it has already written (counted as ``duplicates_dropped``; expected to stay 0). Why not Ray's
``write_parquet``: a write task that dies mid-file leaves a partial file under its final name and
a retried task writes a second file with new rows, so neither "no partial rows" nor "no
duplicates" would hold after a kill. Rows are a few hundred bytes, so routing them through the
driver costs nothing next to scoring.

Locking the folder is ``stagedir.StageRun``'s job, not this module's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scarlet_ray.records import RecordError, attribution_schema


def part_name(ids: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(ids)).encode("utf-8")).hexdigest()
    return f"part-{digest[:24]}.parquet"


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def local_output(directory: str | Path) -> Path:
    """Stage outputs are POSIX paths (local or mounted shared storage), never object stores
    (one rule, one message: ``stagedir.refuse_object_store``)."""
    from scarlet_ray.stagedir import refuse_object_store

    s = str(directory)
    refuse_object_store(s)
    return Path(s.removeprefix("file://"))


class AttributionStore:
    """Committed parts of one Attribution dataset directory."""

    def __init__(self, parts: str | Path):
        self.parts = Path(parts)
        self.parts.mkdir(parents=True, exist_ok=True)
        for stale in self.parts.glob(".*.tmp"):  # torn writes of a killed run
            stale.unlink()
        self.written: set[str] = self.done_ids()
        self.duplicates_dropped = 0

    def done_ids(self) -> set[str]:
        """Ids in committed parts; a duplicate across parts is reported, never hidden."""
        seen: set[str] = set()
        for part in sorted(self.parts.glob("*.parquet")):
            for rid in pq.read_table(part, columns=["id"]).column("id").to_pylist():
                if rid in seen:
                    raise RecordError(str(part), "id", f"duplicate id {rid!r} in output", rid)
                seen.add(rid)
        return seen

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
