"""BEIR layout: corpus.jsonl (_id,title,text), queries.jsonl (_id,text), qrels/<split>.tsv."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarlet_ray.datasets.base import Converted, convert_each, iter_records, need, split_words
from scarlet_ray.records import CorpusPassage, RecordError

log = logging.getLogger(__name__)


def _corpus_file(path: str | Path) -> Path:
    p = Path(path)
    return p / "corpus.jsonl" if p.is_dir() else p


def read_beir_corpus(path: str, limit: int | None = None,
                     passage_words: int | None = None) -> Converted:
    def one(obj: Any, src: str) -> list[CorpusPassage]:
        did = str(need(obj, "_id", src, (str, int)))
        text = need(obj, "text", src, str)
        if not text.strip():
            raise RecordError(src, "text", "empty", did)
        return [CorpusPassage(id=did if k == 0 else f"{did}-{k}",
                              title=str(obj.get("title") or ""), text=chunk)
                for k, chunk in enumerate(split_words(text, passage_words))]

    return convert_each(Converted("corpus", id_field="_id"), iter_records(_corpus_file(path)),
                        limit, one)


@dataclass
class BeirSet:
    corpus: dict[str, CorpusPassage]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    # qrels that point nowhere, as "file:line: query-id corpus-id" (see read_beir)
    unknown_docs: list[str] = field(default_factory=list)
    queries_without_text: list[str] = field(default_factory=list)


def read_beir(directory: str | Path, split: str = "test",
              known: Callable[[list[str]], set[str]] | None = None) -> BeirSet:
    """The whole BEIR set; queries are restricted to those with qrels in ``split``.

    ``known`` (ids -> the ones that exist) replaces reading the corpus, for a search in an index
    folder: the returned set's ``corpus`` is then empty.

    A corpus or query id given twice is an error naming both lines: keyed by id, the later
    one would silently replace the first (a duplicated query once moved nDCG@10 from 0.923 to
    0.794). Qrels naming a document missing from the corpus, or a query missing from
    queries.jsonl, are counted and warned about, not refused: real BEIR sets ship such lines
    (ArguAna names a document its corpus lacks, NFCorpus judges queries its queries.jsonl
    lacks), and BEIR's own evaluation keeps the document judged (it caps recall, so metrics
    stay comparable with published ones); a query without text cannot be searched and is left
    out.
    """
    d = Path(directory)
    corpus: dict[str, CorpusPassage] = {}
    if known is None:
        conv = read_beir_corpus(str(d))
        if conv.skipped:
            raise conv.skipped[0]
        corpus = {p.id: p for p in conv.records}  # type: ignore[attr-defined]
    judged: list[tuple[str, str, str]] = []
    qrels_path = d / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise RecordError(str(qrels_path), "(file)", f"no qrels for split {split!r}")
    qrels: dict[str, dict[str, int]] = {}
    qrel_line: dict[str, str] = {}  # query id -> its first qrels line
    with open(qrels_path, encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if lineno == 1 and row and row[0] == "query-id":
                continue
            src = f"{qrels_path}:{lineno}"
            if len(row) != 3:
                raise RecordError(src, "(line)", "expected query-id<TAB>corpus-id<TAB>score")
            try:
                score = int(row[2])
            except ValueError:
                raise RecordError(src, "score", "not an integer") from None
            qid, did = row[0], row[1]
            qrels.setdefault(qid, {})[did] = score
            qrel_line.setdefault(qid, src)
            judged.append((src, qid, did))
    have = known([did for _, _, did in judged]) if known is not None else corpus.keys()
    unknown_docs = [f"{src}: {qid} {did}" for src, qid, did in judged if did not in have]
    queries: dict[str, str] = {}
    first_at: dict[str, str] = {}
    for src, obj in iter_records(d / "queries.jsonl", "queries"):
        if isinstance(obj, RecordError):
            raise obj
        qid = str(need(obj, "_id", src, (str, int)))
        if qid in first_at:
            raise RecordError(src, "_id", f"duplicate query id {qid!r} (first at "
                              f"{first_at[qid]})", qid)
        first_at[qid] = src
        text = need(obj, "text", src, str)
        if qid in qrels:
            queries[qid] = text
    without_text = [f"{qrel_line[q]}: {q}" for q in qrels if q not in queries]
    if unknown_docs:
        log.warning("%s: %d qrels name a document not in the corpus (first %s); they stay "
                    "judged, as in BEIR's evaluation, and cap recall", qrels_path,
                    len(unknown_docs), unknown_docs[0])
    if without_text:
        log.warning("%s: %d queries with qrels are not in queries.jsonl (first %s); they are "
                    "left out of the evaluation", qrels_path, len(without_text), without_text[0])
    return BeirSet(corpus=corpus, queries=queries, qrels=qrels, unknown_docs=unknown_docs,
                   queries_without_text=without_text)
