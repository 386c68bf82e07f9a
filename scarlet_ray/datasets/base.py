"""Shared pieces of the dataset readers."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel

from scarlet_ray.records import RecordError
from scarlet_ray.tasks import get_task

Kind = Literal["samples", "seeds", "corpus"]


@dataclass
class Converted:
    kind: Kind
    records: list[BaseModel] = field(default_factory=list)
    skipped: list[RecordError] = field(default_factory=list)
    id_field: str = "id"  # the source field a duplicate id is reported under
    first_seen: dict[str, str] = field(default_factory=dict, repr=False)

    def add(self, records: Iterable[BaseModel], src: str) -> None:
        """Keep the records converted from the source record at ``src``, unless one repeats an
        id seen before: ids are unique per file (DESIGN.md 2), and a later duplicate would
        silently replace the first wherever records are keyed by id, so the whole source record
        is quarantined instead, naming where the id first appeared."""
        recs = list(records)
        for r in recs:
            rid = getattr(r, "id", None)
            if rid is not None and rid in self.first_seen:
                self.skipped.append(RecordError(src, self.id_field, f"duplicate id {rid!r} "
                                                f"(first at {self.first_seen[rid]})", rid))
                return
        for r in recs:
            rid = getattr(r, "id", None)
            if rid is not None:
                self.first_seen[rid] = src
        self.records.extend(recs)


@dataclass(frozen=True)
class FormatSpec:
    kind: Kind
    reader: Callable[..., Converted]
    description: str


def load_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        with open(p, encoding="utf-8-sig") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{p}:{exc.lineno}", "(file)", f"invalid JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise RecordError(str(p), "(file)", f"invalid UTF-8 at byte {exc.start}") from None


def _first_char(p: Path) -> bytes:
    """The first non-blank byte of a file (after a UTF-8 byte-order mark), b"" when empty."""
    with open(p, "rb") as fh:
        head = fh.read(4096)
        while head:
            stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip()
            if stripped:
                return stripped[:1]
            head = fh.read(4096)
    return b""


def iter_records(path: str | Path, what: str = "records", *,
                 select: Collection[int] | None = None) -> Iterator[tuple[str, Any]]:
    """(location, object) for each record of a JSON array file or a JSONL file alike.

    Public data sets ship both ways (HotpotQA as one array, or one question a line), so the
    readers share this one sniff of the first non-blank character: ``[`` is a JSON array
    (locations ``file:[i]``), anything else is JSONL (locations ``file:line``; a line that is
    no JSON comes as its RecordError, for ``convert_each`` to quarantine). A file that is one
    JSON object spread over lines is refused as a whole, not reported line by line.

    ``select`` keeps only the records at those 0-based record indices (see
    ``iter_indexed_records``), so a seeded sample of a large JSONL file parses only its picks.
    """
    for _, src, obj in iter_indexed_records(path, what, select=select):
        yield src, obj


def iter_indexed_records(path: str | Path, what: str = "records", *,
                         select: Collection[int] | None = None
                         ) -> Iterator[tuple[int, str, Any]]:
    """(record index, location, object): ``iter_records`` with each record's 0-based index.

    The index of a JSONL record is its rank among the non-blank lines (a line that is no JSON
    counts too: it is a record, just a bad one), the same rule ``count_jsonl_records`` counts
    by, so a seeded pick of indices means the same records in both passes; in a JSON array it
    is the array position. Readers that name records by position (DPR, MuSiQue corpus) take
    their ids from it, so a record keeps its id whether the file is read whole or sampled.
    With ``select``, an unselected JSONL line is skipped before decoding (only the first line
    is always parsed, for the single-object check) and reading stops after the last pick; a
    JSON array is loaded whole either way.
    """
    p = Path(path)
    wanted = None if select is None else frozenset(int(i) for i in select)
    if _first_char(p) == b"[":
        for i, o in enumerate(load_json(p)):
            if wanted is None or i in wanted:
                yield i, f"{p}:[{i}]", o
        return
    if wanted is not None and not wanted:
        return
    last = max(wanted) if wanted is not None else -1
    with _open_binary(p) as fh:
        for idx, (lineno, raw) in enumerate(_record_lines(fh)):
            if wanted is not None and idx > max(last, 0):
                return
            if idx and wanted is not None and idx not in wanted:
                continue
            src = f"{p}:{lineno}"
            obj = _decode_line(raw, src)
            if idx == 0 and isinstance(obj, RecordError) and _is_one_object(p):
                raise RecordError(str(p), "(file)", f"expected a JSON array or JSONL of {what} "
                                  "(one JSON object a line), got a single JSON object")
            if wanted is None or idx in wanted:
                yield idx, src, obj


def count_jsonl_records(path: str | Path) -> int:
    """The number of records of a JSONL file (non-blank lines), by a byte scan: no decoding."""
    with _open_binary(Path(path)) as fh:
        return sum(1 for _ in _record_lines(fh))


def is_json_array(path: str | Path) -> bool:
    """Whether a file is a JSON array (first non-blank character ``[``) rather than JSONL."""
    return _first_char(Path(path)) == b"["


def _open_binary(p: Path) -> BinaryIO:
    try:
        return open(p, "rb")  # noqa: SIM115 - the callers close it (with)
    except OSError as exc:
        raise RecordError(str(p), "(file)", exc.strerror or str(exc)) from None


def _record_lines(fh: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of each non-blank line; a UTF-8 byte-order mark opening the file
    is dropped. Blank = only ASCII whitespace, judged on bytes so that counting needs no
    decoding; a line of other (Unicode) whitespace is a record, reported as invalid JSON."""
    for lineno, raw in enumerate(fh, start=1):
        if lineno == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        if raw.strip():
            yield lineno, raw


def _decode_line(raw: bytes, src: str) -> Any:
    """One JSONL line decoded, or the RecordError saying why not (as ``iter_jsonl_stream``)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RecordError(src, "(line)", f"invalid UTF-8 at byte {exc.start}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return RecordError(src, "(line)", f"invalid JSON: {exc.msg} at column {exc.colno}")


ONE_OBJECT_CHECK_BYTES = 256 * 2**20


def _is_one_object(p: Path) -> bool:
    """Whether the whole file is one JSON object. Asked only when the first line is no JSON;
    a file over 256 MB is taken for JSONL with a bad first line (reported as such) rather than
    parsed whole, so a corrupt line 1 of a multi-GB KILT file costs no memory spike."""
    if p.stat().st_size > ONE_OBJECT_CHECK_BYTES:
        return False
    try:
        return isinstance(load_json(p), dict)
    except RecordError:
        return False


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
            out.add(one(obj, src), src)
        except RecordError as err:
            out.skipped.append(err)
        except ValueError as err:  # pydantic validation of the converted record
            out.skipped.append(RecordError(src, "(record)", " ".join(str(err).split())))
        except (TypeError, AttributeError, KeyError, IndexError) as err:
            # a shape the reader did not check (a number where a list belongs...): this record
            # is quarantined, the conversion of the others goes on
            out.skipped.append(RecordError(src, "(record)",
                                           f"unexpected structure: {type(err).__name__}: {err}"))
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
