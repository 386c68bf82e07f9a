"""HotpotQA distractor setting: 10 paragraphs per question, gold = supporting-fact titles."""

from __future__ import annotations

from typing import Any

from scarlet_ray.datasets.base import (
    Converted,
    array_items,
    convert_each,
    instruction_for,
    load_json,
    need,
    split_words,
    truncate_words,
)
from scarlet_ray.records import CorpusPassage, Passage, RecordError, Sample


def read_hotpotqa(path: str, limit: int | None = None, passage_words: int | None = None,
                  task: str = "hotpotqa") -> Converted:
    def one(q: Any, src: str) -> list[Sample]:
        qid = str(need(q, "_id", src, (str, int)))
        context = need(q, "context", src, list)
        sf = need(q, "supporting_facts", src, list)
        gold_titles = {f[0] for f in sf if isinstance(f, list) and f}
        passages, gold = [], []
        for j, item in enumerate(context):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
                raise RecordError(src, f"context.{j}", "expected [title, [sentences]]", qid)
            title, sents = item
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

    return convert_each(Converted("samples"), array_items(path, "questions"), limit, one)


def read_hotpotqa_corpus(path: str, limit: int | None = None,
                         passage_words: int | None = None) -> Converted:
    out = Converted("corpus")
    data = load_json(path)
    if not isinstance(data, dict):
        raise RecordError(str(path), "(file)", "expected a JSON object {title: [sentences]}")
    for i, (title, sents) in enumerate(data.items()):
        if limit is not None and len(out.records) >= limit:
            break
        text = "".join(sents).strip() if isinstance(sents, list) else str(sents)
        for k, chunk in enumerate(split_words(text, passage_words)):
            out.records.append(CorpusPassage(id=f"hotpot-{i}-{k}", title=title, text=chunk))
    return out
