"""Tiny data sets the evaluation tests write (imported by the tests, not a test)."""

from __future__ import annotations

import json
from pathlib import Path

DOCS = [
    ("d1", "Paris", "Paris is the capital and largest city of France."),
    ("d2", "Berlin", "Berlin is the capital of Germany and its largest city."),
    ("d3", "Douglas Adams", "Douglas Adams wrote The Hitchhiker's Guide to the Galaxy."),
    ("d4", "Radiohead", "Radiohead released the album OK Computer in 1997."),
    ("d5", "Blur", "Blur released the album Parklife in 1994."),
    ("d6", "Cambridge", "Cambridge is a university city in England."),
]


def write_beir(root: Path, queries: dict[str, str], qrels: dict[str, dict[str, int]],
               split: str = "test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as fh:
        for did, title, text in DOCS:
            fh.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    with open(root / "qrels" / f"{split}.tsv", "w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            for did, s in docs.items():
                fh.write(f"{qid}\t{did}\t{s}\n")
    return root


def write_corpus(path: Path) -> Path:
    with open(path, "w") as fh:
        for did, title, text in DOCS:
            fh.write(json.dumps({"id": did, "title": title, "text": text}) + "\n")
    return path
