"""SQuAD v1/v2 JSON: passages = the article's paragraphs, gold = the question's paragraph."""

from __future__ import annotations

from scarlet_ray.datasets.base import Converted, instruction_for, load_json, need, truncate_words
from scarlet_ray.records import Passage, RecordError, Sample


def read_squad(path: str, limit: int | None = None, passage_words: int | None = None,
               task: str = "nq", max_passages: int | None = 10) -> Converted:
    """Unanswerable v2 questions are reported as skipped (they have no ground truth)."""
    out = Converted("samples")
    data = need(load_json(path), "data", str(path), list)
    for ai, art in enumerate(data):
        asrc = f"{path}:data.{ai}"
        try:
            paras = need(art, "paragraphs", asrc, list)
            contexts = [need(para, "context", f"{asrc}.paragraphs.{pi}", str)
                        for pi, para in enumerate(paras)]
        except RecordError as err:  # this article is quarantined, the others convert
            out.skipped.append(err)
            continue
        for pi, para in enumerate(paras):
            window = _window(len(paras), pi, max_passages)
            passages = [Passage(id=f"p{j}", title=str(art.get("title") or ""),
                                text=truncate_words(contexts[j], passage_words))
                        for j in window]
            qas = para.get("qas") or []
            if not isinstance(qas, list):
                out.skipped.append(RecordError(f"{asrc}.paragraphs.{pi}", "qas",
                                               "expected a list"))
                continue
            for qi, qa in enumerate(qas):
                if limit is not None and len(out.records) >= limit:
                    return out
                src = f"{asrc}.paragraphs.{pi}.qas.{qi}"
                try:
                    qid = need(qa, "id", src, str)
                    answers = [a["text"] for a in qa.get("answers") or []
                               if isinstance(a, dict) and isinstance(a.get("text"), str)
                               and a["text"]]
                    if qa.get("is_impossible") or not answers:
                        raise RecordError(src, "answers", "unanswerable question", qid)
                    out.add([Sample(
                        id=f"squad-{qid}", task=task, instruction=instruction_for(task),
                        input=need(qa, "question", src, str), output=answers[0],
                        answers=list(dict.fromkeys(answers)), passages=passages,
                        gold_passage_ids=[f"p{pi}"],
                    )], src)
                except RecordError as err:
                    out.skipped.append(err)
                except (ValueError, TypeError) as err:  # an empty text, a non-list answers
                    out.skipped.append(RecordError(src, "(record)", " ".join(str(err).split())))
    return out


def _window(n: int, center: int, size: int | None) -> list[int]:
    """Up to ``size`` paragraph indices around ``center`` (the gold one always included)."""
    if not size or n <= size:
        return list(range(n))
    start = max(0, min(center - size // 2, n - size))
    return list(range(start, start + size))
