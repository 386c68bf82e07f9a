"""FAISS index kinds over normalised embeddings: exactness where it must hold, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scarlet_ray.context.ann import (
    AnnSpec,
    build,
    index_bytes,
    load,
    recall_at_k,
    save,
    search,
)


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_is_exact_and_ivf_with_every_cell_probed_is_too():
    x, q = unit(4000, 32, 0), unit(50, 32, 1)
    brute = np.argsort(-(q @ x.T), axis=1)[:, :10]
    _, flat = search(build(x, AnnSpec("flat")), q, 10)
    assert recall_at_k(brute, flat, 10) == 1.0
    ivf = build(x, AnnSpec("ivf", nlist=16, nprobe=16))  # all cells: exhaustive
    assert recall_at_k(brute, search(ivf, q, 10)[1], 10) == 1.0
    ivf.nprobe = 1  # one cell of 16: it must miss some (the test can fail)
    assert recall_at_k(brute, search(ivf, q, 10)[1], 10) < 1.0


def test_compressed_index_is_smaller_and_roundtrips(tmp_path):
    x = unit(5000, 64, 2)
    flat = build(x, AnnSpec("flat"))
    pq = build(x, AnnSpec("ivfpq", nlist=32, nprobe=8, pq_m=16, train_size=3000))
    assert index_bytes(pq) < index_bytes(flat) / 5
    save(pq, AnnSpec("ivfpq", nlist=32, nprobe=8, pq_m=16), tmp_path / "ix")
    back, meta = load(tmp_path / "ix", dim=64)
    assert meta["ntotal"] == 5000 and back.nprobe == 8
    np.testing.assert_array_equal(search(back, x[:5], 3)[1], search(pq, x[:5], 3)[1])


def test_bad_index_folders_fail_in_one_line(tmp_path):
    x = unit(200, 16, 3)
    with pytest.raises(ValueError, match="missing"):
        load(tmp_path / "nothing")
    save(build(x, AnnSpec("flat")), AnnSpec("flat"), tmp_path / "ix")
    with pytest.raises(ValueError, match="dimension 16, the encoder gives 384"):
        load(tmp_path / "ix", dim=384)
    (tmp_path / "ix" / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(ValueError, match="unreadable index"):
        load(tmp_path / "ix")
    save(build(x, AnnSpec("flat")), AnnSpec("flat"), tmp_path / "ix2")
    meta = json.loads((tmp_path / "ix2" / "ann.json").read_text())
    (tmp_path / "ix2" / "ann.json").write_text(json.dumps({**meta, "ntotal": 7}))
    with pytest.raises(ValueError, match="ann.json says 7"):
        load(tmp_path / "ix2")
    with pytest.raises(ValueError, match="non-empty"):
        build(np.zeros((0, 16), np.float32), AnnSpec("flat"))
    with pytest.raises(ValueError, match="must divide"):
        build(x, AnnSpec("ivfpq", nlist=2, pq_m=5))
    with pytest.raises(ValueError, match="index kind"):
        AnnSpec("lsh")
