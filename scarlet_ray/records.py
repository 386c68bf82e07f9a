"""Record types of DESIGN.md section 2, their validation, and JSONL / Parquet IO.

Readers validate at the edge: a bad line either stops the read with ``file:line: field: reason``
or, in quarantine mode, goes to ``errors.jsonl`` with the same information while every good
record is kept. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class RecordError(ValueError):
    """A record failed validation; ``str()`` is ``file:line: field: reason``."""

    def __init__(self, source: str, field_name: str, reason: str, record_id: str | None = None):
        self.source = source
        self.field = field_name
        self.reason = reason
        self.record_id = record_id
        super().__init__(f"{source}: {field_name}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "id": self.record_id, "field": self.field,
                "reason": self.reason}


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)


class Passage(_Record):
    id: str = Field(min_length=1)
    title: str = ""
    text: str = Field(min_length=1)

    def render(self) -> str:
        """The passage as the generator sees it (DESIGN.md section 5)."""
        return f"Title: {self.title}\nText: {self.text}"


class Sample(_Record):
    """The unit of attribution: one task input, its ground truth, and its shared context."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    instruction: str = ""
    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    answers: list[str] = Field(default_factory=list)
    passages: list[Passage] = Field(default_factory=list)
    gold_passage_ids: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("passages")
    @classmethod
    def _unique_passage_ids(cls, v: list[Passage]) -> list[Passage]:
        seen: set[str] = set()
        for p in v:
            if p.id in seen:
                raise ValueError(f"duplicate passage id {p.id!r}")
            seen.add(p.id)
        return v

    @model_validator(mode="after")
    def _gold_in_passages(self) -> Sample:
        if self.passages and self.gold_passage_ids:
            ids = {p.id for p in self.passages}
            missing = [g for g in self.gold_passage_ids if g not in ids]
            if missing:
                raise ValueError(f"gold_passage_ids {missing} not among passage ids")
        return self


class Attribution(_Record):
    """One row of the Attribution Parquet dataset."""

    id: str
    passage_ids: list[str]
    utility: list[float]
    intercept: float
    r2: float | None
    label: list[Literal["pos", "mid", "neg"]]
    n_masks: int
    target: str
    generator: str

    @model_validator(mode="after")
    def _lengths(self) -> Attribution:
        n = len(self.passage_ids)
        if len(self.utility) != n or len(self.label) != n:
            raise ValueError("passage_ids, utility and label must have the same length")
        return self


class TrainingExample(_Record):
    """FlagEmbedding-compatible training line."""

    query: str = Field(min_length=1)
    pos: list[str] = Field(min_length=1)
    neg: list[str] = Field(default_factory=list)
    pos_scores: list[float] = Field(default_factory=list)
    neg_scores: list[float] = Field(default_factory=list)
    prompt: str = ""

    @field_validator("pos", "neg")
    @classmethod
    def _non_empty_texts(cls, v: list[str]) -> list[str]:
        for i, t in enumerate(v):
            if not t.strip():
                raise ValueError(f"text {i} is empty")
        return v


class CorpusPassage(_Record):
    """A passage of a retrieval corpus (``id``, ``title``, ``text``), our corpus JSONL line."""

    id: str = Field(min_length=1)
    title: str = ""
    text: str = Field(min_length=1)


R = TypeVar("R", bound=BaseModel)

ATTRIBUTION_COLUMNS = ["id", "passage_ids", "utility", "intercept", "r2", "label", "n_masks",
                       "target", "generator"]


def _field_of(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(record)"
    msg = first["msg"]
    if first["type"] == "missing":
        msg = "missing required field"
    elif first["type"] == "extra_forbidden":
        msg = "unknown field"
    return loc, msg


def validate_record(model: type[R], obj: Any, source: str) -> R:
    """Validate one decoded JSON object, raising RecordError with its location."""
    if not isinstance(obj, dict):
        raise RecordError(source, "(record)", f"expected a JSON object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        f, msg = _field_of(exc)
        rid = obj.get("id") if isinstance(obj.get("id"), str) else None
        raise RecordError(source, f, msg, rid) from None


@dataclass
class ReadReport(Generic[R]):
    """What a read kept and what it quarantined."""

    records: list[R] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


def iter_jsonl_objects(path: str | Path) -> Iterator[tuple[int, Any | RecordError]]:
    """Yield (line number, decoded object or RecordError) for each non-blank line."""
    p = Path(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise RecordError(str(p), "(file)", exc.strerror or str(exc)) from None
    with fh:
        yield from iter_jsonl_stream(fh, str(p))


def iter_jsonl_stream(fh: Iterable[bytes], label: str) -> Iterator[tuple[int, Any | RecordError]]:
    """The same over any binary line stream (a local file, a pyarrow.fs stream of a URI)."""
    for lineno, raw in enumerate(fh, start=1):
        src = f"{label}:{lineno}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield lineno, RecordError(src, "(line)", f"invalid UTF-8 at byte {exc.start}")
            continue
        if not text.strip():
            continue
        try:
            yield lineno, json.loads(text)
        except json.JSONDecodeError as exc:
            yield lineno, RecordError(src, "(line)",
                                      f"invalid JSON: {exc.msg} at column {exc.colno}")


def read_jsonl(
    path: str | Path,
    model: type[R],
    *,
    on_error: Literal["raise", "quarantine"] = "raise",
    errors_path: str | Path | None = None,
    unique_key: str | None = "id",
    require_passages: bool = True,
) -> ReadReport[R]:
    """Read and validate a JSONL file of ``model`` records.

    ``on_error="quarantine"`` keeps going and writes every bad line to ``errors_path``
    (default: ``errors.jsonl`` beside nothing; the caller decides) with its reason.
    """
    report: ReadReport[R] = ReadReport()
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl_objects(path):
        src = f"{path}:{lineno}"
        try:
            if isinstance(obj, RecordError):
                raise obj
            rec = validate_record(model, obj, src)
            if require_passages and isinstance(rec, Sample) and not rec.passages:
                raise RecordError(src, "passages", "empty: a sample needs at least one passage",
                                  rec.id)
            if unique_key is not None:
                key = getattr(rec, unique_key, None)
                if key is not None:
                    if key in seen:
                        raise RecordError(src, unique_key,
                                          f"duplicate id {key!r} (first at line {seen[key]})", key)
                    seen[key] = lineno
            report.records.append(rec)
        except RecordError as err:
            if on_error == "raise":
                raise
            report.errors.append(err)
    if errors_path is not None and report.errors:
        append_errors(errors_path, report.errors)
    return report


def read_samples(path: str | Path, **kwargs: Any) -> list[Sample]:
    """Strict read of Sample JSONL (raises on the first bad line)."""
    return read_jsonl(path, Sample, **kwargs).records


def append_errors(path: str | Path, errors: Iterable[RecordError | dict[str, Any]]) -> None:
    """Append quarantine entries (source, id, field, reason) to an errors.jsonl file.

    Every entry is redacted: reasons quote URLs and server answers, which may hold credentials.
    """
    from scarlet_ray.redact import redact, redact_obj

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", encoding="utf-8") as fh:
        for e in errors:
            d = e.as_dict() if isinstance(e, RecordError) else e
            fh.write(json.dumps(redact_obj(d), ensure_ascii=False,
                                default=lambda o: redact(str(o))) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def repair_tail(path: str | Path) -> str | None:
    """Cut a torn last line (a crash mid-append) so the next append starts on a fresh line.

    Returns the removed fragment (for errors.jsonl / logs), or None if the file was intact.
    """
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return None
    with open(p, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return None
        fh.seek(0)
        data = fh.read()
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    return data[cut:].decode("utf-8", "replace")


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, Any]],
                append: bool = False) -> int:
    """Write records atomically (tmp + rename) or append them durably; returns the count."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if append:
        repair_tail(p)
    target = p if append else p.with_name(p.name + ".tmp")
    n = 0
    try:
        with open(target, "a" if append else "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(_dumps(r) + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        if not append:
            os.replace(target, p)
    except BaseException:
        if not append:
            target.unlink(missing_ok=True)  # no half-written temporary left behind
        raise
    return n


def _dumps(r: BaseModel | dict[str, Any]) -> str:
    if isinstance(r, BaseModel):
        return r.model_dump_json(exclude_none=False)
    return json.dumps(r, ensure_ascii=False)


def completed_ids(path: str | Path, key: str = "id") -> set[str]:
    """Ids already present in a JSONL output, tolerating a torn last line from a crash."""
    p = Path(path)
    done: set[str] = set()
    if not p.exists():
        return done
    for _, obj in iter_jsonl_objects(p):
        if isinstance(obj, dict) and isinstance(obj.get(key), str):
            done.add(obj[key])
    return done


# ---------------------------------------------------------------- Attribution Parquet IO

def attribution_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()),
        ("passage_ids", pa.list_(pa.string())),
        ("utility", pa.list_(pa.float64())),
        ("intercept", pa.float64()),
        ("r2", pa.float64()),
        ("label", pa.list_(pa.string())),
        ("n_masks", pa.int64()),
        ("target", pa.string()),
        ("generator", pa.string()),
    ])


def write_attribution_part(directory: str | Path, rows: list[Attribution], part: str) -> Path:
    """Write one Parquet part atomically; a crashed write leaves no partial part behind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([r.model_dump() for r in rows], schema=attribution_schema())
    final = d / f"{part}.parquet"
    tmp = d / f".{part}.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def read_attributions(directory: str | Path) -> list[Attribution]:
    """Read every part of an Attribution dataset directory; duplicates are an error."""
    import pyarrow.parquet as pq

    d = Path(directory)
    parts = sorted(d.glob("*.parquet"))
    if not parts:
        raise RecordError(str(d), "(dataset)", "no Parquet parts found")
    out: list[Attribution] = []
    seen: set[str] = set()
    for part in parts:
        for i, row in enumerate(pq.read_table(part).to_pylist()):
            src = f"{part}:{i}"
            rec = validate_record(Attribution, row, src)
            if rec.id in seen:
                raise RecordError(src, "id", f"duplicate id {rec.id!r}", rec.id)
            seen.add(rec.id)
            out.append(rec)
    return out
