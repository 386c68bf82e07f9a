"""Exact chunked top-k (property test), and the context stage's own index with the real
retriever: built once, reused, rebuilt when the corpus or the weights change."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scarlet_ray.context.index import encode_texts, exact_topk
from scarlet_ray.formatting import passage_text
from scarlet_ray.records import CorpusPassage

small_ints = st.integers(-3, 3).map(float)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), nq=st.integers(1, 5), dim=st.integers(1, 6),
       k=st.integers(1, 50), chunk=st.integers(1, 17))
def test_exact_topk_matches_full_sort(data, n, nq, dim, k, chunk):
    # small integers: exact dot products and many ties, so tie-breaking is tested too
    c = data.draw(arrays(np.float32, (n, dim), elements=small_ints))
    q = data.draw(arrays(np.float32, (nq, dim), elements=small_ints))
    scores, idx = exact_topk(q, c, k, chunk=chunk)
    full = q @ c.T
    for r in range(nq):
        ref = sorted(range(n), key=lambda i, r=r: (-full[r, i], i))[: min(k, n)]
        assert idx[r].tolist() == ref
        assert np.array_equal(scores[r], full[r, ref])


def test_exact_topk_empty_corpus():
    s, i = exact_topk(np.ones((2, 3), np.float32), np.zeros((0, 3), np.float32), 5)
    assert s.shape == (2, 0) and i.shape == (2, 0)


class CountingEncoder:
    """The real encoder, counting how many texts it was asked to encode."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.encoded = 0

    def encode(self, texts, **kw):
        self.encoded += len(texts)
        return self.encoder.encode(texts, **kw)

    def get_sentence_embedding_dimension(self):
        return self.encoder.get_sentence_embedding_dimension()


@pytest.fixture(scope="module")
def minilm():
    from scarlet_ray.models.encoder import load_encoder

    return load_encoder("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def passages(shared_data):
    data = json.loads((shared_data / "hotpotqa" / "hotpotqa_train_corpus.json").read_text())
    return [CorpusPassage(id=f"h{i}", title=t, text="".join(s))
            for i, (t, s) in enumerate(list(data.items())[:12])]


@pytest.mark.slow
def test_own_index_reused_and_rebuilt(minilm, passages, tmp_path):
    from scarlet_ray.index.build import ensure

    enc = CountingEncoder(minilm)
    enc.state_dict = minilm.state_dict  # the fingerprint hashes the weights
    enc.max_seq_length = minilm.max_seq_length
    d = tmp_path / "index"
    first = ensure(d, passages, enc, "all-minilm-l6-v2", None, batch_size=8, shard_size=5)
    assert not first.loaded_from_disk and enc.encoded == len(passages)
    assert sorted(p.name for p in (d / "shards").iterdir() if p.suffix == ".npy") == [
        "emb-00000.npy", "emb-00001.npy", "emb-00002.npy"]
    vecs = first.shards.take(range(len(passages)))
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=2e-3)  # fp16 of unit vectors

    again = ensure(d, passages, enc, "all-minilm-l6-v2", None, batch_size=8, shard_size=5)
    assert again.loaded_from_disk and enc.encoded == len(passages)  # nothing re-encoded

    q = encode_texts(minilm, [passage_text(p.title, p.text) for p in passages[:3]])
    hits = again.search(q, 5)
    assert [h[0][0] for h in hits] == [0, 1, 2]  # a passage finds itself first
    assert all(h[0][1] > 0.99 and len(h) == 5 for h in hits)
    assert hits == first.search(q, 5)
    # exact: the same ranking as a brute-force sort over the stored vectors
    brute = np.argsort(-(q.astype(np.float64) @ vecs.T.astype(np.float64)), axis=1,
                       kind="stable")[:, :5]
    assert [[r for r, _ in h] for h in hits] == brute.tolist()

    changed = list(passages)
    changed[5] = CorpusPassage(id="h5", title=passages[5].title, text=passages[5].text + " More.")
    rebuilt = ensure(d, changed, enc, "all-minilm-l6-v2", None, batch_size=8, shard_size=5)
    assert not rebuilt.loaded_from_disk and enc.encoded == 2 * len(passages)
    # other weights: the fingerprint changes, the index is rebuilt
    import torch

    with torch.no_grad():
        next(minilm.parameters()).add_(0.01)
    try:
        other = ensure(d, changed, enc, "all-minilm-l6-v2", None, batch_size=8, shard_size=5)
        assert not other.loaded_from_disk and enc.encoded == 3 * len(passages)
    finally:
        with torch.no_grad():
            next(minilm.parameters()).sub_(0.01)
    (d / "index.json").write_text("{torn")  # a torn record: rewritten from the shards
    assert ensure(d, changed, enc, "x", None, batch_size=8).loaded_from_disk is False
