"""FlashRAG formats: corpus ``{"id","contents":"\\"Title\\"\\ntext"}`` and QA ``question/golden_answers``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from scarlet_ray.datasets.base import (
    Converted,
    convert_each,
    instruction_for,
    iter_records,
    need,
    split_words,
)
from scarlet_ray.records import CorpusPassage, RecordError, Sample


def _split_contents(contents: str) -> tuple[str, str]:
    title, sep, text = contents.partition("\n")
    if not sep:
        return "", contents
    return title.strip().strip('"'), text.strip()


def read_flashrag_corpus(path: str, limit: int | None = None,
                         passage_words: int | None = None, *,
                         select: Collection[int] | None = None) -> Converted:
    def one(obj: Any, src: str) -> list[CorpusPassage]:
        pid = str(need(obj, "id", src, (str, int)))
        title, text = _split_contents(need(obj, "contents", src, str))
        return [CorpusPassage(id=pid if k == 0 else f"{pid}-{k}", title=title, text=chunk)
                for k, chunk in enumerate(split_words(text, passage_words))]

    return convert_each(Converted("corpus"), iter_records(path, select=select), limit, one)


def read_flashrag_qa(path: str, limit: int | None = None, passage_words: int | None = None,
                     task: str = "nq", *, select: Collection[int] | None = None) -> Converted:
    """QA seeds without passages: stage 1 builds their shared context."""
    def one(obj: Any, src: str) -> list[Sample]:
        answers = [a for a in need(obj, "golden_answers", src, list) if isinstance(a, str)]
        if not answers:
            raise RecordError(src, "golden_answers", "no answer")
        return [Sample(id=f"flashrag-{need(obj, 'id', src, (str, int))}", task=task,
                       instruction=instruction_for(task), input=need(obj, "question", src, str),
                       output=answers[0], answers=answers, passages=[])]

    return convert_each(Converted("seeds", id_field="id"), iter_records(path, select=select),
                        limit, one)
