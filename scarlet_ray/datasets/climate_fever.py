"""Climate-FEVER (climatefever release, ``climate-fever.jsonl``): claims with five evidences.

A line: ``{"claim_id", "claim", "claim_label": SUPPORTS|REFUTES|NOT_ENOUGH_INFO|DISPUTED,
"evidences": [{"evidence_id": "Article:N", "evidence_label", "article", "evidence", "entropy",
"votes"}]}``. BEIR's copy drops the claim labels, which the paper's accuracy needs.
"""

from __future__ import annotations

from collections.abc import Iterator
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

SCORED = ("SUPPORTS", "REFUTES")
UNSCORED = ("NOT_ENOUGH_INFO", "DISPUTED")
EVIDENCE_LABELS = ("SUPPORTS", "REFUTES", "NOT_ENOUGH_INFO")


def _evidence(ev: Any, src: str, where: str, rid: str | None = None) -> tuple[str, str, str, str]:
    """(evidence_id, article, evidence text, evidence_label) of one evidence, checked."""
    if not isinstance(ev, dict):
        raise RecordError(src, where, f"expected an object, got {type(ev).__name__}", rid)
    fields = []
    for key in ("evidence_id", "article", "evidence", "evidence_label"):
        if not isinstance(ev.get(key), str):
            raise RecordError(src, f"{where}.{key}", "missing or not a string", rid)
        fields.append(ev[key])
    eid, article, text, label = fields
    if label not in EVIDENCE_LABELS:
        raise RecordError(src, f"{where}.evidence_label", f"unknown label {label!r}", rid)
    if not text.strip():
        raise RecordError(src, f"{where}.evidence", "empty", rid)
    return eid, article, text.strip(), label


def read_climate_fever(path: str, limit: int | None = None, passage_words: int | None = None,
                       task: str = "climate-fever") -> Converted:
    """Claims -> samples: output = claim_label, passages = the evidences, gold = those whose
    label equals the claim's. NOT_ENOUGH_INFO / DISPUTED claims are quarantined (the paper
    scores SUPPORTS/REFUTES accuracy). An evidence id repeated in a claim with the same text
    is one passage (gold if any copy agrees); with different text the claim is quarantined."""
    def one(obj: Any, src: str) -> list[Sample]:
        cid = str(need(obj, "claim_id", src, (str, int)))
        claim = need(obj, "claim", src, str)
        label = need(obj, "claim_label", src, str)
        if label in UNSCORED:
            raise RecordError(src, "claim_label", f"{label}: only SUPPORTS/REFUTES claims are "
                              "scored", cid)
        if label not in SCORED:
            raise RecordError(src, "claim_label", f"unknown label {label!r}", cid)
        passages: dict[str, Passage] = {}
        gold: dict[str, None] = {}
        for j, ev in enumerate(need(obj, "evidences", src, list)):
            eid, article, text, ev_label = _evidence(ev, src, f"evidences.{j}", cid)
            p = Passage(id=eid, title=article, text=truncate_words(text, passage_words))
            if eid in passages and passages[eid] != p:
                raise RecordError(src, f"evidences.{j}.evidence_id", f"{eid!r} repeated with "
                                  "a different text", cid)
            passages[eid] = p
            if ev_label == label:
                gold[eid] = None
        if not passages:
            raise RecordError(src, "evidences", "empty", cid)
        return [Sample(id=f"climate-fever-{cid}", task=task, instruction=instruction_for(task),
                       input=claim, output=label, answers=[label],
                       passages=list(passages.values()), gold_passage_ids=list(gold))]

    return convert_each(Converted("samples", id_field="claim_id"),
                        iter_records(path, "claims"), limit, one)


def read_climate_fever_corpus(path: str, limit: int | None = None,
                              passage_words: int | None = None) -> Converted:
    """Every evidence sentence once, by evidence_id (claims share Wikipedia sentences): a
    repeat with the same text is merged, one with a different text is quarantined."""
    first: dict[str, tuple[str, str]] = {}  # evidence_id -> (text, where first seen)

    def one(item: tuple[Any, str | None], src: str) -> list[CorpusPassage]:
        ev, cid = item
        eid, article, text, _ = _evidence(ev, src, "(evidence)", cid)
        if eid in first:
            if first[eid][0] != text:
                raise RecordError(src, "evidence_id", f"{eid!r} repeated with a different "
                                  f"text (first at {first[eid][1]})", eid)
            return []
        first[eid] = (text, src)
        return [CorpusPassage(id=eid if k == 0 else f"{eid}-{k}", title=article, text=chunk)
                for k, chunk in enumerate(split_words(text, passage_words))]

    return convert_each(Converted("corpus", id_field="evidence_id"), _evidences(path),
                        limit, one)


def _evidences(path: str) -> Iterator[tuple[str, Any]]:
    """(location, (evidence, claim id)) per evidence; a malformed claim line as its error."""
    for src, obj in iter_records(path, "claims"):
        try:
            if isinstance(obj, RecordError):
                raise obj
            evs = need(obj, "evidences", src, list)
        except RecordError as err:
            yield src, err
            continue
        cid = obj.get("claim_id")
        for j, ev in enumerate(evs):
            yield f"{src}.evidences.{j}", (ev, str(cid) if cid is not None else None)
