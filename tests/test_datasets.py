"""Every public format reader on every file of ../shared/data (and a KILT snippet)."""

from __future__ import annotations

import json

import pytest

from scarlet_ray.cli import main as cli
from scarlet_ray.datasets import FORMATS, convert
from scarlet_ray.datasets.beir import read_beir
from scarlet_ray.records import CorpusPassage, Sample, read_jsonl, read_samples


def test_hotpotqa_ten_passages_two_gold(shared_data):
    res = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"))
    assert len(res.records) == 100 and not res.skipped
    raws = json.loads((shared_data / "hotpotqa" / "hotpotqa_train.json").read_text())
    for s, raw in zip(res.records, raws, strict=True):
        # the distractor setting gives 10 paragraphs; one shared question ships only 4
        assert len(s.passages) == len(raw["context"])
        assert len(s.gold_passage_ids) == 2, s.id
        assert s.output and s.task == "hotpotqa"
    assert sum(len(s.passages) == 10 for s in res.records) == 99
    raw = raws[0]
    first = res.records[0]
    gold_titles = {p.title for p in first.passages if p.id in first.gold_passage_ids}
    assert gold_titles == {t for t, _ in raw["supporting_facts"]}


def test_hotpotqa_passage_words(shared_data):
    res = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"),
                  limit=5, passage_words=20)
    assert len(res.records) == 5
    assert all(len(p.text.split()) <= 20 for s in res.records for p in s.passages)


def test_musique_gold_is_supporting(shared_data):
    path = shared_data / "musique" / "musique_train.json"
    res = convert("musique", str(path))
    raw = json.loads(path.read_text())
    assert len(res.records) + len(res.skipped) == len(raw)
    by_id = {s.id: s for s in res.records}
    for q in raw:
        s = by_id.get(f"musique-{q['id']}")
        if s is None:
            continue
        assert len(s.passages) == len(q["paragraphs"])
        assert len(s.gold_passage_ids) == sum(p["is_supporting"] for p in q["paragraphs"])
        assert q["answer"] in s.answers


def test_dpr_sample(shared_data):
    res = convert("dpr", str(shared_data / "haystack" / "sample.json"))
    assert len(res.records) == 5
    for s in res.records:
        assert 1 <= len(s.gold_passage_ids) <= len(s.passages) <= 10


def test_squad_v2_skips_unanswerable_with_reason(shared_data):
    path = shared_data / "haystack" / "small.json"
    res = convert("squad", str(path))
    raw = json.loads(path.read_text())
    total = sum(len(p["qas"]) for a in raw["data"] for p in a["paragraphs"])
    assert len(res.records) + len(res.skipped) == total
    assert res.records and all(e.reason == "unanswerable question" for e in res.skipped)
    s = res.records[0]
    assert s.gold_passage_ids[0] in {p.id for p in s.passages}


def test_flashrag(shared_data):
    qa = convert("flashrag-qa", str(shared_data / "flashrag" / "nq_test.jsonl"))
    assert len(qa.records) == 17 and qa.kind == "seeds"
    corpus = convert("flashrag-corpus", str(shared_data / "flashrag" / "sample_data.jsonl"))
    assert len(corpus.records) == 1000
    first = corpus.records[0]
    assert first.title == "Evan Morris" and not first.text.startswith('"')


@pytest.mark.parametrize("fmt, rel, n", [
    ("hotpotqa-corpus", "hotpotqa/hotpotqa_train_corpus.json", 994),
    ("musique-corpus", "musique/musique_train_corpus.json", 1890),
    ("beir", "scifact", 5183),
])
def test_corpora(shared_data, fmt, rel, n):
    res = convert(fmt, str(shared_data / rel))
    assert len(res.records) == n and not res.skipped
    assert len({p.id for p in res.records}) == n


def test_beir_set(shared_data):
    beir = read_beir(shared_data / "scifact", split="train")
    assert len(beir.corpus) == 5183
    assert 0 < len(beir.queries) <= 809
    assert sum(len(v) for v in beir.qrels.values()) == 919
    # SciFact's qrels all point at its corpus and queries (ArguAna's, NFCorpus's do not)
    assert not beir.unknown_docs and not beir.queries_without_text


def test_kilt_snippet(tmp_path):
    f = tmp_path / "nq-dev-kilt.jsonl"
    lines = [
        {"id": "1", "input": "who wrote hamlet",
         "output": [{"answer": "Shakespeare", "provenance": [{"title": "Hamlet"}]}]},
        {"id": "2", "input": "no answer here", "output": [{"provenance": []}]},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    res = convert("kilt", str(f))
    assert [s.id for s in res.records] == ["kilt-1"]
    assert res.records[0].meta["provenance_titles"] == ["Hamlet"]
    assert res.skipped[0].source == f"{f}:2" and res.skipped[0].field == "output"


BAD_MIDDLE = [  # (format, file name, good record, bad record, field named in the error)
    ("flashrag-qa", "q.jsonl", {"id": 1, "question": "q?", "golden_answers": ["a"]},
     {"id": 2, "question": "q?", "golden_answers": []}, "golden_answers"),
    ("flashrag-corpus", "c.jsonl", {"id": 1, "contents": '"T"\nsome text'},
     {"id": 2}, "contents"),
    ("beir", "corpus.jsonl", {"_id": "d1", "title": "T", "text": "some text"},
     {"_id": "d2", "title": "T", "text": "  "}, "text"),
    ("dpr", "dpr.json", {"question": "q?", "answers": ["a"],
                         "positive_ctxs": [{"title": "T", "text": "x"}]},
     {"question": "q?", "answers": ["a"], "positive_ctxs": []}, "positive_ctxs"),
    ("hotpotqa", "h.json", {"_id": "1", "question": "q?", "answer": "a",
                            "supporting_facts": [["T", 0]], "context": [["T", ["x."]]]},
     {"_id": "2", "question": "q?", "answer": "a", "supporting_facts": [],
      "context": [["T", "not a sentence list"]]}, "context.0"),
    ("musique", "m.json", {"id": "1", "question": "q?", "answer": "a",
                           "paragraphs": [{"idx": 0, "title": "T", "paragraph_text": "x",
                                           "is_supporting": True}]},
     {"id": "2", "question": "q?", "answer": "a", "paragraphs": [{"idx": 0, "title": "T"}]},
     "paragraph_text"),
    ("musique-corpus", "mc.json", {"title": "T", "text": "x"}, {"title": "T"}, "text"),
]


def _with_other_id(rec: dict) -> dict:
    """The same record under another id (ids are unique per file: a copy is a duplicate)."""
    return {k: (f"{v}-b" if k in ("id", "_id") else v) for k, v in rec.items()}


@pytest.mark.parametrize(("fmt", "name", "good", "bad", "field"), BAD_MIDDLE,
                         ids=[b[0] for b in BAD_MIDDLE])
def test_bad_record_in_the_middle_is_skipped_with_its_location(tmp_path, fmt, name, good, bad,
                                                               field):
    """The record before and after a bad one convert; the bad one is reported, not dropped."""
    f = tmp_path / name
    recs = [good, bad, _with_other_id(good)]
    if name.endswith(".jsonl"):
        f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
        where = f"{f}:2"
    else:
        f.write_text(json.dumps(recs))
        where = f"{f}:[1]"
    res = convert(fmt, str(f))
    assert len(res.records) == 2
    assert [e.field for e in res.skipped] == [field]
    src = res.skipped[0].source  # the record, or a part of it (``...:[1].paragraphs.0``)
    assert src == where or src.startswith(where + "."), src
    limited = convert(fmt, str(f), limit=1)
    assert len(limited.records) == 1 and not limited.skipped


def test_dpr_tsv_corpus(tmp_path):
    f = tmp_path / "psgs.tsv"
    f.write_text("id\ttext\ttitle\n1\tAaron is a prophet.\tAaron\n2\tbroken\n")
    res = convert("dpr-corpus", str(f))
    assert [p.id for p in res.records] == ["1"]
    assert res.skipped[0].source == f"{f}:3"


CONVERTIBLE = [
    ("hotpotqa", "hotpotqa/hotpotqa_train.json"),
    ("hotpotqa-corpus", "hotpotqa/hotpotqa_train_corpus.json"),
    ("musique", "musique/musique_train.json"),
    ("musique-corpus", "musique/musique_train_corpus.json"),
    ("dpr", "haystack/sample.json"),
    ("squad", "haystack/small.json"),
    ("flashrag-qa", "flashrag/nq_test.jsonl"),
    ("flashrag-corpus", "flashrag/sample_data.jsonl"),
    ("beir", "scifact"),
]


@pytest.mark.parametrize("fmt, rel", CONVERTIBLE)
def test_cli_convert_writes_valid_jsonl(shared_data, tmp_path, fmt, rel):
    out = tmp_path / f"{fmt}.jsonl"
    rc = cli(["data", "convert", "--format", fmt, "--input", str(shared_data / rel),
              "--output", str(out)])
    assert rc == 0
    kind = FORMATS[fmt].kind
    if kind == "corpus":
        recs = read_jsonl(out, CorpusPassage).records
    else:
        recs = read_samples(out, require_passages=(kind == "samples"))
        assert all(isinstance(r, Sample) for r in recs)
    assert recs


def test_cli_convert_bad_input_one_line_reason(tmp_path, capsys):
    f = tmp_path / "broken.json"
    f.write_text('[{"_id": 1, ')
    rc = cli(["data", "convert", "--format", "hotpotqa", "--input", str(f),
              "--output", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and str(f) in err and "invalid JSON" in err and "\n" not in err
