"""SciFact (allenai/scifact data release): labelled claims over PubMed abstracts.

``claims_{train,dev,test}.jsonl``: ``{"id", "claim", "evidence": {"<doc_id>": [{"sentences",
"label": "SUPPORT"|"CONTRADICT"}]}, "cited_doc_ids"}``; ``corpus.jsonl``: ``{"doc_id", "title",
"abstract": [sentences], "structured"}``. BEIR's copy (our shared ``scifact/corpus.jsonl``,
fields ``_id, title, text``) drops the claim labels; that corpus is read by the ``beir`` format,
and ``scifact`` accepts it as the passages source too (same doc ids, abstract already joined).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scarlet_ray.datasets.base import (
    Converted,
    convert_each,
    instruction_for,
    iter_records,
    need,
    split_words,
    truncate_words,
)
from scarlet_ray.records import CorpusPassage, Passage, RecordError, Sample

# SciFact's rationale labels -> the labels the paper scores (Table 2, label accuracy)
LABELS = {"SUPPORT": "SUPPORTS", "CONTRADICT": "REFUTES"}


def _doc(obj: Any, src: str) -> CorpusPassage:
    """One abstract, in the original form (doc_id, abstract sentences) or BEIR's (_id, text)."""
    if isinstance(obj, dict) and "doc_id" not in obj and "_id" in obj:
        did = str(need(obj, "_id", src, (str, int)))
        text = need(obj, "text", src, str)
    else:
        did = str(need(obj, "doc_id", src, (str, int)))
        sents = need(obj, "abstract", src, list)
        for k, s in enumerate(sents):
            if not isinstance(s, str):
                raise RecordError(src, f"abstract.{k}", "expected a sentence string, got "
                                  f"{type(s).__name__}", did)
        text = " ".join(s.strip() for s in sents)
    if not text.strip():
        raise RecordError(src, "abstract", "empty abstract", did)
    return CorpusPassage(id=did, title=str(obj.get("title") or ""), text=text.strip())


def read_scifact_corpus(path: str, limit: int | None = None,
                        passage_words: int | None = None) -> Converted:
    """The abstracts as corpus passages (id = str(doc_id), text = sentences joined)."""
    def one(obj: Any, src: str) -> list[CorpusPassage]:
        d = _doc(obj, src)
        return [CorpusPassage(id=d.id if k == 0 else f"{d.id}-{k}", title=d.title, text=chunk)
                for k, chunk in enumerate(split_words(d.text, passage_words))]

    return convert_each(Converted("corpus", id_field="doc_id"),
                        iter_records(_corpus_file(path), "abstracts"), limit, one)


def _corpus_file(path: str | Path) -> Path:
    p = Path(path)
    return p / "corpus.jsonl" if p.is_dir() else p


def _load_corpus(path: Path, skipped: list[RecordError]) -> dict[str, CorpusPassage]:
    """Every abstract by doc id; a bad or repeated one is reported, and a claim citing it is
    then quarantined as naming a missing doc (never paired with a guessed text)."""
    conv = read_scifact_corpus(str(path))
    skipped.extend(conv.skipped)
    return {d.id: d for d in conv.records}  # type: ignore[attr-defined]


def read_scifact(path: str, limit: int | None = None, passage_words: int | None = None,
                 task: str = "scifact", corpus: str | None = None) -> Converted:
    """Claims -> samples: output SUPPORTS/REFUTES, passages = evidence then cited abstracts,
    gold = the evidence abstracts. ``corpus`` defaults to corpus.jsonl beside the claims (a
    BEIR folder or corpus.jsonl works too). A claim without evidence (NOT ENOUGH INFO, or the
    unlabelled test split) or with mixed labels is quarantined: the paper scores only
    SUPPORTS/REFUTES accuracy."""
    out = Converted("samples")
    corpus_path = _corpus_file(corpus) if corpus else Path(path).parent / "corpus.jsonl"
    if not corpus_path.exists():
        raise RecordError(str(corpus_path), "(file)", "SciFact corpus not found (pass corpus=)")
    docs = _load_corpus(corpus_path, out.skipped)

    def passage(did: str, src: str, where: str, cid: str) -> Passage:
        if did not in docs:
            raise RecordError(src, where, f"doc {did} is not in the corpus {corpus_path}", cid)
        d = docs[did]
        return Passage(id=did, title=d.title, text=truncate_words(d.text, passage_words))

    def one(obj: Any, src: str) -> list[Sample]:
        cid = str(need(obj, "id", src, (str, int)))
        claim = need(obj, "claim", src, str)
        if "evidence" not in obj:
            raise RecordError(src, "evidence", "missing (the test split ships no labels)", cid)
        evidence = need(obj, "evidence", src, dict)
        if not evidence:
            raise RecordError(src, "evidence", "no evidence: a NOT ENOUGH INFO claim (only "
                              "SUPPORTS/REFUTES are scored)", cid)
        labels: set[str] = set()
        rationales: dict[str, list[int]] = {}
        for did, sets in evidence.items():
            if not isinstance(sets, list) or not sets:
                raise RecordError(src, f"evidence.{did}", "expected a non-empty list", cid)
            for k, ev in enumerate(sets):
                where = f"evidence.{did}.{k}"
                if not isinstance(ev, dict):
                    raise RecordError(src, where, "expected an object", cid)
                label = ev.get("label")
                if label not in LABELS:
                    raise RecordError(src, f"{where}.label",
                                      f"expected SUPPORT or CONTRADICT, got {label!r}", cid)
                labels.add(label)
                sents = ev.get("sentences", [])
                if not (isinstance(sents, list) and all(type(s) is int for s in sents)):
                    raise RecordError(src, f"{where}.sentences", "expected a list of sentence "
                                      "indices", cid)
                rationales.setdefault(str(did), []).extend(sents)
        if len(labels) > 1:
            raise RecordError(src, "evidence", "mixed labels SUPPORT and CONTRADICT (no single "
                              "SUPPORTS/REFUTES answer)", cid)
        cited = obj.get("cited_doc_ids") or []
        if not isinstance(cited, list):
            raise RecordError(src, "cited_doc_ids", f"expected a list, got "
                              f"{type(cited).__name__}", cid)
        gold = list(rationales)
        passages = [passage(d, src, f"evidence.{d}", cid) for d in gold]
        passages += [passage(str(d), src, "cited_doc_ids", cid)
                     for d in dict.fromkeys(str(c) for c in cited) if d not in rationales]
        answer = LABELS[labels.pop()]
        return [Sample(id=f"scifact-{cid}", task=task, instruction=instruction_for(task),
                       input=claim, output=answer, answers=[answer], passages=passages,
                       gold_passage_ids=gold,
                       meta={"rationales": {d: sorted(set(s)) for d, s in rationales.items()}})]

    return convert_each(out, iter_records(path, "claims"), limit, one)
