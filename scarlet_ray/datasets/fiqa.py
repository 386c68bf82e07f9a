"""FiQA-2018 task 2 (financial opinion QA): the answers are corpus documents.

Two layouts of one folder (or any file inside it):
- BEIR: ``corpus.jsonl`` (_id, title, text), ``queries.jsonl`` (_id, text), ``qrels/<split>.tsv``;
- the original release's TSVs (header line, tab-separated): ``FiQA_train_question_final.tsv``
  (index, qid, question, timestamp), ``FiQA_train_doc_final.tsv`` (index, docid, doc, timestamp)
  and ``FiQA_train_question_doc_final.tsv`` (index, qid, docid); it labels only train questions.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarlet_ray.datasets.base import (
    Converted,
    convert_each,
    instruction_for,
    iter_records,
    need,
    truncate_words,
)
from scarlet_ray.datasets.beir import read_beir_corpus
from scarlet_ray.records import Passage, RecordError, Sample

ORIGINAL = ("FiQA_train_question_final.tsv", "FiQA_train_doc_final.tsv",
            "FiQA_train_question_doc_final.tsv")


@dataclass
class _Set:
    docs: dict[str, str] = field(default_factory=dict)  # doc id -> text
    queries: dict[str, str | RecordError] = field(default_factory=dict)  # error: ambiguous
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # in first-seen order
    qrel_src: dict[str, str] = field(default_factory=dict)  # query id -> its first qrels line
    skipped: list[RecordError] = field(default_factory=list)

    def add_query(self, qid: str, text: str, src: str) -> None:
        """A query id given twice with different texts has no text to trust: its sample is
        quarantined (the first text would otherwise be kept silently)."""
        old = self.queries.get(qid)
        if old is None:
            self.queries[qid] = text
        elif old != text:
            self.queries[qid] = RecordError(src, "qid", f"query {qid!r} repeated with a "
                                            "different text", qid)


def _tsv(path: Path, ncols: int) -> Iterator[tuple[str, list[str] | RecordError]]:
    """(file:line, row) after the header; a row of the wrong width comes as its error."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)
        for row in reader:
            src = f"{path}:{reader.line_num}"
            if not row:
                continue
            yield src, (row if len(row) == ncols else
                        RecordError(src, "(line)", f"expected {ncols} tab-separated columns, "
                                    f"got {len(row)}"))


def _add_qrel(s: _Set, qid: str, did: str, score: int, src: str) -> None:
    s.qrels.setdefault(qid, {})[did] = score
    s.qrel_src.setdefault(qid, src)


def _read_beir_form(d: Path, split: str) -> _Set:
    s = _Set()
    conv = read_beir_corpus(str(d / "corpus.jsonl"))
    s.skipped.extend(conv.skipped)
    s.docs = {p.id: p.text for p in conv.records}  # type: ignore[attr-defined]
    for src, obj in iter_records(d / "queries.jsonl", "queries"):
        try:
            if isinstance(obj, RecordError):
                raise obj
            s.add_query(str(need(obj, "_id", src, (str, int))), need(obj, "text", src, str), src)
        except RecordError as err:
            s.skipped.append(err)
    qrels = d / "qrels" / f"{split}.tsv"
    if not qrels.exists():
        raise RecordError(str(qrels), "(file)", f"no qrels for split {split!r}")
    for src, row in _tsv(qrels, 3):
        if isinstance(row, RecordError):
            s.skipped.append(row)
        elif not row[2].strip().lstrip("-").isdigit():
            s.skipped.append(RecordError(src, "score", f"not an integer: {row[2]!r}", row[0]))
        else:
            _add_qrel(s, row[0], row[1], int(row[2]), src)
    return s


def _read_original_form(d: Path) -> _Set:
    s = _Set()
    questions, docs, pairs = (d / name for name in ORIGINAL)
    for src, row in _tsv(docs, 4):
        if isinstance(row, RecordError):
            s.skipped.append(row)
        elif not row[2].strip():
            s.skipped.append(RecordError(src, "doc", "empty", row[1]))
        elif row[1] in s.docs:
            s.skipped.append(RecordError(src, "docid", f"duplicate doc id {row[1]!r}", row[1]))
        else:
            s.docs[row[1]] = row[2].strip()
    for src, row in _tsv(questions, 4):
        if isinstance(row, RecordError):
            s.skipped.append(row)
        else:
            s.add_query(row[1], row[2], src)
    for src, row in _tsv(pairs, 3):
        if isinstance(row, RecordError):
            s.skipped.append(row)
        else:
            _add_qrel(s, row[1], row[2], 1, src)
    return s


def read_fiqa(path: str, limit: int | None = None, passage_words: int | None = None,
              task: str = "fiqa", split: str | None = None) -> Converted:
    """Questions -> samples: output = the first relevant doc's text, answers = every relevant
    doc's text, passages = those docs (gold). ``split`` defaults to "test" for BEIR and to
    "train", the only labelled split, for the original TSVs. A question without text, without
    a relevant doc, or whose docs are missing from the corpus is quarantined with the reason."""
    d = Path(path)
    d = d if d.is_dir() else d.parent
    if (d / "corpus.jsonl").exists():
        s = _read_beir_form(d, split or "test")
    elif all((d / name).exists() for name in ORIGINAL):
        if split not in (None, "train"):
            raise RecordError(str(d), "split", f"the original FiQA TSVs label only 'train', "
                              f"not {split!r}")
        s = _read_original_form(d)
    else:
        raise RecordError(str(d), "(file)", "neither BEIR corpus.jsonl nor the FiQA TSVs "
                          f"{', '.join(ORIGINAL)}")

    def one(qid: str, src: str) -> list[Sample]:
        text = s.queries.get(qid)
        if isinstance(text, RecordError):
            raise RecordError(src, "query-id", f"{text.reason} (at {text.source})", qid)
        if text is None or not text.strip():
            raise RecordError(src, "query-id", f"query {qid!r} has no text in the queries", qid)
        relevant = [did for did, score in s.qrels[qid].items() if score > 0]
        if not relevant:
            raise RecordError(src, "score", "no relevant document (every score is 0)", qid)
        missing = [did for did in relevant if did not in s.docs]
        if missing:
            raise RecordError(src, "corpus-id", f"docs {missing} are not in the corpus", qid)
        answers = [s.docs[did] for did in relevant]
        passages = [Passage(id=did, text=truncate_words(s.docs[did], passage_words))
                    for did in relevant]
        return [Sample(id=f"fiqa-{qid}", task=task, instruction=instruction_for(task),
                       input=text.strip(), output=answers[0],
                       answers=list(dict.fromkeys(answers)), passages=passages,
                       gold_passage_ids=relevant)]

    out = Converted("samples", id_field="query-id", skipped=s.skipped)
    items: Iterator[tuple[str, Any]] = ((s.qrel_src[q], q) for q in s.qrels)
    return convert_each(out, items, limit, one)
