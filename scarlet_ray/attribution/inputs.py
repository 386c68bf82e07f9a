"""Read Samples from JSONL or Parquet, on a local path or a cloud URI (``s3://``, ``gs://``...).

Validation happens here, at the edge, on the driver: each record is checked with
``records.validate_record`` and a bad one becomes an errors.jsonl entry naming ``file:line``
(Parquet: ``file:row``), the field and the reason, while the good ones go on. What reaches Ray is
each valid sample's canonical JSON (one string per row): small, schema-stable, and decoded once
in the actor.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from scarlet_ray.records import RecordError, Sample, iter_jsonl_stream, validate_record

# Optional Sample fields a Parquet writer may have stored as null.
_NULLABLE = ("instruction", "answers", "gold_passage_ids", "meta")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for a local path or any URI pyarrow knows."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    import os

    return pafs.LocalFileSystem(), os.path.abspath(uri)


@dataclass
class InputRow:
    """A validated sample ready for Ray: id, where it came from, canonical JSON."""

    id: str
    source: str
    sample_json: str


@dataclass
class InputReport:
    rows: list[InputRow] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


def _parquet_files(fs: pafs.FileSystem, path: str) -> list[str]:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(path)
    if info.type == pafs.FileType.Directory:
        sel = pafs.FileSelector(path, recursive=True)
        return sorted(i.path for i in fs.get_file_info(sel)
                      if i.is_file and i.path.endswith(".parquet")
                      and not i.base_name.startswith((".", "_")))
    return [path]


def _iter_parquet(fs: pafs.FileSystem, path: str, label: str) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    files = _parquet_files(fs, path)
    if not files:
        raise RecordError(label, "(dataset)", "no Parquet files found")
    for f in files:
        name = label if f == path else f
        pf = pq.ParquetFile(f, filesystem=fs)
        row = 0
        for batch in pf.iter_batches(batch_size=1024):
            for obj in batch.to_pylist():
                row += 1
                for k in _NULLABLE:
                    if k in obj and obj[k] is None:
                        del obj[k]
                yield f"{name}:{row}", obj


def _iter_jsonl(fs: pafs.FileSystem, path: str, label: str) -> Iterator[tuple[str, Any]]:
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(label)
    with fs.open_input_stream(path, compression="detect") as raw:
        stream = io.BufferedReader(raw)  # type: ignore[arg-type]
        for lineno, obj in iter_jsonl_stream(stream, label):
            yield f"{label}:{lineno}", obj


def is_parquet(uri: str) -> bool:
    base = uri.rstrip("/")
    if base.endswith(".parquet"):
        return True
    fs, path = resolve(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def read_input(uri: str) -> InputReport:
    """Validate every record; quarantine bad ones (with location) instead of stopping."""
    fs, path = resolve(uri)
    it = _iter_parquet(fs, path, uri) if is_parquet(uri) else _iter_jsonl(fs, path, uri)
    report = InputReport()
    seen: dict[str, str] = {}
    for src, obj in it:
        try:
            if isinstance(obj, RecordError):
                raise obj
            s = validate_record(Sample, obj, src)
            if not s.passages:
                raise RecordError(src, "passages", "empty: a sample needs at least one passage",
                                  s.id)
            if s.id in seen:
                raise RecordError(src, "id", f"duplicate id {s.id!r} (first at {seen[s.id]})",
                                  s.id)
            seen[s.id] = src
            report.rows.append(InputRow(s.id, src, s.model_dump_json()))
        except RecordError as err:
            report.errors.append(err)
    return report
