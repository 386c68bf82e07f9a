"""DPR training JSON (positive / negative / hard-negative contexts) and psgs_w100 TSV."""

from __future__ import annotations

import csv
from collections.abc import Collection
from typing import Any

from scarlet_ray.datasets.base import (
    Converted,
    convert_each,
    instruction_for,
    iter_indexed_records,
    need,
    split_words,
    truncate_words,
)
from scarlet_ray.records import CorpusPassage, Passage, RecordError, Sample


def read_dpr(path: str, limit: int | None = None, passage_words: int | None = None,
             task: str = "nq", max_passages: int | None = 10, *,
             select: Collection[int] | None = None) -> Converted:
    """Passages = positives, then hard negatives, then negatives, up to ``max_passages``.

    Ids name the question's index in the file, so a sampled read (``select``) keeps them."""
    def one(item: tuple[int, Any], src: str) -> list[Sample]:
        i, q = item
        answers = [a for a in need(q, "answers", src, list) if isinstance(a, str)]
        if not answers:
            raise RecordError(src, "answers", "no answer")
        pos = need(q, "positive_ctxs", src, list)
        if not pos:
            raise RecordError(src, "positive_ctxs", "no positive passage")
        ctxs = [(c, True) for c in pos]
        for key in ("hard_negative_ctxs", "negative_ctxs"):
            neg = q.get(key) or []
            if not isinstance(neg, list):
                raise RecordError(src, key, f"expected a list, got {type(neg).__name__}")
            ctxs += [(c, False) for c in neg]
        if max_passages:
            ctxs = ctxs[: max(max_passages, len(pos))]
        passages, gold = [], []
        for j, (c, is_pos) in enumerate(ctxs):
            pid = f"p{j}"
            text = need(c, "text", f"{src}.ctx{j}", str)  # also checks that c is an object
            passages.append(Passage(id=pid, title=str(c.get("title") or ""),
                                    text=truncate_words(text, passage_words)))
            if is_pos:
                gold.append(pid)
        return [Sample(
            id=f"dpr-{i}", task=task, instruction=instruction_for(task),
            input=need(q, "question", src, str), output=answers[0], answers=answers,
            passages=passages, gold_passage_ids=gold,
            meta={"dataset": q.get("dataset", "")},
        )]

    items = ((src, (i, q))
             for i, src, q in iter_indexed_records(path, "questions", select=select))
    return convert_each(Converted("samples"), items, limit, one)


def read_dpr_tsv_corpus(path: str, limit: int | None = None,
                        passage_words: int | None = None) -> Converted:
    out = Converted("corpus")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for lineno, row in enumerate(reader, start=1):
            if lineno == 1 and row[:1] == ["id"]:
                continue
            if limit is not None and len(out.records) >= limit:
                break
            src = f"{path}:{lineno}"
            if len(row) < 3:
                out.skipped.append(RecordError(src, "(line)", "expected id<TAB>text<TAB>title"))
                continue
            try:
                out.add([CorpusPassage(id=row[0] if k == 0 else f"{row[0]}-{k}", title=row[2],
                                       text=chunk)
                         for k, chunk in enumerate(split_words(row[1], passage_words))], src)
            except ValueError as err:  # an empty id or text
                out.skipped.append(RecordError(src, "(line)", " ".join(str(err).split())))
    return out
