"""Index folders (`scarlet index build`): counts and quarantine, exact search, resume by shard,
reruns that change one setting, Ray Data encoder actors, and every bad input in one line."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from scarlet_ray.cli import main as cli
from scarlet_ray.context.ann import AnnSpec
from scarlet_ray.errors import FingerprintMismatch, Interrupted
from scarlet_ray.formatting import passage_text
from scarlet_ray.index.build import build, iter_specs, specs_signature
from scarlet_ray.index.folder import IndexFolder, encoder_settings
from scarlet_ray.records import CorpusPassage

WORDS = ["river", "harbour", "castle", "violin", "glacier", "orchard", "comet", "lantern",
         "meadow", "falcon", "canyon", "pepper", "marble", "tunnel", "saddle", "island",
         "thunder", "copper", "garden", "rocket", "bishop", "walnut", "compass"]


def passages(n: int = 23) -> list[CorpusPassage]:
    return [CorpusPassage(id=f"p{i}", title=f"{WORDS[i % len(WORDS)].title()} {i // 5}",
                          text=f"{WORDS[i % len(WORDS)]} and {WORDS[(7 * i + 3) % len(WORDS)]} "
                               f"near the {WORDS[(3 * i + 1) % len(WORDS)]} number {i}")
            for i in range(n)]


def write_corpus(path, ps, extra=()):
    lines = [json.dumps(p.model_dump()) for p in ps] + list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def enc(tiny_encoder):
    from scarlet_ray.models.encoder import load_encoder

    return load_encoder(str(tiny_encoder))


def _build(tmp_path, tiny_encoder, corpus, out, *sets, shard_size=5):
    return cli(["index", "build", "--corpus", str(corpus), "--output", str(out),
                "--set", f"models.retriever={tiny_encoder}",
                "--set", f"index.shard_size={shard_size}",
                *[x for s in sets for x in ("--set", s)]])


def test_build_counts_quarantine_and_search_is_exact(tmp_path, tiny_encoder, enc, capsys):
    ps = passages()
    corpus = write_corpus(tmp_path / "c.jsonl", ps, extra=[
        "{not json",                                                   # line 24: bad JSON
        json.dumps({"id": "nt", "title": "No text"}),                   # line 25: no text
        json.dumps({"id": "p3", "title": "Clash", "text": "another"}),  # line 26: id clash
        json.dumps(ps[4].model_dump()),                                 # line 27: exact dup
    ])
    out = tmp_path / "ix"
    assert _build(tmp_path, tiny_encoder, corpus, out) == 0
    assert "passages" in capsys.readouterr().out
    rec = json.loads((out / "index.json").read_text())
    assert rec["counts"] == {"passages": 23, "shards": 5, "quarantined": 2, "refused": 1,
                             "duplicates": 1, "encoded_now": 23}
    assert rec["dim"] == 32 and rec["normalized"] and rec["dtype"] == "float16"
    assert rec["vector_settings"] == encoder_settings(enc, 100)  # data.passage_words default
    errs = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["source"] for e in errs) == [f"{corpus}:{n}" for n in (24, 25, 26)]
    assert any("already used by row 3" in e["reason"] for e in errs)
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["stage"] == "index"
    assert man["peak_rss_mb"] > 0 and man["index_fingerprint"] == rec["fingerprint"]

    ix = IndexFolder.open(out, encoder_settings(enc, 100))
    assert len(ix) == 23 and ix.passages.by_ids(["p3"])["p3"].text == ps[3].text
    assert [p.id for p in ix.passages] == [p.id for p in ps]
    q = enc.encode([passage_text(p.title, p.text) for p in ps], normalize_embeddings=True)
    hits = ix.search(q, 7)
    vecs = ix.shards.take(range(23)).astype(np.float64)
    for i, h in enumerate(hits):
        exact = q[i].astype(np.float64) @ vecs.T
        ref = sorted(range(23), key=lambda j, e=exact: (-e[j], j))[:7]
        assert [r for r, _ in h] == ref and h[0][0] == i  # a passage finds itself first
        assert [s for _, s in h] == pytest.approx([exact[j] for j in ref], abs=1e-12)
    assert ix.search_ids(q[:1], 1) == [[("p0", hits[0][0][1])]]


class StopAfter:
    """The real encoder, stopped (as Ctrl-C would) when it starts on its ``n``-th call."""

    def __init__(self, enc, n: int | None):
        self.enc, self.n, self.calls, self.texts = enc, n, 0, 0

    def encode(self, texts, **kw):
        self.calls += 1
        if self.n is not None and self.calls >= self.n:
            raise Interrupted(signal.SIGINT)
        self.texts += len(texts)
        return self.enc.encode(texts, **kw)

    def get_sentence_embedding_dimension(self):
        return self.enc.get_sentence_embedding_dimension()


def test_killed_build_resumes_without_encoding_a_shard_twice(tmp_path, enc):
    corpus = write_corpus(tmp_path / "c.jsonl", passages())
    settings = encoder_settings(enc, None)
    out = tmp_path / "ix"

    def run(encoder):
        return build(out, iter_specs([str(corpus)]), specs_signature([str(corpus)]), settings,
                     AnnSpec("flat"), encoder_ref="tiny", load_encoder=lambda: encoder,
                     shard_size=5, batch_size=2, progress=False)

    first = StopAfter(enc, 3)  # batch_size 2 x 4 batches per call: dies in the third shard
    with pytest.raises(Interrupted):
        run(first)
    done = sorted(p.name for p in (out / "shards").glob("emb-*.npy"))
    assert done == ["emb-00000.npy", "emb-00001.npy"] and not (out / "index.json").exists()
    with pytest.raises(ValueError, match="build in progress"):
        IndexFolder.open(out)
    stamps = {n: (out / "shards" / n).stat().st_mtime_ns for n in done}
    second = StopAfter(enc, None)
    rec = run(second)
    assert second.texts == 13 and rec["counts"]["encoded_now"] == 13  # shards 2, 3, 4 only
    assert {n: (out / "shards" / n).stat().st_mtime_ns for n in done} == stamps
    fresh = tmp_path / "fresh"
    build(fresh, iter_specs([str(corpus)]), specs_signature([str(corpus)]), settings,
          AnnSpec("flat"), encoder_ref="tiny", load_encoder=lambda: enc, shard_size=5,
          batch_size=2, progress=False)
    for s in range(5):  # the resumed index holds what an uninterrupted build holds
        a = np.load(out / "shards" / f"emb-{s:05d}.npy")
        b = np.load(fresh / "shards" / f"emb-{s:05d}.npy")
        assert np.array_equal(a, b)
    # the corpus changed under an interrupted build: refused, not mixed
    (out / "index.json").unlink()
    write_corpus(corpus, passages(24))
    with pytest.raises(FingerprintMismatch, match="another corpus"):
        build(out, iter_specs([str(corpus)]), specs_signature([str(corpus)]), settings,
              AnnSpec("flat"), encoder_ref="tiny", load_encoder=lambda: enc, shard_size=5)


def test_rerun_with_one_setting_changed(tmp_path, tiny_encoder, enc, capsys):
    ps = passages(300)
    corpus = write_corpus(tmp_path / "c.jsonl", ps)
    out = tmp_path / "ix"
    assert _build(tmp_path, tiny_encoder, corpus, out, shard_size=64) == 0
    flat = IndexFolder.open(out)
    q = enc.encode([passage_text(p.title, p.text) for p in ps], normalize_embeddings=True)
    exact = flat.search(q, 10)
    assert _build(tmp_path, tiny_encoder, corpus, out, shard_size=64) == 0  # same settings: nothing to do
    assert json.loads((out / "index.json").read_text())["counts"]["encoded_now"] == 0
    stamp = (out / "shards" / "emb-00000.npy").stat().st_mtime_ns

    # another ANN kind: only the ANN part is built, over the same shards
    assert _build(tmp_path, tiny_encoder, corpus, out, "index.kind=ivf", "index.nlist=2",
                  "index.nprobe=2", "index.train_size=60", shard_size=64) == 0
    rec = json.loads((out / "index.json").read_text())
    assert rec["ann"]["kind"] == "ivf" and rec["counts"]["encoded_now"] == 0
    assert (out / "shards" / "emb-00000.npy").stat().st_mtime_ns == stamp
    assert IndexFolder.open(out).search(q, 10) == exact  # every cell probed: exact again
    assert _build(tmp_path, tiny_encoder, corpus, out, "index.kind=ivfpq", "index.nlist=2",
                  "index.nprobe=2", "index.pq_m=8", "index.rerank=3", shard_size=64) == 0
    pq = IndexFolder.open(out)
    assert pq.kind == "ivfpq" and pq.rerank == 3
    got = pq.search(q, 10)
    assert all(h[0][0] == i for i, h in enumerate(got))  # re-ranked exactly from the shards
    overlap = np.mean([len({r for r, _ in a} & {r for r, _ in b}) / 10
                       for a, b in zip(got, exact, strict=True)])
    assert overlap > 0.8
    assert rec["bytes"]["shards"] > 0
    small = write_corpus(tmp_path / "small.jsonl", ps[:100])
    capsys.readouterr()
    rc = _build(tmp_path, tiny_encoder, small, tmp_path / "small", "index.kind=ivfpq",
                "index.pq_m=8")  # 8-bit codes: 256 centroids per sub-quantiser to train
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "at least 256" in err, err

    # another encoder on the same folder: the stage refuses it in one line
    capsys.readouterr()
    rc = cli(["index", "build", "--corpus", str(corpus), "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and "models.retriever" in err and "--restart" in err, err


def _beir(tmp_path):
    from eval_fixtures import DOCS, write_beir  # noqa: F401 - tests/evaluation on sys.path

    text = {d: passage_text(t, x) for d, t, x in DOCS}
    return write_beir(tmp_path / "beir", {"q1": text["d1"], "q2": text["d3"],
                                          "q3": "a city in England"},
                      {"q1": {"d1": 1}, "q2": {"d3": 1}, "q3": {"d6": 1, "gone": 1}})


def test_evaluations_share_the_index_and_refuse_bad_ones(tmp_path, tiny_encoder, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "evaluation"))
    beir_dir = _beir(tmp_path)
    ix = tmp_path / "ix"
    assert _build(tmp_path, tiny_encoder, f"beir:{beir_dir}", ix, "data.passage_words=50") == 0

    def evaluate(out, *extra):
        return cli(["evaluate", "retrieval", "--model", str(tiny_encoder), "--beir",
                    str(beir_dir), "--output", str(tmp_path / out),
                    "--set", "data.passage_words=50", *extra])

    assert evaluate("own") == 0
    assert evaluate("shared", "--index", str(ix)) == 0
    own = json.loads((tmp_path / "own" / "metrics.json").read_text())
    shared = json.loads((tmp_path / "shared" / "metrics.json").read_text())
    for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10", "n_docs", "qrels_unknown_docs"):
        assert shared[m] == own[m], m
    assert shared["qrels_unknown_docs"] == 1
    assert (tmp_path / "own" / "run.trec").read_text().replace("own", "") == \
        (tmp_path / "shared" / "run.trec").read_text().replace("shared", "")
    assert not (tmp_path / "shared" / "cache" / "index").exists()  # nothing encoded there

    def refused(*argv, match):
        capsys.readouterr()
        rc = cli(list(argv))
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err and match in err[-1], err
        assert err[-1].startswith("scarlet ")

    # another encoder (the named default) than the index's
    refused("evaluate", "retrieval", "--model", "all-minilm-l6-v2", "--beir", str(beir_dir),
            "--output", str(tmp_path / "o1"), "--index", str(ix), "--set",
            "data.passage_words=50", match="built with another encoder")
    # other chunking than the index's
    refused(*["evaluate", "retrieval", "--model", str(tiny_encoder), "--beir", str(beir_dir),
              "--output", str(tmp_path / "o2"), "--index", str(ix)],
            match="built with another passage_words")
    bad = ["evaluate", "retrieval", "--model", str(tiny_encoder), "--beir", str(beir_dir),
           "--set", "data.passage_words=50", "--index"]
    refused(*bad, str(tmp_path / "nowhere"), "--output", str(tmp_path / "o3"),
            match="not an index folder")
    (tmp_path / "plain").mkdir()
    refused(*bad, str(tmp_path / "plain"), "--output", str(tmp_path / "o3"),
            match="not an index folder")
    shard = ix / "shards" / "emb-00001.npy"
    blob = shard.read_bytes()
    shard.write_bytes(blob[: len(blob) // 2])  # a torn copy
    refused(*bad, str(ix), "--output", str(tmp_path / "o4"), match="corrupt shard")
    shard.unlink()
    refused(*bad, str(ix), "--output", str(tmp_path / "o5"), match="missing shard")
    shard.write_bytes(blob)
    rec = json.loads((ix / "index.json").read_text())
    (ix / "index.json").write_text(json.dumps({**rec, "dim": 16}))
    refused(*bad, str(ix), "--output", str(tmp_path / "o6"), match="the index records float16")
    (ix / "index.json").unlink()
    refused(*bad, str(ix), "--output", str(tmp_path / "o7"), match="build in progress")

    # bad corpora for the build itself
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    refused("index", "build", "--corpus", str(empty), "--output", str(tmp_path / "e"),
            "--set", f"models.retriever={tiny_encoder}", match="no passages to index")
    refused("index", "build", "--corpus", str(tmp_path), "--output", str(tmp_path / "e2"),
            "--set", f"models.retriever={tiny_encoder}", match="is a directory")
    refused("index", "build", "--corpus", str(tmp_path / "missing.jsonl"), "--output",
            str(tmp_path / "e3"), "--set", f"models.retriever={tiny_encoder}",
            match="not found")


@pytest.mark.slow
def test_ray_encoder_actors_write_the_same_shards(tmp_path, tiny_encoder, enc):
    corpus = write_corpus(tmp_path / "c.jsonl", passages(40))
    assert _build(tmp_path, tiny_encoder, corpus, tmp_path / "local") == 0
    assert _build(tmp_path, tiny_encoder, corpus, tmp_path / "ray", "index.runner=ray",
                  "index.num_actors=2") == 0
    man = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert man["status"] == "complete" and man["runner"] == "ray"
    assert man["actors"]["n"] == 2
    pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "ray" / "shards").glob("*.json")}
    # encoded in actor processes, not here (how the 8 shards split between the 2 actors is
    # Ray's scheduling: on a busy 2-core machine one actor can take them all)
    assert pids and os.getpid() not in pids and len(pids) <= 2
    for s in range(8):
        a = np.load(tmp_path / "local" / "shards" / f"emb-{s:05d}.npy")
        b = np.load(tmp_path / "ray" / "shards" / f"emb-{s:05d}.npy")
        assert np.allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
    q = enc.encode(["river and comet"], normalize_embeddings=True)
    ray_rows = [r for r, _ in IndexFolder.open(tmp_path / "ray").search(q, 5)[0]]
    assert ray_rows == [r for r, _ in IndexFolder.open(tmp_path / "local").search(q, 5)[0]]
