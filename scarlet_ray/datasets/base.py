"""Shared pieces of the dataset readers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from scarlet_ray.records import RecordError
from scarlet_ray.synthesis.tasks import get_task

Kind = Literal["samples", "seeds", "corpus"]


@dataclass
class Converted:
    kind: Kind
    records: list[BaseModel] = field(default_factory=list)
    skipped: list[RecordError] = field(default_factory=list)


@dataclass(frozen=True)
class FormatSpec:
    kind: Kind
    reader: Callable[..., Converted]
    description: str


def load_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        with open(p, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{p}:{exc.lineno}", "(file)", f"invalid JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise RecordError(str(p), "(file)", f"invalid UTF-8 at byte {exc.start}") from None


def load_json_or_jsonl(path: str | Path) -> list[tuple[str, Any]]:
    """(source, object) for a JSON array file or a JSONL file."""
    from scarlet_ray.records import iter_jsonl_objects

    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(1024).lstrip()
    if head.startswith(b"["):
        return [(f"{p}:[{i}]", o) for i, o in enumerate(load_json(p))]
    out = []
    for lineno, obj in iter_jsonl_objects(p):
        if isinstance(obj, RecordError):
            raise obj
        out.append((f"{p}:{lineno}", obj))
    return out


def jsonl_items(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(source, object) per JSONL line; a bad line comes as its RecordError, to be skipped."""
    from scarlet_ray.records import iter_jsonl_objects

    for lineno, obj in iter_jsonl_objects(path):
        yield f"{path}:{lineno}", obj


def array_items(path: str | Path, what: str) -> list[tuple[str, Any]]:
    """(source, element) of a JSON array file; anything else is a file-level error."""
    data = load_json(path)
    if not isinstance(data, list):
        raise RecordError(str(path), "(file)", f"expected a JSON array of {what}")
    return [(f"{path}:[{i}]", q) for i, q in enumerate(data)]


def convert_each(out: Converted, items: Iterable[tuple[str, Any]], limit: int | None,
                 one: Callable[[Any, str], Iterable[BaseModel]]) -> Converted:
    """Convert record by record: a bad record lands in ``out.skipped`` with its location (never
    dropped silently) and the others go on; ``limit`` counts converted records."""
    for src, obj in items:
        if limit is not None and len(out.records) >= limit:
            break
        try:
            if isinstance(obj, RecordError):
                raise obj
            out.records.extend(one(obj, src))
        except RecordError as err:
            out.skipped.append(err)
        except ValueError as err:  # pydantic validation of the converted record
            out.skipped.append(RecordError(src, "(record)", str(err)))
    return out


def instruction_for(task: str) -> str:
    return get_task(task).instruction


def truncate_words(text: str, n: int | None) -> str:
    if not n:
        return text
    words = text.split()
    return text if len(words) <= n else " ".join(words[:n])


def split_words(text: str, n: int | None) -> list[str]:
    """Split a text into chunks of at most ``n`` words (the paper's 100-word passages)."""
    if not n:
        return [text]
    words = text.split()
    return [" ".join(words[i : i + n]) for i in range(0, max(len(words), 1), n)] or [text]


def need(obj: dict, key: str, src: str, typ: type | tuple[type, ...]) -> Any:
    """Fetch a required field of a source record, with a located error."""
    if not isinstance(obj, dict):
        raise RecordError(src, "(record)", "expected a JSON object")
    if key not in obj:
        raise RecordError(src, key, "missing required field")
    v = obj[key]
    if not isinstance(v, typ):
        raise RecordError(src, key, f"expected {typ}, got {type(v).__name__}")
    return v
