"""`scarlet evaluate retrieval` end to end with a tiny encoder on a tiny BEIR set."""

from __future__ import annotations

import json

import pytest
from eval_fixtures import DOCS, write_beir

from scarlet_ray.cli import main as cli
from scarlet_ray.datasets.beir import read_beir
from scarlet_ray.evaluation.retrieval import compute_metrics, read_trec_run
from scarlet_ray.formatting import passage_text
from scarlet_ray.records import RecordError


def _beir(tmp_path):
    text = {d: passage_text(t, x) for d, t, x in DOCS}
    # q1/q2 are exactly their relevant document's text: identical embeddings, cosine 1.0
    queries = {"q1": text["d1"], "q2": text["d3"], "q3": "a city in England"}
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}, "q3": {"d6": 1}}
    return write_beir(tmp_path / "beir", queries, qrels)


def test_evaluate_retrieval_cli_writes_consistent_outputs_and_caches(tmp_path, tiny_encoder,
                                                                      capsys):
    beir_dir = _beir(tmp_path)
    out = tmp_path / "out"
    argv = ["evaluate", "retrieval", "--model", str(tiny_encoder), "--beir", str(beir_dir),
            "--split", "test", "--output", str(out)]
    assert cli(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    run = read_trec_run(out / "run.trec")
    lines = (out / "run.trec").read_text().splitlines()
    assert len(lines) == 3 * len(DOCS)  # k >= 100 > 6 docs: every doc ranked per query
    first = {ln.split()[0]: ln.split() for ln in lines if ln.split()[3] == "1"}
    # the index stores fp16 vectors: a text against itself scores 1 to fp16's precision
    assert first["q1"][2] == "d1" and float(first["q1"][4]) == pytest.approx(1.0, abs=1e-3)
    assert first["q2"][2] == "d3"
    # metrics.json is what pytrec_eval says about the run file it sits beside
    qrels = read_beir(beir_dir, "test").qrels
    again = compute_metrics(qrels, run)
    for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10"):
        assert metrics[m] == pytest.approx(again[m], abs=1e-5)
    per_q = json.loads((out / "per_query.json").read_text())
    assert per_q["q1"]["ndcg@10"] == pytest.approx(1.0) and per_q["q1"]["mrr@10"] == 1.0
    assert metrics["recall@100"] == 1.0 and metrics["n_queries"] == 3
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["counts"]["docs_encoded"] == len(DOCS)
    assert "ndcg@10" in capsys.readouterr().out

    # rerun: corpus embeddings come from the cache, results identical
    assert cli(argv) == 0
    man2 = json.loads((out / "manifest.json").read_text())
    assert man2["counts"]["docs_encoded"] == 0 and man2["counts"]["docs_from_cache"] == len(DOCS)
    assert json.loads((out / "metrics.json").read_text())["ndcg@10"] == metrics["ndcg@10"]


def test_evaluate_retrieval_bad_input(tmp_path, tiny_encoder, capsys):
    beir_dir = _beir(tmp_path)
    rc = cli(["evaluate", "retrieval", "--model", str(tiny_encoder), "--beir", str(beir_dir),
              "--split", "dev", "--output", str(tmp_path / "o")])
    assert rc == 2
    assert "qrels" in capsys.readouterr().err
    rc = cli(["evaluate", "retrieval", "--model", str(tiny_encoder), "--beir",
              str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_corpus_cache_resumes_missing_shards_and_keys_on_weights(tmp_path, tiny_encoder):
    import numpy as np
    import torch

    from scarlet_ray.evaluation.dense import encode, encode_corpus
    from scarlet_ray.models.encoder import load_encoder

    model = load_encoder(str(tiny_encoder))
    ids = [d for d, _, _ in DOCS]
    texts = [passage_text(t, x) for _, t, x in DOCS]
    fresh = encode(model, texts)
    emb, info = encode_corpus(model, ids, texts, tmp_path, shard_size=2)
    assert info["encoded"] == len(DOCS) and np.allclose(emb, fresh, atol=1e-5)
    shards = sorted((tmp_path / f"corpus-{info['cache_key']}").glob("shard-*.npy"))
    assert len(shards) == 3
    shards[1].unlink()  # as if the run died while encoding the second shard
    emb2, info2 = encode_corpus(model, ids, texts, tmp_path, shard_size=2)
    assert info2["encoded"] == 2 and info2["cached"] == 4
    assert np.allclose(emb2, emb, atol=1e-6)
    with torch.no_grad():  # other weights under the same path: a different key, no stale reuse
        next(model.parameters()).add_(0.5)
    _, info3 = encode_corpus(model, ids, texts, tmp_path, shard_size=2)
    assert info3["cache_key"] != info["cache_key"] and info3["encoded"] == len(DOCS)


# ------------------------------------------------------------------ item 7: BEIR ids and qrels


def _retrieval_argv(tiny_encoder, beir_dir, out):
    return ["evaluate", "retrieval", "--model", str(tiny_encoder), "--beir", str(beir_dir),
            "--split", "test", "--output", str(out)]


@pytest.mark.parametrize("which", ["queries", "corpus"])
def test_duplicate_beir_id_is_an_error_naming_both_lines(tmp_path, tiny_encoder, capsys, which):
    """A duplicated query (or document) silently replaced the first: nDCG@10 0.923 -> 0.794."""
    beir_dir = _beir(tmp_path)
    f = beir_dir / f"{which}.jsonl"
    lines = f.read_text().splitlines()
    dup = {"_id": "q1", "text": "another question"} if which == "queries" else \
        {"_id": "d2", "title": "B", "text": "another document"}
    f.write_text("\n".join([*lines, json.dumps(dup)]) + "\n")
    first = 1 if which == "queries" else 2
    with pytest.raises(RecordError) as exc:
        read_beir(beir_dir, "test")
    assert exc.value.source == f"{f}:{len(lines) + 1}" and exc.value.field == "_id"
    rc = cli(_retrieval_argv(tiny_encoder, beir_dir, tmp_path / "out"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert f"{f}:{len(lines) + 1}" in err and repr(dup["_id"]) in err
    assert f"first at {f}:{first}" in err


def test_qrels_pointing_nowhere_are_counted_warned_and_kept_as_beir_does(tmp_path, tiny_encoder,
                                                                        caplog):
    """Real BEIR sets ship such qrels (ArguAna, NFCorpus): counted and reported, not refused."""
    from scarlet_ray.evaluation.retrieval import evaluate_dense
    from scarlet_ray.models.encoder import load_encoder

    text = {d: passage_text(t, x) for d, t, x in DOCS}
    qrels = {"q1": {"d1": 1, "d404": 1}, "q2": {"d3": 1}, "q9": {"d2": 1}}
    beir_dir = write_beir(tmp_path / "beir", {"q1": text["d1"], "q2": text["d3"]}, qrels)
    tsv = beir_dir / "qrels" / "test.tsv"
    with caplog.at_level("WARNING"):
        beir = read_beir(beir_dir, "test")
    assert beir.unknown_docs == [f"{tsv}:3: q1 d404"]
    assert beir.queries_without_text == [f"{tsv}:5: q9"]
    assert "1 qrels name a document not in the corpus" in caplog.text
    assert "1 queries with qrels are not in queries.jsonl" in caplog.text
    res = evaluate_dense(load_encoder(str(tiny_encoder)), beir)
    assert res["info"]["qrels_unknown_docs"] == 1
    assert res["info"]["qrels_queries_without_text"] == 1
    assert set(res["per_query"]) == {"q1", "q2"}
    # the missing document stays judged, as in BEIR's evaluation: q1 can find only half
    assert res["per_query"]["q1"]["recall@100"] == pytest.approx(0.5)


# ------------------------------------------------------------------ item 11: progress


def test_corpus_encoding_shows_progress_off_a_terminal(tmp_path, tiny_encoder, capfd):
    """The quickstart's context stage printed nothing while it encoded the corpus."""
    from scarlet_ray.index.build import ensure
    from scarlet_ray.models.encoder import load_encoder
    from scarlet_ray.records import CorpusPassage

    passages = [CorpusPassage(id=d, title=t, text=x) for d, t, x in DOCS]
    model = load_encoder(str(tiny_encoder))
    capfd.readouterr()
    # progress=False is what `scarlet context` passes when stderr is no terminal
    ensure(tmp_path / "index", passages, model, "tiny", None, progress=False)
    err = capfd.readouterr().err
    assert "encode corpus" in err and f"{len(DOCS)}/{len(DOCS)}" in err
    again = ensure(tmp_path / "index", passages, model, "tiny", None, progress=False)
    assert again.loaded_from_disk
    assert "encode corpus" not in capfd.readouterr().err  # reloaded: nothing encoded
