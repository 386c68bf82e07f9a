"""Stage 1 end to end on real HotpotQA seeds: entities, expansion, retrieval, resume, faults."""

from __future__ import annotations

import json

import pytest
from context_support import free_port

from scarlet_ray.cli import main as cli
from scarlet_ray.context.build import load_corpus
from scarlet_ray.context.entities import EntityExtractor
from scarlet_ray.datasets import convert
from scarlet_ray.records import Sample, read_jsonl, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def extractor():
    return EntityExtractor()


def test_entities_of_input_and_output(extractor):
    seeds = [
        Sample(id="a", task="nq", input="Where was Barack Obama born?", output="Honolulu, Hawaii"),
        Sample(id="b", task="nq", input="is it good?", output="yes"),
        Sample(id="c", task="nq", input="Which is first, the second or the third?",
               output="the first one"),
    ]
    ents = extractor.extract_seeds(seeds)
    assert "Barack Obama" in ents[0] and ("Honolulu" in ents[0] or "Hawaii" in ents[0])
    assert ents[1] == []
    assert ents[2] == []  # ordinals are no anchors by default
    assert EntityExtractor(extractor.nlp, exclude=()).extract([seeds[2].input])  # unless asked


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory):
    """5 HotpotQA seeds (+ one without entities, + one broken line) and a small corpus: their
    paragraphs plus 60 FlashRAG passages."""
    d = tmp_path_factory.mktemp("context-inputs")
    seeds = convert("hotpotqa", str(shared_data / "hotpotqa" / "hotpotqa_train.json"),
                    limit=5, passage_words=100).records
    corpus = [{"id": f"{s.id}-{p.id}", "title": p.title, "text": p.text}
              for s in seeds for p in s.passages]
    write_jsonl(d / "corpus.jsonl", corpus)
    flash = [json.loads(x) for x in
             (shared_data / "flashrag" / "sample_data.jsonl").read_text().splitlines()[:60]]
    write_jsonl(d / "flash.jsonl", flash)
    no_entity = Sample(id="no-entity", task="nq", input="is it good?", output="yes")
    bare = Sample(id="bare", task="nq", input=seeds[0].input, output=seeds[0].output)
    write_jsonl(d / "seeds.jsonl", [*seeds, no_entity, bare])
    with open(d / "seeds.jsonl", "a") as fh:
        fh.write('{"id": "broken", "task": "nq"}\n')
    return d, seeds


def _run(d, out, *extra):
    return cli(["context", "--seeds", str(d / "seeds.jsonl"), "--corpus", str(d / "corpus.jsonl"),
                "--corpus", f"flashrag-corpus:{d / 'flash.jsonl'}", "--output", str(out),
                "--set", "context.corpus_graph_ner=false",
                "--set", f"context.index_dir={d / 'index'}", *extra])


def _errors(out):
    return [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]


def test_context_end_to_end_and_resume(inputs, tmp_path):
    d, seeds = inputs
    out = tmp_path / "ctx"
    assert _run(d, out) == 0
    samples = read_jsonl(out / "contexts.jsonl", Sample).records
    assert [s.id for s in samples] == [s.id for s in seeds] + ["bare"]
    by_id = {s.id: s for s in seeds}
    for s in samples:
        assert len(s.passages) == 10
        meta = s.meta
        assert meta["entities"] and meta["knowledge"] == "corpus"
        assert set(meta["provenance"]) == {p.id for p in s.passages}
        queries = set(meta["entities"]) | set(meta["expanded"])
        assert all(q in queries for qs in meta["provenance"].values() for q in qs)
        scores = [meta["scores"][p.id] for p in s.passages]
        assert scores == sorted(scores, reverse=True)
        if s.id in by_id:
            seed = by_id[s.id]
            assert (s.input, s.output, s.answers) == (seed.input, seed.output, seed.answers)
            gold_titles = {p.title for p in seed.passages if p.id in seed.gold_passage_ids}
            assert {p.title for p in s.passages if p.id in s.gold_passage_ids} <= gold_titles
        else:
            assert s.gold_passage_ids == []  # a seed without passages has no gold to match
    assert sum(bool(s.gold_passage_ids) for s in samples) >= 3  # own paragraphs are found
    assert sum(len(s.meta["expanded"]) for s in samples) > 0
    errors = _errors(out)
    assert {(e["id"], e["field"]) for e in errors} == {("no-entity", "entities"),
                                                       ("broken", "input")}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["written"] == 6 and manifest["counts"]["no_entity"] == 1

    before = (out / "contexts.jsonl").read_text()
    assert _run(d, out) == 0  # rerun: nothing to do, nothing duplicated
    assert (out / "contexts.jsonl").read_text() == before
    assert _errors(out) == errors
    assert json.loads((out / "manifest.json").read_text())["counts"]["todo"] == 0

    lines = before.splitlines(keepends=True)  # a crash that lost the last line, half written
    (out / "contexts.jsonl").write_text("".join(lines[:-1]) + lines[-1][:40])
    assert _run(d, out) == 0
    redone = read_jsonl(out / "contexts.jsonl", Sample).records  # strict: no torn line left
    assert [s.id for s in redone] == [s.id for s in samples]
    assert "torn last line" in _errors(out)[-1]["reason"]
    m = json.loads((out / "manifest.json").read_text())["counts"]
    assert m["todo"] == 1 and m["index_reloaded"] is True
    assert (d / "index" / "corpus_graph.json").exists()  # the graph is cached too


def test_unreachable_endpoint_records_skips_and_run_completes(inputs, tmp_path):
    d, seeds = inputs
    out = tmp_path / "ctx-sparql"
    dead = f"http://127.0.0.1:{free_port()}/sparql"
    assert _run(d, out, "--set", "context.knowledge=sparql", "--set", f"context.endpoint={dead}",
                "--set", "context.retries=1", "--set", "context.backoff_s=0.01",
                "--set", "context.timeout_s=2", "--set", "data.seed_limit=4") == 0
    samples = read_jsonl(out / "contexts.jsonl", Sample).records
    assert [s.id for s in samples] == [s.id for s in seeds[:4]]  # data.seed_limit applies
    assert all(s.meta["expanded"] == [] and s.meta["knowledge"] == "sparql" for s in samples)
    skips = [e for e in _errors(out) if e["field"] == "expand"]
    assert skips and all("127.0.0.1" in e["reason"] for e in skips)
    assert any("connection failed" in e["reason"] for e in skips)
    assert any("in a row failed" in e["reason"] for e in skips)  # gave up quickly after that


def test_corpus_inputs(inputs, tmp_path):
    d, _ = inputs
    ps, errs = load_corpus([str(d / "corpus.jsonl"), f"flashrag-corpus:{d / 'flash.jsonl'}"],
                           passage_words=100)
    assert len(ps) >= 60 and not errs
    dup = tmp_path / "dup.jsonl"
    write_jsonl(dup, [{"id": ps[0].id, "title": "x", "text": "another text"}])
    with pytest.raises(ValueError, match="already used"):
        load_corpus([str(d / "corpus.jsonl"), str(dup)])
    with pytest.raises(FileNotFoundError):
        load_corpus([str(tmp_path / "missing.jsonl")])
    with pytest.raises(ValueError, match="reads samples"):
        load_corpus([f"hotpotqa:{d / 'corpus.jsonl'}"])
    assert cli(["context", "--seeds", str(tmp_path / "nope.jsonl"), "--corpus",
                str(d / "corpus.jsonl"), "--output", str(tmp_path / "o")]) == 2


def test_context_from_a_built_index_matches_the_stage_own_index(inputs, tmp_path, tiny_encoder,
                                                                 capsys):
    """`scarlet index build` once, then `scarlet context --index`: no corpus is read or
    encoded, and the contexts are the ones the stage's own (exact) index gives."""
    d, _ = inputs
    own = tmp_path / "own"
    assert _run(d, own) == 0
    ix = tmp_path / "ix"
    assert cli(["index", "build", "--corpus", str(d / "corpus.jsonl"), "--corpus",
                f"flashrag-corpus:{d / 'flash.jsonl'}", "--output", str(ix)]) == 0
    via = tmp_path / "via-index"
    argv = ["context", "--seeds", str(d / "seeds.jsonl"), "--index", str(ix), "--output",
            str(via), "--set", "context.corpus_graph_ner=false"]
    assert cli(argv) == 0
    assert (via / "contexts.jsonl").read_text() == (own / "contexts.jsonl").read_text()
    assert not (via / "index").exists()  # nothing encoded: the passages came from the store
    man = json.loads((via / "manifest.json").read_text())
    assert man["counts"]["index"]["kind"] == "flat" and man["counts"]["index_reloaded"]
    capsys.readouterr()
    # an index built with another encoder than models.retriever: one line, exit 2
    rc = cli([*argv[:-2], "--output", str(tmp_path / "other"),
              "--set", f"models.retriever={tiny_encoder}"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "built with another encoder" in err, err
