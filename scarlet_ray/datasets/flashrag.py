"""FlashRAG formats: corpus ``{"id","contents":"\\"Title\\"\\ntext"}`` and QA ``question/golden_answers``."""

from __future__ import annotations

from scarlet_ray.datasets.base import Converted, instruction_for, need, split_words
from scarlet_ray.records import CorpusPassage, RecordError, Sample, iter_jsonl_objects


def _split_contents(contents: str) -> tuple[str, str]:
    title, sep, text = contents.partition("\n")
    if not sep:
        return "", contents
    return title.strip().strip('"'), text.strip()


def read_flashrag_corpus(path: str, limit: int | None = None,
                         passage_words: int | None = None) -> Converted:
    out = Converted("corpus")
    for lineno, obj in iter_jsonl_objects(path):
        if limit is not None and len(out.records) >= limit:
            break
        src = f"{path}:{lineno}"
        try:
            if isinstance(obj, RecordError):
                raise obj
            pid = str(need(obj, "id", src, (str, int)))
            title, text = _split_contents(need(obj, "contents", src, str))
            for k, chunk in enumerate(split_words(text, passage_words)):
                out.records.append(CorpusPassage(id=pid if k == 0 else f"{pid}-{k}", title=title,
                                                 text=chunk))
        except RecordError as err:
            out.skipped.append(err)
    return out


def read_flashrag_qa(path: str, limit: int | None = None, passage_words: int | None = None,
                     task: str = "nq") -> Converted:
    """QA seeds without passages: stage 1 builds their shared context."""
    out = Converted("seeds")
    for lineno, obj in iter_jsonl_objects(path):
        if limit is not None and len(out.records) >= limit:
            break
        src = f"{path}:{lineno}"
        try:
            if isinstance(obj, RecordError):
                raise obj
            answers = [a for a in need(obj, "golden_answers", src, list) if isinstance(a, str)]
            if not answers:
                raise RecordError(src, "golden_answers", "no answer")
            out.records.append(Sample(
                id=f"flashrag-{need(obj, 'id', src, (str, int))}", task=task,
                instruction=instruction_for(task), input=need(obj, "question", src, str),
                output=answers[0], answers=answers, passages=[],
            ))
        except RecordError as err:
            out.skipped.append(err)
    return out
