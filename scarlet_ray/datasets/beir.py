"""BEIR layout: corpus.jsonl (_id,title,text), queries.jsonl (_id,text), qrels/<split>.tsv."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scarlet_ray.datasets.base import Converted, convert_each, jsonl_items, need, split_words
from scarlet_ray.records import CorpusPassage, RecordError, iter_jsonl_objects


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

    return convert_each(Converted("corpus"), jsonl_items(_corpus_file(path)), limit, one)


@dataclass
class BeirSet:
    corpus: dict[str, CorpusPassage]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def read_beir(directory: str | Path, split: str = "test") -> BeirSet:
    """The whole BEIR set; queries are restricted to those with qrels in ``split``."""
    d = Path(directory)
    conv = read_beir_corpus(str(d))
    if conv.skipped:
        raise conv.skipped[0]
    corpus = {p.id: p for p in conv.records}  # type: ignore[attr-defined]
    qrels_path = d / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise RecordError(str(qrels_path), "(file)", f"no qrels for split {split!r}")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if lineno == 1 and row and row[0] == "query-id":
                continue
            if len(row) != 3:
                raise RecordError(f"{qrels_path}:{lineno}", "(line)",
                                  "expected query-id<TAB>corpus-id<TAB>score")
            try:
                score = int(row[2])
            except ValueError:
                raise RecordError(f"{qrels_path}:{lineno}", "score", "not an integer") from None
            qrels.setdefault(row[0], {})[row[1]] = score
    queries: dict[str, str] = {}
    qfile = d / "queries.jsonl"
    for lineno, obj in iter_jsonl_objects(qfile):
        src = f"{qfile}:{lineno}"
        if isinstance(obj, RecordError):
            raise obj
        qid = str(need(obj, "_id", src, (str, int)))
        if qid in qrels:
            queries[qid] = need(obj, "text", src, str)
    return BeirSet(corpus=corpus, queries=queries, qrels=qrels)
