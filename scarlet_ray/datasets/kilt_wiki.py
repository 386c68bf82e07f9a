"""The KILT knowledge source (``kilt_knowledgesource.json``) -> 100-word corpus passages.

The file is JSONL, one Wikipedia page a line (``{"_id", "wikipedia_id", "wikipedia_title",
"text": [paragraphs, the first being the title], "anchors", "categories", "history"}``), about
5.9 million pages and 35 GB: it is streamed page by page and never held in memory.

Passages are cut the paper's way: 100-word windows over the page's words, running across
paragraph ends, with the page title as the passage title. Choices, and why:

- the first paragraph is skipped: it is the title, which every passage already carries;
- ``Section::::Name.`` paragraphs are dropped: they are heading markup, not prose, and would take
  words of the 100-word budget without adding an answer;
- the ``BULLET::::- `` prefix is stripped and the item's text kept: list items hold facts.

Passage ids are ``{wikipedia_id}_{i}`` (i from 0 within the page), so a passage names the page
that KILT's provenance names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from scarlet_ray.datasets.base import Converted, convert_each, iter_records, need
from scarlet_ray.records import CorpusPassage, RecordError, append_errors

SECTION = "Section::::"
BULLET = "BULLET::::-"
ErrorSink = Callable[[RecordError], None]


def page_passages(obj: Any, src: str, passage_words: int = 100) -> list[CorpusPassage]:
    """The passages of one decoded page; a RecordError naming the field if it is malformed."""
    wid = need(obj, "wikipedia_id", src, (str, int))
    wid = str(wid).strip()
    if not wid:
        raise RecordError(src, "wikipedia_id", "empty")
    title = need(obj, "wikipedia_title", src, str)
    paragraphs = need(obj, "text", src, list)
    words: list[str] = []
    for k, para in enumerate(paragraphs[1:], start=1):
        if not isinstance(para, str):
            raise RecordError(src, f"text.{k}", f"expected a paragraph string, got "
                              f"{type(para).__name__}", wid)
        para = para.strip()
        if para.startswith(SECTION):
            continue
        words += para.removeprefix(BULLET).split()
    if not words:
        raise RecordError(src, "text", "no text beyond the title and section headings", wid)
    return [CorpusPassage(id=f"{wid}_{i}", title=title,
                          text=" ".join(words[start : start + passage_words]))
            for i, start in enumerate(range(0, len(words), passage_words))]


def iter_kilt_passages(path: str | Path, passage_words: int = 100,
                       on_error: ErrorSink | None = None, *,
                       select: Collection[int] | None = None) -> Iterator[CorpusPassage]:
    """Stream the passages of a KILT knowledge source, page after page, in file order.

    A bad page (no JSON, a missing field, no text, a wikipedia_id seen before) goes to
    ``on_error`` and the stream goes on; without ``on_error`` it raises. Repeated page ids are
    found in bounded memory (a bitmap over numeric ids, about 8 MB for Wikipedia's).
    """
    if passage_words < 1:
        raise ValueError(f"passage_words must be at least 1, got {passage_words}")
    seen = _SeenIds()
    for src, obj in iter_records(path, "pages", select=select):
        try:
            if isinstance(obj, RecordError):
                raise obj
            passages = page_passages(obj, src, passage_words)
            wid = passages[0].id.rpartition("_")[0]
            if not seen.add(wid):
                raise RecordError(src, "wikipedia_id", f"duplicate wikipedia_id {wid!r}", wid)
        except RecordError as err:
            if on_error is None:
                raise
            on_error(err)
            continue
        yield from passages


def read_kilt_wikipedia(path: str, limit: int | None = None, passage_words: int | None = None,
                        *, select: Collection[int] | None = None) -> Converted:
    """The ``kilt-wikipedia`` format, for small files (it holds every passage): large files go
    through ``write_kilt_corpus``. ``passage_words`` None means the paper's 100, since a whole
    page is no passage."""
    n = passage_words or 100

    def one(obj: Any, src: str) -> list[CorpusPassage]:
        return page_passages(obj, src, n)

    return convert_each(Converted("corpus", id_field="wikipedia_id"),
                        iter_records(path, "pages", select=select), limit, one)


def write_kilt_corpus(src: str | Path, dst_jsonl: str | Path, passage_words: int = 100,
                      on_error: ErrorSink | None = None) -> dict[str, int]:
    """Stream a KILT knowledge source into our corpus JSONL (``id``, ``title``, ``text``).

    Memory stays at one page plus the id bitmap. The output appears whole or not at all
    (written to ``dst.tmp``, renamed at the end). Bad pages go to ``on_error``, or by default
    to ``<dst stem>.errors.jsonl`` beside the output (as ``scarlet data convert`` does).
    Returns ``pages`` (converted), ``passages`` and ``skipped`` counts.
    """
    dst = Path(dst_jsonl)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    errors_path = dst.with_name(dst.stem + ".errors.jsonl")
    pending: list[RecordError] = []
    counts = {"pages": 0, "passages": 0, "skipped": 0}

    def sink(err: RecordError) -> None:
        counts["skipped"] += 1
        if on_error is not None:
            on_error(err)
            return
        pending.append(err)
        if len(pending) >= 1000:
            _flush_errors(errors_path, pending)

    if on_error is None:
        errors_path.unlink(missing_ok=True)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for p in iter_kilt_passages(src, passage_words, sink):
                if p.id.endswith("_0"):
                    counts["pages"] += 1
                fh.write(p.model_dump_json() + "\n")
                counts["passages"] += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _flush_errors(errors_path, pending)
    return counts


def _flush_errors(path: Path, pending: list[RecordError]) -> None:
    if pending:
        append_errors(path, pending)
        pending.clear()


class _SeenIds:
    """Page ids seen so far: numeric ids (all of KILT's) in a growing bitmap, others in a set."""

    BITMAP_LIMIT = 1 << 28  # ids below this take a bit each (32 MB at most)

    def __init__(self) -> None:
        self.bits = bytearray()
        self.other: set[str] = set()

    def add(self, wid: str) -> bool:
        """Record ``wid``; False if it was seen before."""
        numeric = wid.isascii() and wid.isdigit() and str(int(wid)) == wid  # "07" is not 7
        if not numeric or int(wid) >= self.BITMAP_LIMIT:
            if wid in self.other:
                return False
            self.other.add(wid)
            return True
        byte, bit = divmod(int(wid), 8)
        if byte >= len(self.bits):  # grow by doubling, up to the limit
            size = min(max(byte + 1, 2 * len(self.bits)), self.BITMAP_LIMIT // 8)
            self.bits.extend(bytes(size - len(self.bits)))
        if self.bits[byte] >> bit & 1:
            return False
        self.bits[byte] |= 1 << bit
        return True
