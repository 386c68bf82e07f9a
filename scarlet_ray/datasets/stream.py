"""Corpus files of any corpus format as one stream of passages (or located errors).

A Wikipedia-scale source (``kilt-wikipedia``) is read page by page and never held in memory; the
other corpus formats are small enough to convert whole. Callers write the stream straight to our
corpus JSONL (``records.write_jsonl`` streams), so one code path serves 1,000 and 30 million
passages.
"""

from __future__ import annotations

from collections.abc import Iterator

from scarlet_ray.errors import UsageError
from scarlet_ray.records import CorpusPassage, RecordError

STREAMING = {"kilt-wikipedia"}
# formats whose reader refuses a repeated id itself (every reader but our plain JSONL)
UNIQUE_IDS = {"kilt-wikipedia", "hotpotqa-corpus", "musique-corpus", "dpr-corpus",
              "flashrag-corpus", "beir", "scifact-corpus", "climate-fever-corpus"}


def corpus_formats() -> list[str]:
    from scarlet_ray.datasets import FORMATS

    return sorted(["jsonl", *(k for k, v in FORMATS.items() if v.kind == "corpus")])


def iter_corpus(fmt: str, path: str, passage_words: int | None = None,
                where: str = "data.corpus_formats") -> Iterator[CorpusPassage | RecordError]:
    """Passages of ``path`` read as ``fmt`` (``jsonl`` = ours: id, title, text), in file order;
    a bad record comes as its RecordError for the caller's errors.jsonl."""
    from scarlet_ray.datasets import FORMATS, convert
    from scarlet_ray.records import iter_jsonl_objects, validate_record

    if fmt == "jsonl":
        for lineno, obj in iter_jsonl_objects(path):
            if isinstance(obj, RecordError):
                yield obj
                continue
            try:
                yield validate_record(CorpusPassage, obj, f"{path}:{lineno}")
            except RecordError as err:
                yield err
        return
    if fmt not in FORMATS or FORMATS[fmt].kind != "corpus":
        raise UsageError(f"{where}: {fmt!r} is not a corpus format (one of {corpus_formats()})")
    if fmt in STREAMING:
        from scarlet_ray.datasets.kilt_wiki import iter_kilt_passages

        errors: list[RecordError] = []
        for passage in iter_kilt_passages(path, passage_words or 100, on_error=errors.append):
            if errors:
                yield from errors
                errors.clear()
            yield passage
        yield from errors
        return
    res = convert(fmt, path, passage_words=passage_words)
    yield from res.skipped
    yield from res.records  # type: ignore[misc]
