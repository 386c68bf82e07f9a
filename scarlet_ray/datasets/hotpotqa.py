"""HotpotQA distractor setting: 10 paragraphs per question, gold = supporting-fact titles."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from scarlet_ray.datasets.base import (
    Converted,
    convert_each,
    instruction_for,
    iter_records,
    load_json,
    need,
    split_words,
    truncate_words,
)
from scarlet_ray.records import CorpusPassage, Passage, RecordError, Sample


def read_hotpotqa(path: str, limit: int | None = None, passage_words: int | None = None,
                  task: str = "hotpotqa", *, select: Collection[int] | None = None) -> Converted:
    def one(q: Any, src: str) -> list[Sample]:
        qid = str(need(q, "_id", src, (str, int)))
        context = need(q, "context", src, list)
        sf = need(q, "supporting_facts", src, list)
        gold_titles = {f[0] for f in sf if isinstance(f, list) and f and isinstance(f[0], str)}
        passages, gold = [], []
        for j, item in enumerate(context):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
                raise RecordError(src, f"context.{j}", "expected [title, [sentences]]", qid)
            title, sents = item
            if not isinstance(title, str):
                raise RecordError(src, f"context.{j}.0", "expected a title string, got "
                                  f"{type(title).__name__}", qid)
            _check_sentences(sents, src, f"context.{j}.1", qid)
            pid = f"p{j}"
            text = truncate_words("".join(sents).strip(), passage_words)
            passages.append(Passage(id=pid, title=title, text=text))
            if title in gold_titles:
                gold.append(pid)
        answer = need(q, "answer", src, str)
        return [Sample(id=f"hotpot-{qid}", task=task, instruction=instruction_for(task),
                       input=need(q, "question", src, str), output=answer, answers=[answer],
                       passages=passages, gold_passage_ids=gold,
                       meta={k: q[k] for k in ("type", "level") if k in q})]

    return convert_each(Converted("samples", id_field="_id"),
                        iter_records(path, "questions", select=select), limit, one)


def _check_sentences(sents: list, src: str, where: str, rid: str | None = None) -> None:
    """Every sentence a string: a number or null would otherwise end the whole conversion."""
    for k, sent in enumerate(sents):
        if not isinstance(sent, str):
            raise RecordError(src, f"{where}.{k}",
                              f"expected a sentence string, got {type(sent).__name__}", rid)


def read_hotpotqa_corpus(path: str, limit: int | None = None,
                         passage_words: int | None = None) -> Converted:
    """A JSON object ``{title: [sentences]}`` (so neither array nor JSONL: one object)."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise RecordError(str(path), "(file)", "expected a JSON object {title: [sentences]}")

    def one(item: tuple[int, str, Any], src: str) -> list[CorpusPassage]:
        i, title, sents = item
        if isinstance(sents, list):
            _check_sentences(sents, src, "(sentences)")
            text = "".join(sents).strip()
        elif isinstance(sents, str):
            text = sents
        else:
            raise RecordError(src, "(sentences)", "expected a list of sentences or a text, "
                              f"got {type(sents).__name__}")
        return [CorpusPassage(id=f"hotpot-{i}-{k}", title=title, text=chunk)
                for k, chunk in enumerate(split_words(text, passage_words))]

    items = ((f"{path}:{json.dumps(title, ensure_ascii=False)}", (i, title, sents))
             for i, (title, sents) in enumerate(data.items()))
    return convert_each(Converted("corpus"), items, limit, one)
