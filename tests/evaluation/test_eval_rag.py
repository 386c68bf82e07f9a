"""`scarlet evaluate rag`: retrieval + greedy generation + per-task scores, resumable."""

from __future__ import annotations

import json

import pytest
from eval_fixtures import DOCS, write_corpus

from scarlet_ray.cli import main as cli
from scarlet_ray.evaluation.metrics import references, score
from scarlet_ray.evaluation.rag import generate_batch, read_predictions
from scarlet_ray.formatting import passage_text
from scarlet_ray.records import write_jsonl

TEXT = {d: passage_text(t, x) for d, t, x in DOCS}
# each sample's input is exactly one corpus document's text: that document must come first
SAMPLES = [
    ("s1", "nq", "d1", "Paris", ["p0"]),
    ("s2", "hotpotqa", "d4", "Radiohead", ["p0", "p1"]),
    ("s3", "eli5", "d3", "He wrote a comic science fiction series.", ["p1"]),
    ("s4", "wow", "d6", "Cambridge is in England.", []),  # no gold ids: no ceiling row
]


def _samples(path):
    rows = []
    for sid, task, doc, out, gold in SAMPLES:
        passages = [{"id": f"p{i}", "title": DOCS[i][1], "text": DOCS[i][2]} for i in range(3)]
        rows.append({"id": sid, "task": task, "input": TEXT[doc], "output": out,
                     "passages": passages, "gold_passage_ids": gold})
    write_jsonl(path, rows)
    return path


def _argv(tmp_path, tiny_llama, tiny_encoder, out, *extra):
    return ["evaluate", "rag", "--model", str(tiny_encoder),
            "--samples", str(_samples(tmp_path / "samples.jsonl")),
            "--corpus", str(write_corpus(tmp_path / "corpus.jsonl")), "--output", str(out),
            "--set", f"models.generator={tiny_llama}", "--set", "models.dtype=float32",
            "--set", "evaluation.max_new_tokens=4", "--set", "evaluation.rag_batch_size=3",
            # plain queries: each input is a corpus document's exact text, which must rank first
            "--set", "evaluation.query_instruction=''", *extra]


def test_evaluate_rag_runs_scores_and_resumes(tmp_path, tiny_llama, tiny_encoder, capsys):
    out = tmp_path / "rag"
    assert cli(_argv(tmp_path, tiny_llama, tiny_encoder, out, "--set", "evaluation.limit=2")) == 0
    assert len(read_predictions(out / "predictions.jsonl")) == 2
    # a crash mid-append leaves a torn line; the rerun cuts it and finishes the rest
    with open(out / "predictions.jsonl", "a") as fh:
        fh.write('{"id": "s3", "task": "el')
    assert cli(_argv(tmp_path, tiny_llama, tiny_encoder, out)) == 0
    lines = (out / "predictions.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]  # every line is whole JSON again
    assert sorted(r["id"] for r in rows) == ["s1", "s2", "s3", "s4"]  # no duplicates
    man = json.loads((out / "manifest.json").read_text())
    assert man["counts"]["resumed"] == 2 and man["counts"]["generated_now"] == 2
    assert man["status"] == "complete"
    assert man["timings"]["generate_s"] > 0 and man["timings"]["total_s"] > 0

    want_doc = {sid: doc for sid, _, doc, _, _ in SAMPLES}
    for r in rows:
        assert r["passage_ids"]["retrieved"][0] == want_doc[r["id"]]
        assert len(r["passage_ids"]["retrieved"]) == 3  # evaluation.rag_top_k
        assert r["passage_ids"]["none"] == []
        conds = {"retrieved", "none"} | ({"gold"} if r["id"] != "s4" else set())
        assert set(r["predictions"]) == conds == set(r["scores"])
        for c in conds:  # the stored score is the task metric of the stored prediction
            assert r["scores"][c] == pytest.approx(score(r["metric"], r["predictions"][c],
                                                         r["references"]))
    assert {r["id"]: r["metric"] for r in rows} == {"s1": "substring", "s2": "substring",
                                                   "s3": "rougeL", "s4": "f1"}
    gold = {r["id"]: r["passage_ids"].get("gold") for r in rows}
    assert gold["s2"] == ["p0", "p1"] and gold["s4"] is None

    metrics = json.loads((out / "metrics.json").read_text())
    for c, n in (("retrieved", 4), ("none", 4), ("gold", 3)):
        m = metrics["conditions"][c]
        vals = [r["scores"][c] for r in rows if c in r["scores"]]
        assert m["n"] == n and m["overall"] == pytest.approx(sum(vals) / n)
        assert set(m["per_task"]) == {r["task"] for r in rows if c in r["scores"]}
    assert "retrieved" in capsys.readouterr().out

    # the same output dir with another retriever is refused rather than mixed
    capsys.readouterr()
    argv = _argv(tmp_path, tiny_llama, tiny_encoder, out, "--set", "evaluation.rag_top_k=2")
    assert cli(argv) == 2
    assert "written with other settings (evaluation.rag_top_k)" in capsys.readouterr().err


def test_unknown_task_is_a_clear_error(tmp_path, tiny_llama, tiny_encoder, capsys):
    p = tmp_path / "bad.jsonl"
    write_jsonl(p, [{"id": "x1", "task": "nosuchtask", "input": "q", "output": "a",
                     "passages": [{"id": "p0", "text": "t"}]}])
    argv = ["evaluate", "rag", "--model", str(tiny_encoder), "--samples", str(p),
            "--corpus", str(write_corpus(tmp_path / "c.jsonl")), "--output", str(tmp_path / "o")]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "x1" in err and "nosuchtask" in err


def test_left_padded_batch_equals_one_by_one(tiny_llama):
    from scarlet_ray.models.generator import load_generator

    gen = load_generator(str(tiny_llama), dtype="float32", device="cpu")
    prompts = [gen.prompt_ids("Answer.", [], q) for q in
               ("short", "a much longer question about the capital of France and Germany", "x y")]
    assert len({len(p) for p in prompts}) == 3
    batched = generate_batch(gen, prompts, max_new_tokens=6)
    single = [generate_batch(gen, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single


@pytest.mark.slow
def test_rag_smollm2_on_hotpotqa(tmp_path, shared_data, capsys):
    """The real generator and retriever on three HotpotQA questions (their 30 paragraphs as the
    corpus): the retriever finds gold paragraphs and every condition produces an answer."""
    from scarlet_ray.datasets import convert

    samples = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"),
                      limit=3).records
    write_jsonl(tmp_path / "s.jsonl", samples)
    corpus = [{"id": f"{s.id}/{p.id}", "title": p.title, "text": p.text}
              for s in samples for p in s.passages]
    write_jsonl(tmp_path / "c.jsonl", corpus)
    out = tmp_path / "rag"
    argv = ["evaluate", "rag", "--model", "all-minilm-l6-v2", "--samples",
            str(tmp_path / "s.jsonl"), "--corpus", str(tmp_path / "c.jsonl"),
            "--output", str(out), "--set", "evaluation.max_new_tokens=8"]
    assert cli(argv) == 0
    rows = read_predictions(out / "predictions.jsonl")
    assert len(rows) == 3
    hits = 0
    for r, s in zip(sorted(rows, key=lambda r: r["id"]), sorted(samples, key=lambda s: s.id),
                    strict=True):
        gold = {f"{s.id}/{g}" for g in s.gold_passage_ids}
        hits += bool(gold & set(r["passage_ids"]["retrieved"]))
        assert all(r["predictions"][c].strip() for c in ("retrieved", "none", "gold"))
        assert r["references"] == references(s.output, s.answers)
    assert hits >= 2, "MiniLM should put a gold paragraph in the top 3 for most questions"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["conditions"]["gold"]["n"] == 3
    print(capsys.readouterr().out)


def test_rag_from_a_built_index_retrieves_what_the_corpus_gives(tmp_path, tiny_llama,
                                                                 tiny_encoder, capsys):
    """`--index` instead of `--corpus`: the same passages reach the generator, nothing is
    encoded in the evaluation's folder, and an index of another encoder is refused."""
    own = tmp_path / "own"
    assert cli(_argv(tmp_path, tiny_llama, tiny_encoder, own)) == 0
    ix = tmp_path / "ix"
    assert cli(["index", "build", "--corpus", str(tmp_path / "corpus.jsonl"), "--output", str(ix),
                "--set", f"models.retriever={tiny_encoder}"]) == 0
    argv = _argv(tmp_path, tiny_llama, tiny_encoder, tmp_path / "via")
    i = argv.index("--corpus")
    via_argv = [*argv[:i], *argv[i + 2:], "--index", str(ix)]
    assert cli(via_argv) == 0

    def retrieved(out):
        return {r["id"]: r["passage_ids"]["retrieved"] for r in read_predictions(
            out / "predictions.jsonl")}

    assert retrieved(tmp_path / "via") == retrieved(own)
    assert not (tmp_path / "via" / "cache" / "index").exists()
    capsys.readouterr()
    j = via_argv.index("--model")
    other = [*via_argv[:j + 1], "all-minilm-l6-v2", *via_argv[j + 2:]]
    other[other.index("--output") + 1] = str(tmp_path / "other")
    assert cli(other) == 2
    assert "built with another encoder" in capsys.readouterr().err.strip().splitlines()[-1]
