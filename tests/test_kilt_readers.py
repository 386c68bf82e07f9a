"""KILT task files (one per task of the paper) and the KILT Wikipedia knowledge source.

The snippets follow KILT's documented record format (github.com/facebookresearch/KILT, README:
``id``, ``input``, ``output: [{answer, provenance: [{wikipedia_id, title, start_paragraph_id,
start_character, end_paragraph_id, end_character, bleu_score, section}]}]``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scarlet_ray.datasets import FORMATS, convert
from scarlet_ray.datasets.base import iter_records
from scarlet_ray.datasets.kilt import task_from_file_name
from scarlet_ray.datasets.kilt_wiki import iter_kilt_passages, write_kilt_corpus
from scarlet_ray.records import CorpusPassage, RecordError, iter_jsonl_objects
from scarlet_ray.tasks import get_task


def prov(wid: str, title: str, para: int = 1) -> dict:
    return {"wikipedia_id": wid, "title": title, "section": "Section::::Abstract.",
            "start_paragraph_id": para, "start_character": 0, "end_paragraph_id": para,
            "end_character": 120, "bleu_score": 1.0}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


NQ = {"id": "6915606477668963399", "input": "what do the 3 dots mean in math",
      "output": [{"answer": "the therefore sign", "provenance": [prov("10593264", "Therefore sign")]},
                 {"answer": "therefore sign"}, {"answer": "the therefore sign"},
                 {"provenance": [prov("10593264", "Therefore sign", 2)]}]}
HOTPOT = {"id": "5a8b57f25542995d1e6f1371",
          "input": "Were Scott Derrickson and Ed Wood of the same nationality?",
          "output": [{"answer": "yes", "provenance": [prov("2834016", "Scott Derrickson"),
                                                     prov("10009", "Ed Wood")]}]}
TRIVIA = {"id": "tc_69", "input": "Which Lloyd Webber musical premiered in the US on 10th "
          "December 1993?", "output": [{"answer": "Sunset Boulevard"},
                                       {"answer": "Sunset Blvd"}]}
ELI5 = {"id": "1oy5tc", "input": "in football whats the point of wasting the first two plays "
        "with a rush - up the middle - not regular rush plays i get those",
        "output": [{"answer": "Keep the defense honest, get a feel for the pass rush.",
                    "meta": {"score": 2}},
                   {"answer": "Running up the middle tests the defensive line.",
                    "meta": {"score": 1}},
                   {"provenance": [prov("1080467", "American football plays")]}]}
FEVER = {"id": 75397, "input": "Nikolaj Coster-Waldau worked with the Fox Broadcasting Company.",
         "output": [{"answer": "SUPPORTS",
                     "provenance": [prov("7712564", "Nikolaj Coster-Waldau")]}]}
WOW = {"id": "e2a6a9da-58d6-4ea4-a8da-44e7a5b8e8c9_1",
       "input": "Red hair\nI love red hair, it is the rarest natural colour.\n"
                "Yes, it occurs in 1-2% of the human population.\n\nDo you know where it is most "
                "common?",
       "output": [{"answer": "It is most common in Scotland and Ireland.",
                   "provenance": [prov("66585", "Red hair", 3)]}]}
TREX = {"id": "8a0c7e7e-7ef0-4d0b-9d1b-0f6c8b0c1c1f", "input": "Bubble Gum Crisis [SEP] genre",
        "output": [{"answer": "cyberpunk", "provenance": [prov("1149391", "Bubblegum Crisis")]},
                   {"answer": "cyberpunk fiction"}]}
ZSRE = {"id": "6ba07f0b-3c6c-4c35-8d3e-4ec2a2f0e1d2", "input": "Joseph Fisher [SEP] military branch",
        "output": [{"answer": "Royal Navy", "provenance": [prov("19842212", "Joseph Fisher")]},
                   {"answer": "RN"}]}

CASES = [  # (file name, record, task, output, answers)
    ("nq-train-kilt.jsonl", NQ, "nq", "the therefore sign",
     ["the therefore sign", "therefore sign"]),
    ("hotpotqa-train-kilt.jsonl", HOTPOT, "hotpotqa", "yes", ["yes"]),
    ("triviaqa-train-kilt.jsonl", TRIVIA, "nq", "Sunset Boulevard",
     ["Sunset Boulevard", "Sunset Blvd"]),
    ("eli5-train-kilt.jsonl", ELI5, "eli5", ELI5["output"][0]["answer"],
     [ELI5["output"][0]["answer"], ELI5["output"][1]["answer"]]),
    ("fever-train-kilt.jsonl", FEVER, "fever", "SUPPORTS", ["SUPPORTS"]),
    ("wow-train-kilt.jsonl", WOW, "wow", WOW["output"][0]["answer"], [WOW["output"][0]["answer"]]),
    ("trex-train-kilt.jsonl", TREX, "trex", "cyberpunk", ["cyberpunk", "cyberpunk fiction"]),
    ("structured_zeroshot-dev-kilt.jsonl", ZSRE, "zsre", "Royal Navy", ["Royal Navy", "RN"]),
]


@pytest.mark.parametrize(("name", "rec", "task", "output", "answers"), CASES,
                         ids=[c[2] + "-" + c[0].split("-")[0] for c in CASES])
def test_each_kilt_task_reads(tmp_path, name, rec, task, output, answers):
    res = convert("kilt", str(write_jsonl(tmp_path / name, [rec])))
    assert not res.skipped
    (s,) = res.records
    assert (s.id, s.task, s.output, s.answers, s.passages) == (f"kilt-{rec['id']}", task, output,
                                                              answers, [])
    assert s.instruction == get_task(task).instruction
    titles = [p["title"] for o in rec["output"] for p in o.get("provenance", [])]
    ids = [p["wikipedia_id"] for o in rec["output"] for p in o.get("provenance", [])]
    assert s.meta["provenance_titles"] == list(dict.fromkeys(titles))
    assert s.meta["provenance_wikipedia_ids"] == list(dict.fromkeys(ids))
    assert [p["start_paragraph_id"] for p in s.meta["provenance"]] == \
        [p["start_paragraph_id"] for o in rec["output"] for p in o.get("provenance", [])]


def test_wow_keeps_the_dialogue_turns_one_a_line(tmp_path):
    (s,) = convert("kilt", str(write_jsonl(tmp_path / "wow-dev-kilt.jsonl", [WOW]))).records
    assert s.input.split("\n") == ["Red hair", "I love red hair, it is the rarest natural colour.",
                                   "Yes, it occurs in 1-2% of the human population.",
                                   "Do you know where it is most common?"]


def test_slot_filling_keeps_subject_and_relation(tmp_path):
    (s,) = convert("kilt", str(write_jsonl(tmp_path / "trex-dev-kilt.jsonl", [TREX]))).records
    assert s.input == "Bubble Gum Crisis [SEP] genre"
    assert (s.meta["subject"], s.meta["relation"]) == ("Bubble Gum Crisis", "genre")


def test_bad_records_are_quarantined_with_location_and_field(tmp_path):
    no_answer = {"id": "2", "input": "q", "output": [{"provenance": [prov("1", "A")]}]}
    no_input = {"id": "tc_3", "output": [{"answer": "x"}]}  # TriviaQA ships ids only
    f = write_jsonl(tmp_path / "triviaqa-dev-kilt.jsonl", [TRIVIA, no_answer, no_input])
    res = convert("kilt", str(f))
    assert [s.id for s in res.records] == ["kilt-tc_69"]
    assert [(e.source, e.field) for e in res.skipped] == [(f"{f}:2", "output"), (f"{f}:3", "input")]
    assert "no answer" in res.skipped[0].reason


def test_fever_label_outside_the_set_is_quarantined(tmp_path):
    nei = {"id": 1, "input": "A claim.", "output": [{"answer": "NOT ENOUGH INFO"}]}
    f = write_jsonl(tmp_path / "fever-dev-kilt.jsonl", [nei, FEVER])
    res = convert("kilt", str(f))
    assert [s.output for s in res.records] == ["SUPPORTS"]
    (err,) = res.skipped
    assert (err.source, err.field) == (f"{f}:1", "output.0.answer")
    assert "NOT ENOUGH INFO" in err.reason


def test_slot_filling_without_sep_and_odd_shapes_are_quarantined(tmp_path):
    rows = [{"id": "a", "input": "no separator", "output": [{"answer": "x"}]},
            {"id": "b", "input": "s [SEP] r", "output": ["x"]},
            {"id": "c", "input": "s [SEP] r", "output": [{"answer": 3}]},
            {"id": "d", "input": "s [SEP] r", "output": [{"answer": "x", "provenance": "A"}]}]
    f = write_jsonl(tmp_path / "zsre-dev-kilt.jsonl", rows)
    res = convert("kilt", str(f))
    assert not res.records
    assert [e.field for e in res.skipped] == ["input", "output.0", "output.0.answer",
                                              "output.0.provenance"]


def test_task_from_file_name_or_argument(tmp_path):
    assert task_from_file_name("/data/nq/fever-train-kilt.jsonl") == "fever"  # the name decides
    assert task_from_file_name("structured_zeroshot-train-kilt.jsonl") == "zsre"
    assert task_from_file_name("zsre-dev-kilt.jsonl") == "zsre"
    f = write_jsonl(tmp_path / "questions.jsonl", [NQ])
    with pytest.raises(ValueError, match="names no KILT task"):
        convert("kilt", str(f))
    (s,) = convert("kilt", str(f), task="hotpotqa").records
    assert s.task == "hotpotqa" and "multi-hop" in s.instruction
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        convert("kilt", str(f), task="nope")


def test_select_converts_only_the_picked_records(tmp_path):
    rows = [dict(NQ, id=str(i)) for i in range(6)]
    f = tmp_path / "nq-dev-kilt.jsonl"
    f.write_text("\n" + "".join(json.dumps(r) + "\n\n" for r in rows))  # blank lines between
    res = convert("kilt", str(f), select={1, 4})
    assert [s.id for s in res.records] == ["kilt-1", "kilt-4"]
    assert [src for src, _ in iter_records(f, select=[4])] == [f"{f}:10"]


def test_select_keeps_the_single_object_refusal(tmp_path):
    f = tmp_path / "nq-one.json"
    f.write_text(json.dumps(NQ, indent=2))
    with pytest.raises(RecordError, match="single JSON object"):
        list(iter_records(f, select={5}))


# ------------------------------------------------------------------ the knowledge source

def page(wid: str, title: str, paragraphs: list[str]) -> dict:
    return {"_id": f"oid{wid}", "wikipedia_id": wid, "wikipedia_title": title,
            "text": [title + "\n", *paragraphs],
            "anchors": [{"paragraph_id": 1, "start": 0, "end": 4, "text": "link",
                         "href": "Other", "wikipedia_title": "Other", "wikipedia_id": "9"}],
            "categories": "Cats", "history": {"revid": 1, "timestamp": "2019-07-01T00:00:00Z",
                                              "parentid": 0, "pre_dump": True,
                                              "pageid": int(wid), "url": "https://en.wiki"}}


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


ADAMS = page("8091", "Douglas Adams", [
    words("a", 60) + "\n",
    "Section::::Early life.\n",
    "BULLET::::- " + words("b", 30) + "\n",
    "Section::::Career.:Radio.\n",
    words("c", 70) + "\n",
])


def test_pages_become_100_word_passages_across_paragraphs(tmp_path):
    f = write_jsonl(tmp_path / "kilt_knowledgesource.json", [ADAMS])
    ps = list(iter_kilt_passages(f, 100))
    assert [p.id for p in ps] == ["8091_0", "8091_1"]
    assert {p.title for p in ps} == {"Douglas Adams"}
    body = (words("a", 60) + " " + words("b", 30) + " " + words("c", 70)).split()
    assert ps[0].text.split() == body[:100] and ps[1].text.split() == body[100:]
    text = " ".join(p.text for p in ps)
    assert "Section::::" not in text and "BULLET" not in text and "Douglas" not in text
    assert [p.id for p in iter_kilt_passages(f, 50)] == [f"8091_{i}" for i in range(4)]


def test_bad_pages_are_reported_not_dropped(tmp_path):
    empty = page("12", "Stub", ["Section::::See also.\n"])
    no_title = {k: v for k, v in page("13", "X", ["text here"]).items() if k != "wikipedia_title"}
    f = tmp_path / "kilt_knowledgesource.json"
    f.write_text(json.dumps(ADAMS) + "\n{not json\n" + json.dumps(empty) + "\n"
                 + json.dumps(no_title) + "\n" + json.dumps(ADAMS) + "\n")
    errors: list[RecordError] = []
    ps = list(iter_kilt_passages(f, 100, errors.append))
    assert [p.id for p in ps] == ["8091_0", "8091_1"]
    assert [(e.source, e.field) for e in errors] == [
        (f"{f}:2", "(line)"), (f"{f}:3", "text"), (f"{f}:4", "wikipedia_title"),
        (f"{f}:5", "wikipedia_id")]
    assert "duplicate" in errors[-1].reason
    with pytest.raises(RecordError, match="invalid JSON"):  # no callback: strict
        list(iter_kilt_passages(f, 100))


def test_kilt_wikipedia_format_reads_small_files(tmp_path):
    other = page("290", "A", ["BULLET::::- " + words("x", 5)])
    f = write_jsonl(tmp_path / "kilt_knowledgesource.json", [ADAMS, other, ADAMS])
    assert FORMATS["kilt-wikipedia"].kind == "corpus"
    res = convert("kilt-wikipedia", str(f), passage_words=100)
    assert [p.id for p in res.records] == ["8091_0", "8091_1", "290_0"]
    assert all(isinstance(p, CorpusPassage) for p in res.records)
    assert res.records[2].text == words("x", 5)
    assert [(e.source, e.field) for e in res.skipped] == [(f"{f}:3", "wikipedia_id")]
    # limit counts passages, checked before each page (convert_each): a page comes whole
    assert [p.id for p in convert("kilt-wikipedia", str(f), limit=1).records] == \
        ["8091_0", "8091_1"]


def test_write_kilt_corpus_streams_to_our_corpus_jsonl(tmp_path):
    other = page("290", "A", [words("x", 250)])
    src = tmp_path / "kilt_knowledgesource.json"
    src.write_text(json.dumps(ADAMS) + "\n" + json.dumps(other) + "\nnot json\n")
    dst = tmp_path / "out" / "corpus.jsonl"
    counts = write_kilt_corpus(src, dst)
    assert counts == {"pages": 2, "passages": 5, "skipped": 1}
    rows = [o for _, o in iter_jsonl_objects(dst)]
    assert [r["id"] for r in rows] == ["8091_0", "8091_1", "290_0", "290_1", "290_2"]
    assert set(rows[0]) == {"id", "title", "text"}
    errs = [o for _, o in iter_jsonl_objects(dst.with_name("corpus.errors.jsonl"))]
    assert [e["source"] for e in errs] == [f"{src}:3"]
    assert not list(dst.parent.glob("*.tmp"))


def test_write_kilt_corpus_leaves_no_partial_output(tmp_path):
    src = write_jsonl(tmp_path / "kilt_knowledgesource.json", [ADAMS])
    dst = tmp_path / "corpus.jsonl"
    dst.write_text("old\n")

    def stop(err: RecordError) -> None:
        raise KeyboardInterrupt

    src.write_text(json.dumps(ADAMS) + "\nbroken\n")
    with pytest.raises(KeyboardInterrupt):
        write_kilt_corpus(src, dst, on_error=stop)
    assert dst.read_text() == "old\n" and not list(tmp_path.glob("*.tmp"))
