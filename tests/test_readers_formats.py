"""Every reader takes a JSON array and JSONL alike, quarantines a malformed record (a number
where a sentence belongs) instead of losing the conversion, and refuses duplicate ids.

The files are built in tmp_path from the real files of ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scarlet_ray.cli import main as cli
from scarlet_ray.datasets import convert
from scarlet_ray.records import RecordError


def _as_jsonl(src: Path, dst: Path) -> Path:
    dst.write_text("".join(json.dumps(o) + "\n" for o in json.loads(src.read_text())))
    return dst


def _as_array(src: Path, dst: Path) -> Path:
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    dst.write_text(json.dumps(rows, indent=1))
    return dst


def _dump(res) -> list[dict]:
    return [r.model_dump() for r in res.records]


def test_hotpotqa_jsonl_converts_like_the_json_array(shared_data, tmp_path):
    """Item 12: the HotpotQA reader refused JSONL ("line 2: invalid JSON: Extra data")."""
    array = shared_data / "hotpotqa" / "hotpotqa_train.json"
    jsonl = _as_jsonl(array, tmp_path / "hotpotqa_train.jsonl")
    a, b = convert("hotpotqa", str(array)), convert("hotpotqa", str(jsonl))
    assert len(b.records) == 100 and not b.skipped
    assert _dump(a) == _dump(b)
    limited = convert("hotpotqa", str(jsonl), limit=3)
    assert [s.id for s in limited.records] == [s.id for s in a.records[:3]]


# (format, shared file, the shared file is a JSON array (else JSONL))
BOTH_WAYS = [
    ("musique", "musique/musique_train.json", True),
    ("musique-corpus", "musique/musique_train_corpus.json", True),
    ("dpr", "haystack/sample.json", True),
    ("flashrag-qa", "flashrag/nq_test.jsonl", False),
    ("flashrag-corpus", "flashrag/sample_data.jsonl", False),
    ("beir", "scifact/corpus.jsonl", False),
]


@pytest.mark.parametrize(("fmt", "rel", "is_array"), BOTH_WAYS, ids=[b[0] for b in BOTH_WAYS])
def test_every_record_reader_takes_array_and_jsonl_alike(shared_data, tmp_path, fmt, rel,
                                                         is_array):
    src = shared_data / rel
    other = (_as_jsonl(src, tmp_path / "other.jsonl") if is_array
             else _as_array(src, tmp_path / "other.json"))
    a, b = convert(fmt, str(src)), convert(fmt, str(other))
    assert a.records and _dump(a) == _dump(b)
    assert len(a.skipped) == len(b.skipped)


def test_kilt_takes_a_json_array_too(tmp_path):
    rows = [{"id": "1", "input": "who wrote hamlet",
             "output": [{"answer": "Shakespeare", "provenance": [{"title": "Hamlet"}]}]},
            {"id": "2", "input": "q", "output": [{"answer": "a"}]}]
    f = tmp_path / "nq-dev-kilt.json"
    f.write_text(json.dumps(rows, indent=2))
    assert [s.id for s in convert("kilt", str(f)).records] == ["kilt-1", "kilt-2"]


def test_a_single_json_object_is_refused_in_one_line(tmp_path):
    f = tmp_path / "one.json"
    f.write_text(json.dumps({"_id": "1", "question": "q?"}, indent=2))
    with pytest.raises(RecordError, match="got a single JSON object") as exc:
        convert("hotpotqa", str(f))
    assert exc.value.source == str(f)


def test_bad_jsonl_line_is_quarantined_with_its_line(shared_data, tmp_path):
    lines = _as_jsonl(shared_data / "hotpotqa" / "hotpotqa_train.json",
                      tmp_path / "h.jsonl").read_text().splitlines()
    lines[4] = lines[4][:50]  # a torn line
    f = tmp_path / "torn.jsonl"
    f.write_text("\n".join(lines) + "\n")
    res = convert("hotpotqa", str(f))
    assert len(res.records) == 99
    assert [(e.source, e.field) for e in res.skipped] == [(f"{f}:5", "(line)")]


# ------------------------------------------------------------------ item 6: bad records


def _hotpot_with_bad_sentences(shared_data: Path, tmp_path: Path) -> Path:
    raw = json.loads((shared_data / "hotpotqa" / "hotpotqa_train.json").read_text())
    raw[1]["context"][2][1][0] = 1987  # a number where a sentence belongs
    raw[3]["context"][0][1].append(None)
    f = tmp_path / "hotpot_bad.json"
    f.write_text(json.dumps(raw))
    return f


def test_hotpotqa_non_string_sentence_is_quarantined_not_fatal(shared_data, tmp_path, capsys):
    """Item 6: a number or null sentence raised TypeError and lost the whole conversion."""
    f = _hotpot_with_bad_sentences(shared_data, tmp_path)
    out = tmp_path / "samples.jsonl"
    rc = cli(["data", "convert", "--format", "hotpotqa", "--input", str(f),
              "--output", str(out)])
    assert rc == 0
    assert len(out.read_text().splitlines()) == 98
    errors = [json.loads(x) for x in (tmp_path / "samples.errors.jsonl").read_text()
              .splitlines()]
    n_sents = len(json.loads(f.read_text())[3]["context"][0][1]) - 1
    assert [(e["source"], e["field"]) for e in errors] == [
        (f"{f}:[1]", "context.2.1.0"), (f"{f}:[3]", f"context.0.1.{n_sents}")]
    assert "expected a sentence string, got int" in errors[0]["reason"]
    assert "got NoneType" in errors[1]["reason"]
    assert "skipped" in capsys.readouterr().out


def test_hotpotqa_corpus_non_string_sentence_is_quarantined(shared_data, tmp_path):
    raw = json.loads((shared_data / "hotpotqa" / "hotpotqa_train_corpus.json").read_text())
    title = next(iter(raw))
    raw[title] = [*raw[title], 3.5]
    f = tmp_path / "corpus.json"
    f.write_text(json.dumps(raw))
    res = convert("hotpotqa-corpus", str(f))
    assert len(res.records) == 993
    assert [e.field for e in res.skipped] == [f"(sentences).{len(raw[title]) - 1}"]
    assert res.skipped[0].source == f"{f}:{json.dumps(title)}"


MALFORMED = [  # (format, shared file, how to break record 2, field named in the error)
    ("musique", "musique/musique_train.json",
     lambda q: q["paragraphs"].__setitem__(0, 7), "(record)"),
    ("musique", "musique/musique_train.json",
     lambda q: q.__setitem__("answer_aliases", 5), "answer_aliases"),
    ("dpr", "haystack/sample.json",
     lambda q: q.__setitem__("negative_ctxs", 3), "negative_ctxs"),
    ("dpr", "haystack/sample.json",
     lambda q: q["positive_ctxs"].append("just a string"), "(record)"),
]


@pytest.mark.parametrize(("fmt", "rel", "breaker", "field"), MALFORMED,
                         ids=["musique-paragraph", "musique-aliases", "dpr-negatives",
                              "dpr-ctx"])
def test_malformed_record_is_quarantined_and_the_rest_converts(shared_data, tmp_path, fmt, rel,
                                                              breaker, field):
    """Readers other than HotpotQA crashed the same way (AttributeError/TypeError)."""
    raw = json.loads((shared_data / rel).read_text())
    good = convert(fmt, str(shared_data / rel))
    breaker(raw[2])
    f = tmp_path / "broken.json"
    f.write_text(json.dumps(raw))
    res = convert(fmt, str(f))
    assert len(res.records) == len(good.records) - 1
    bad = [e for e in res.skipped if e.source.startswith(f"{f}:[2]")]
    assert bad and bad[0].field.startswith(field), res.skipped


def test_squad_paragraph_without_context_is_quarantined(shared_data, tmp_path):
    raw = json.loads((shared_data / "haystack" / "small.json").read_text())
    del raw["data"][1]["paragraphs"][0]["context"]
    f = tmp_path / "squad.json"
    f.write_text(json.dumps(raw))
    res = convert("squad", str(f))
    first_article = sum(len(p["qas"]) for p in raw["data"][0]["paragraphs"])
    assert 0 < len(res.records) <= first_article
    assert any(e.source == f"{f}:data.1.paragraphs.0" and e.field == "context"
               for e in res.skipped)


# ------------------------------------------------------------------ item 7: duplicate ids


def test_data_convert_quarantines_a_duplicate_id_naming_both_places(shared_data, tmp_path):
    """Item 7: `data convert` wrote the same id twice."""
    raw = json.loads((shared_data / "hotpotqa" / "hotpotqa_train.json").read_text())
    raw.append(dict(raw[5], question="the same _id asked again"))
    f = tmp_path / "dup.json"
    f.write_text(json.dumps(raw))
    out = tmp_path / "samples.jsonl"
    assert cli(["data", "convert", "--format", "hotpotqa", "--input", str(f),
                "--output", str(out)]) == 0
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 100
    (err,) = [json.loads(x) for x in (tmp_path / "samples.errors.jsonl").read_text()
              .splitlines()]
    assert err["source"] == f"{f}:[100]" and err["field"] == "_id"
    assert f"first at {f}:[5]" in err["reason"] and raw[5]["_id"] in err["reason"]


@pytest.mark.parametrize("fmt", ["flashrag-corpus", "beir"])
def test_duplicate_corpus_id_in_jsonl_is_quarantined(shared_data, tmp_path, fmt):
    rel = "flashrag/sample_data.jsonl" if fmt == "flashrag-corpus" else "scifact/corpus.jsonl"
    lines = (shared_data / rel).read_text().splitlines()[:20]
    f = tmp_path / "corpus.jsonl"
    f.write_text("\n".join([*lines, lines[3]]) + "\n")
    res = convert(fmt, str(f))
    assert len(res.records) == 20
    (err,) = res.skipped
    assert err.source == f"{f}:21" and f"first at {f}:4" in err.reason


def test_dpr_tsv_duplicate_id_is_quarantined(tmp_path):
    f = tmp_path / "psgs.tsv"
    f.write_text("id\ttext\ttitle\n1\tAaron is a prophet.\tAaron\n1\tanother\tB\n")
    res = convert("dpr-corpus", str(f))
    assert [p.id for p in res.records] == ["1"]
    assert res.skipped[0].source == f"{f}:3" and f"first at {f}:2" in res.skipped[0].reason
