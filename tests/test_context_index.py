"""Dense index: exact chunked top-k (property test) and save / reload with the real retriever."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scarlet_ray.context.index import (
    DenseIndex,
    build_or_load,
    encode_texts,
    exact_topk,
    model_identity,
)
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
def test_index_save_reload_and_rebuild(minilm, passages, tmp_path):
    enc = CountingEncoder(minilm)
    mid = model_identity("all-minilm-l6-v2")
    d = tmp_path / "index"
    first = build_or_load(passages, enc, mid, d, batch_size=8)
    assert not first.loaded_from_disk and enc.encoded == len(passages)
    assert sorted(p.name for p in d.iterdir()) == ["embeddings.npy", "ids.json", "meta.json"]
    assert np.allclose(np.linalg.norm(first.embeddings, axis=1), 1.0, atol=1e-5)

    again = build_or_load(passages, enc, mid, d, batch_size=8)
    assert again.loaded_from_disk and enc.encoded == len(passages)  # nothing re-encoded
    assert np.array_equal(again.embeddings, first.embeddings)

    q = encode_texts(minilm, [passage_text(p.title, p.text) for p in passages[:3]])
    hits = again.search(q, 5)
    assert [h[0][0] for h in hits] == [0, 1, 2]  # a passage finds itself first
    assert all(h[0][1] > 0.99 and len(h) == 5 for h in hits)
    assert hits == first.search(q, 5)

    changed = list(passages)
    changed[5] = CorpusPassage(id="h5", title=passages[5].title, text=passages[5].text + " More.")
    rebuilt = build_or_load(changed, enc, mid, d, batch_size=8)
    assert not rebuilt.loaded_from_disk and enc.encoded == 2 * len(passages)
    assert build_or_load(changed, enc, mid + "|other-weights", d).loaded_from_disk is False

    (d / "embeddings.npy").write_bytes(b"torn write")
    assert DenseIndex.load(d, changed, rebuilt.fingerprint) is None  # corrupt: rebuild, no crash


def test_faiss_backend_is_optional():
    emb = np.eye(3, dtype=np.float32)
    ps = [CorpusPassage(id=str(i), text=f"t{i}") for i in range(3)]
    try:
        import faiss  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="faiss-cpu"):
            DenseIndex(ps, emb, "fp", backend="faiss")
    else:
        idx = DenseIndex(ps, emb, "fp", backend="faiss")
        assert idx.search(emb[:1], 2)[0][0] == (0, 1.0)
