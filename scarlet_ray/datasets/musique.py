"""MuSiQue-Ans: 20 paragraphs per question, gold = ``is_supporting``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from scarlet_ray.datasets.base import (
    Converted,
    convert_each,
    instruction_for,
    iter_indexed_records,
    iter_records,
    need,
    split_words,
    truncate_words,
)
from scarlet_ray.records import CorpusPassage, Passage, RecordError, Sample


def read_musique(path: str, limit: int | None = None, passage_words: int | None = None,
                 task: str = "hotpotqa", *, select: Collection[int] | None = None) -> Converted:
    """MuSiQue questions are multi-hop, so they take the HotpotQA-style instruction."""
    def one(q: Any, src: str) -> list[Sample]:
        qid = need(q, "id", src, str)
        if q.get("answerable") is False:
            raise RecordError(src, "answerable", "question is unanswerable", qid)
        passages, gold = [], []
        for j, para in enumerate(need(q, "paragraphs", src, list)):
            psrc = f"{src}.paragraphs.{j}"
            title = need(para, "title", psrc, str)  # also checks that para is an object
            idx = para.get("idx", j)
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise RecordError(psrc, "idx", f"expected an integer, got {type(idx).__name__}",
                                  qid)
            pid = f"p{idx}"
            passages.append(Passage(id=pid, title=title,
                                    text=truncate_words(need(para, "paragraph_text", psrc, str),
                                                        passage_words)))
            if para.get("is_supporting"):
                gold.append(pid)
        answer = need(q, "answer", src, str)
        aliases = q.get("answer_aliases") or []
        if not isinstance(aliases, list):
            raise RecordError(src, "answer_aliases", f"expected a list, got "
                              f"{type(aliases).__name__}", qid)
        aliases = [a for a in aliases if isinstance(a, str)]
        return [Sample(
            id=f"musique-{qid}", task=task, instruction=instruction_for(task),
            input=need(q, "question", src, str), output=answer,
            answers=[answer, *aliases], passages=passages, gold_passage_ids=gold,
        )]

    return convert_each(Converted("samples"), iter_records(path, "questions", select=select),
                        limit, one)


def read_musique_corpus(path: str, limit: int | None = None,
                        passage_words: int | None = None, *,
                        select: Collection[int] | None = None) -> Converted:
    """Passage ids name the record's index in the file, so a sampled read keeps them."""
    def one(item: tuple[int, Any], src: str) -> list[CorpusPassage]:
        i, d = item
        text = need(d, "text", src, str)
        title = need(d, "title", src, str)
        return [CorpusPassage(id=f"musique-{i}-{k}", title=title, text=chunk)
                for k, chunk in enumerate(split_words(text, passage_words))]

    items = ((src, (i, d))
             for i, src, d in iter_indexed_records(path, "{title, text}", select=select))
    return convert_each(Converted("corpus"), items, limit, one)
