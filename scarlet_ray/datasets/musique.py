"""MuSiQue-Ans: 20 paragraphs per question, gold = ``is_supporting``."""

from __future__ import annotations

from scarlet_ray.datasets.base import (
    Converted,
    instruction_for,
    load_json,
    load_json_or_jsonl,
    need,
    split_words,
    truncate_words,
)
from scarlet_ray.records import CorpusPassage, Passage, RecordError, Sample


def read_musique(path: str, limit: int | None = None, passage_words: int | None = None,
                 task: str = "hotpotqa") -> Converted:
    """MuSiQue questions are multi-hop, so they take the HotpotQA-style instruction."""
    out = Converted("samples")
    for src, q in load_json_or_jsonl(path):
        if limit is not None and len(out.records) >= limit:
            break
        try:
            qid = need(q, "id", src, str)
            if q.get("answerable") is False:
                raise RecordError(src, "answerable", "question is unanswerable", qid)
            passages, gold = [], []
            for j, para in enumerate(need(q, "paragraphs", src, list)):
                psrc = f"{src}.paragraphs.{j}"
                pid = f"p{para.get('idx', j)}"
                passages.append(Passage(id=pid, title=need(para, "title", psrc, str),
                                        text=truncate_words(need(para, "paragraph_text", psrc, str),
                                                            passage_words)))
                if para.get("is_supporting"):
                    gold.append(pid)
            answer = need(q, "answer", src, str)
            aliases = [a for a in q.get("answer_aliases", []) if isinstance(a, str)]
            out.records.append(Sample(
                id=f"musique-{qid}", task=task, instruction=instruction_for(task),
                input=need(q, "question", src, str), output=answer,
                answers=[answer, *aliases], passages=passages, gold_passage_ids=gold,
            ))
        except RecordError as err:
            out.skipped.append(err)
        except ValueError as err:
            out.skipped.append(RecordError(src, "(record)", str(err)))
    return out


def read_musique_corpus(path: str, limit: int | None = None,
                        passage_words: int | None = None) -> Converted:
    out = Converted("corpus")
    data = load_json(path)
    if not isinstance(data, list):
        raise RecordError(str(path), "(file)", "expected a JSON array of {title, text}")
    for i, d in enumerate(data):
        if limit is not None and len(out.records) >= limit:
            break
        src = f"{path}:[{i}]"
        try:
            for k, chunk in enumerate(split_words(need(d, "text", src, str), passage_words)):
                out.records.append(CorpusPassage(id=f"musique-{i}-{k}",
                                                 title=need(d, "title", src, str), text=chunk))
        except RecordError as err:
            out.skipped.append(err)
    return out
