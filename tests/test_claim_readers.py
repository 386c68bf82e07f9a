"""Readers of the paper's Table 2 evaluation sets in their original forms (SciFact and
Climate-FEVER keep the claim labels BEIR drops; FiQA's answers are corpus documents).

Snippets follow each release's documented schema: one good record, one quarantined per reason,
each quarantine naming file:line and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scarlet_ray.datasets import FORMATS, convert
from scarlet_ray.records import RecordError


def _jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _reasons(res) -> dict[str, str]:
    """line -> 'field: reason' of every quarantined record."""
    return {e.source.rsplit(":", 1)[1]: f"{e.field}: {e.reason}" for e in res.skipped}


# ------------------------------------------------------------------------------ SciFact

SCIFACT_CORPUS = [
    {"doc_id": 14717500, "title": "Acupuncture for depression",
     "abstract": ["OBJECTIVE: To test acupuncture.", "CONCLUSIONS: It was not superior."],
     "structured": True},
    {"doc_id": 2, "title": "Vitamin D", "abstract": ["Low vitamin D.", "Lower birth weight."],
     "structured": False},
    {"doc_id": 3, "title": "Bad", "abstract": ["fine", 7], "structured": False},
]
SUPPORTED = {"id": 1, "claim": "Acupuncture is not effective for depression.",
             "evidence": {"14717500": [{"sentences": [1], "label": "SUPPORT"}]},
             "cited_doc_ids": [14717500, 2]}
REFUTED = {"id": 4, "claim": "Vitamin D is unrelated to birth weight.",
           "evidence": {"2": [{"sentences": [0, 1], "label": "CONTRADICT"}]},
           "cited_doc_ids": [2]}


def _scifact(tmp_path: Path) -> Path:
    _jsonl(tmp_path / "corpus.jsonl", SCIFACT_CORPUS)
    return _jsonl(tmp_path / "claims_dev.jsonl", [
        SUPPORTED,
        REFUTED,
        {"id": 5, "claim": "No evidence either way.", "evidence": {}, "cited_doc_ids": [2]},
        {"id": 6, "claim": "Mixed.", "cited_doc_ids": [2, 14717500],
         "evidence": {"2": [{"sentences": [0], "label": "SUPPORT"}],
                      "14717500": [{"sentences": [0], "label": "CONTRADICT"}]}},
        {"id": 7, "claim": "Evidence elsewhere.", "cited_doc_ids": [99],
         "evidence": {"99": [{"sentences": [0], "label": "SUPPORT"}]}},
        {"id": 8, "claim": "A test-split claim.", "cited_doc_ids": [2]},
        {"id": 9, "claim": "Odd label.", "cited_doc_ids": [2],
         "evidence": {"2": [{"sentences": [0], "label": "MAYBE"}]}},
        {"id": 1, "claim": "Repeated id.", "cited_doc_ids": [2],
         "evidence": {"2": [{"sentences": [0], "label": "SUPPORT"}]}},
        "{not json",
    ])


def test_scifact_claims_become_labelled_samples_and_the_rest_is_quarantined(tmp_path):
    res = convert("scifact", str(_scifact(tmp_path)))
    assert FORMATS["scifact"].kind == res.kind == "samples"
    sup, ref = res.records
    assert (sup.id, sup.task, sup.output, sup.answers) == ("scifact-1", "scifact", "SUPPORTS",
                                                          ["SUPPORTS"])
    assert [p.id for p in sup.passages] == ["14717500", "2"]
    assert sup.gold_passage_ids == ["14717500"]
    assert sup.passages[0].text == "OBJECTIVE: To test acupuncture. CONCLUSIONS: It was not superior."
    assert sup.passages[0].title == "Acupuncture for depression"
    assert sup.meta == {"rationales": {"14717500": [1]}}
    assert "Answer SUPPORTS or REFUTES" in sup.instruction
    assert (ref.output, [p.id for p in ref.passages], ref.gold_passage_ids) == ("REFUTES", ["2"],
                                                                              ["2"])
    bad_doc = res.skipped[0]  # the corpus is read first; its bad line is reported too
    assert bad_doc.source.endswith("corpus.jsonl:3") and bad_doc.field == "abstract.1"
    claims = {e.source.rsplit(":", 1)[1]: e for e in res.skipped if "claims_dev" in e.source}
    assert "NOT ENOUGH INFO" in claims["3"].reason and claims["3"].field == "evidence"
    assert "mixed labels" in claims["4"].reason
    assert claims["5"].field == "evidence.99" and "doc 99 is not in the corpus" in claims["5"].reason
    assert "test split" in claims["6"].reason
    assert claims["7"].field == "evidence.2.0.label"
    assert "duplicate id 'scifact-1'" in claims["8"].reason
    assert "invalid JSON" in claims["9"].reason
    assert len(res.skipped) == 8


def test_scifact_corpus_and_limit_and_passage_words(tmp_path):
    claims = _scifact(tmp_path)
    corpus = convert("scifact-corpus", str(tmp_path / "corpus.jsonl"), passage_words=3)
    assert FORMATS["scifact-corpus"].kind == corpus.kind == "corpus"
    assert [p.id for p in corpus.records] == ["14717500", "14717500-1", "14717500-2", "2",
                                              "2-1"]
    assert corpus.records[3].text == "Low vitamin D."
    assert [e.field for e in corpus.skipped] == ["abstract.1"]
    first = convert("scifact", str(claims), limit=1, passage_words=2)
    assert [s.id for s in first.records] == ["scifact-1"]
    assert first.records[0].passages[0].text == "OBJECTIVE: To"


def test_scifact_takes_a_beir_corpus_for_the_passages(tmp_path):
    beir = _jsonl(tmp_path / "beir" / "corpus.jsonl", [
        {"_id": "14717500", "title": "Acupuncture for depression", "text": "It was not superior."},
        {"_id": "2", "title": "Vitamin D", "text": "Lower birth weight."},
    ])
    claims = _jsonl(tmp_path / "claims" / "claims_dev.jsonl", [SUPPORTED, REFUTED])
    for corpus in (beir, beir.parent):
        res = convert("scifact", str(claims), corpus=str(corpus))
        assert not res.skipped
        assert [p.text for p in res.records[0].passages] == ["It was not superior.",
                                                            "Lower birth weight."]
    with pytest.raises(RecordError, match="SciFact corpus not found"):
        convert("scifact", str(claims))  # no corpus.jsonl beside the claims


def test_scifact_claims_over_the_real_beir_corpus(tmp_path, shared_data):
    src = shared_data / "scifact" / "corpus.jsonl"  # the fixture fails, never skips, if absent
    with open(src, encoding="utf-8") as fh:
        docs = [json.loads(next(fh)) for _ in range(3)]
    a, b, c = (d["_id"] for d in docs)
    claims = _jsonl(tmp_path / "claims_dev.jsonl", [
        {"id": 11, "claim": "A claim the first abstract supports.", "cited_doc_ids": [int(a), int(c)],
         "evidence": {a: [{"sentences": [0], "label": "SUPPORT"}]}},
        {"id": 12, "claim": "A claim the second abstract refutes.", "cited_doc_ids": [int(b)],
         "evidence": {b: [{"sentences": [1], "label": "CONTRADICT"}]}},
        {"id": 13, "claim": "A claim citing a doc the corpus lacks.", "cited_doc_ids": [1],
         "evidence": {"1": [{"sentences": [0], "label": "SUPPORT"}]}},
    ])
    res = convert("scifact", str(claims), corpus=str(src))
    assert [(s.output, s.gold_passage_ids) for s in res.records] == [("SUPPORTS", [a]),
                                                                      ("REFUTES", [b])]
    first = res.records[0]
    assert [p.id for p in first.passages] == [a, c]
    assert (first.passages[0].title, first.passages[0].text) == (docs[0]["title"],
                                                                 docs[0]["text"].strip())
    assert len(res.skipped) == 1 and res.skipped[0].source.endswith("claims_dev.jsonl:3")
    assert "doc 1 is not in the corpus" in res.skipped[0].reason


# ------------------------------------------------------------------------ Climate-FEVER

def _ev(eid: str, label: str, text: str | None = None) -> dict:
    article = eid.split(":")[0]
    return {"evidence_id": eid, "evidence_label": label, "article": article,
            "evidence": text or f"Sentence {eid}.", "entropy": 0.5, "votes": [label, None]}


def _climate(tmp_path: Path) -> Path:
    return _jsonl(tmp_path / "climate-fever.jsonl", [
        {"claim_id": "0", "claim": "Global warming is driving polar bears toward extinction.",
         "claim_label": "SUPPORTS", "evidences": [
             _ev("Polar_bear:1", "SUPPORTS"), _ev("Ice:2", "REFUTES"),
             _ev("Arctic:3", "NOT_ENOUGH_INFO"), _ev("Polar_bear:1", "SUPPORTS")]},
        {"claim_id": "1", "claim": "CO2 is not a pollutant.", "claim_label": "NOT_ENOUGH_INFO",
         "evidences": [_ev("CO2:4", "NOT_ENOUGH_INFO")]},
        {"claim_id": "2", "claim": "Scientists disagree.", "claim_label": "DISPUTED",
         "evidences": [_ev("Ice:2", "REFUTES")]},
        {"claim_id": "3", "claim": "Sea levels fall.", "claim_label": "REFUTES", "evidences": [
            _ev("Sea:5", "REFUTES"), _ev("Sea:5", "REFUTES", "A different sentence.")]},
        {"claim_id": "4", "claim": "Odd.", "claim_label": "FALSE", "evidences": []},
        {"claim_id": "5", "claim": "Sea levels rise.", "claim_label": "SUPPORTS",
         "evidences": [{"evidence_id": "Sea:6", "evidence_label": "SUPPORTS"}]},
    ])


def test_climate_fever_claims_become_labelled_samples(tmp_path):
    res = convert("climate-fever", str(_climate(tmp_path)))
    assert FORMATS["climate-fever"].kind == res.kind == "samples"
    (s,) = res.records
    assert (s.id, s.task, s.output, s.answers) == ("climate-fever-0", "climate-fever",
                                                   "SUPPORTS", ["SUPPORTS"])
    assert [(p.id, p.title) for p in s.passages] == [("Polar_bear:1", "Polar_bear"),
                                                    ("Ice:2", "Ice"), ("Arctic:3", "Arctic")]
    assert s.gold_passage_ids == ["Polar_bear:1"]
    why = _reasons(res)
    assert why["2"].startswith("claim_label: NOT_ENOUGH_INFO")
    assert why["3"].startswith("claim_label: DISPUTED")
    assert why["4"] == "evidences.1.evidence_id: 'Sea:5' repeated with a different text"
    assert why["5"] == "claim_label: unknown label 'FALSE'"
    assert why["6"] == "evidences.0.article: missing or not a string"
    assert len(res.skipped) == 5


def test_climate_fever_corpus_is_unique_by_evidence_id(tmp_path):
    path = _climate(tmp_path)
    with open(path, "a") as fh:
        fh.write("[1, 2\n")
    res = convert("climate-fever-corpus", str(path))
    assert FORMATS["climate-fever-corpus"].kind == res.kind == "corpus"
    assert [p.id for p in res.records] == ["Polar_bear:1", "Ice:2", "Arctic:3", "CO2:4", "Sea:5"]
    assert res.records[0].model_dump() == {"id": "Polar_bear:1", "title": "Polar_bear",
                                           "text": "Sentence Polar_bear:1."}
    srcs = [e.source.split("climate-fever.jsonl:")[1] for e in res.skipped]
    assert srcs == ["4.evidences.1", "6.evidences.0", "7"]
    assert "different text (first at" in res.skipped[0].reason
    assert "4.evidences.0" in res.skipped[0].reason
    assert convert("climate-fever-corpus", str(path), limit=2).records[1].id == "Ice:2"


# ----------------------------------------------------------------------------- FiQA

def _fiqa_beir(tmp_path: Path) -> Path:
    d = tmp_path / "fiqa"
    _jsonl(d / "corpus.jsonl", [
        {"_id": "10", "title": "", "text": "Pay the mortgage if its rate beats your returns."},
        {"_id": "11", "title": "", "text": "Invest: markets return more over decades."},
        {"_id": "12", "title": "", "text": ""},
    ])
    _jsonl(d / "queries.jsonl", [
        {"_id": "1", "text": "Pay off a mortgage early or invest?"},
        {"_id": "2", "text": "What is an ETF?"},
        {"_id": "4", "text": "Is gold a hedge?"},
        {"_id": "5", "text": "Are bonds safe?"},
        {"_id": "7", "text": "Why buy a house?"},
    ])
    (d / "qrels").mkdir()
    (d / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\t10\t1\n1\t11\t1\n2\t99\t1\n3\t10\t1\n4\t10\t0\n"
        "5\t10\tx\n5\t12\t1\n6\t10\n")
    (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n7\t11\t1\n")
    return d


def test_fiqa_beir_questions_answered_by_their_relevant_docs(tmp_path):
    d = _fiqa_beir(tmp_path)
    res = convert("fiqa", str(d))
    assert FORMATS["fiqa"].kind == res.kind == "samples"
    (s,) = res.records
    assert (s.id, s.task, s.input) == ("fiqa-1", "fiqa", "Pay off a mortgage early or invest?")
    assert s.output == "Pay the mortgage if its rate beats your returns."
    assert s.answers == [s.output, "Invest: markets return more over decades."]
    assert [p.id for p in s.passages] == s.gold_passage_ids == ["10", "11"]
    corpus_errs = [e for e in res.skipped if "corpus.jsonl" in e.source]
    assert [e.source.rsplit(":", 1)[1] for e in corpus_errs] == ["3"]  # the empty doc
    qrels = {e.source.rsplit(":", 1)[1]: f"{e.field}: {e.reason}" for e in res.skipped
             if "test.tsv" in e.source}
    assert qrels["4"] == "corpus-id: docs ['99'] are not in the corpus"
    assert qrels["5"] == "query-id: query '3' has no text in the queries"
    assert qrels["6"] == "score: no relevant document (every score is 0)"
    assert qrels["7"] == "score: not an integer: 'x'"
    assert qrels["8"] == "corpus-id: docs ['12'] are not in the corpus"
    assert qrels["9"].startswith("(line): expected 3 tab-separated columns")
    assert len(res.skipped) == 7
    train = convert("fiqa", str(d / "queries.jsonl"), split="train", passage_words=2)
    assert [(s.id, s.passages[0].text, s.output) for s in train.records] == [
        ("fiqa-7", "Invest: markets", "Invest: markets return more over decades.")]
    with pytest.raises(RecordError, match="no qrels for split 'dev'"):
        convert("fiqa", str(d), split="dev")


def test_fiqa_original_task2_tsvs(tmp_path):
    d = tmp_path / "FiQA_train"
    d.mkdir()
    (d / "FiQA_train_question_final.tsv").write_text(
        "\tqid\tquestion\ttimestamp\n0\t0\tWhat is a Roth IRA?\tNov 8 '17 at 3:21\n"
        "1\t1\tWhy index funds?\tNov 9 '17\n2\t2\tbroken row\n")
    (d / "FiQA_train_doc_final.tsv").write_text(
        "\tdocid\tdoc\ttimestamp\n0\t100\tA retirement account taxed up front.\tNov 8 '17\n"
        "1\t101\t\tNov 9 '17\n")
    (d / "FiQA_train_question_doc_final.tsv").write_text(
        "\tqid\tdocid\n0\t0\t100\n1\t1\t101\n")
    res = convert("fiqa", str(d))
    (s,) = res.records
    assert (s.id, s.input, s.output, s.gold_passage_ids) == (
        "fiqa-0", "What is a Roth IRA?", "A retirement account taxed up front.", ["100"])
    why = {e.source.rsplit("/", 1)[1]: f"{e.field}: {e.reason}" for e in res.skipped}
    assert why == {
        "FiQA_train_doc_final.tsv:3": "doc: empty",
        "FiQA_train_question_final.tsv:4": "(line): expected 4 tab-separated columns, got 3",
        "FiQA_train_question_doc_final.tsv:3": "corpus-id: docs ['101'] are not in the corpus",
    }
    with pytest.raises(RecordError, match="label only 'train'"):
        convert("fiqa", str(d), split="test")
    with pytest.raises(RecordError, match="neither BEIR"):
        convert("fiqa", str(tmp_path))
