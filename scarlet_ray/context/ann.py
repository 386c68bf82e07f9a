"""FAISS indexes over normalised passage embeddings: exact for small corpora, approximate for large.

Inner product on L2-normalised vectors (= cosine). The kinds, and what each trades:

* ``flat``: exact; memory 4 x dim bytes per vector; search cost linear in the corpus.
* ``ivf``: k-means into ``nlist`` cells, search the ``nprobe`` nearest cells; full vectors kept
  (same memory as flat), search cost ~ nprobe / nlist of flat; recall set by nprobe.
* ``hnsw``: a navigable graph (``m`` links per vector, ``ef_search`` at query time); the best
  recall per query time, but the largest memory (vectors + graph) and the slowest build.
* ``ivfpq``: IVF over product-quantised codes (``pq_m`` bytes per vector at 8 bits): 20-50x less
  memory than flat; recall much lower unless the top candidates are re-ranked exactly from
  the stored vectors (``scarlet_ray.index`` re-ranks its candidates from its fp16 shards).

Training (ivf, ivfpq) uses a sample of the vectors (``train_size``), not all of them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("flat", "ivf", "hnsw", "ivfpq")


@dataclass
class AnnSpec:
    """How to build an index; recorded next to it (``ann.json``)."""

    kind: str = "flat"
    nlist: int | None = None  # ivf/ivfpq cells; None: ~4 x sqrt(n)
    nprobe: int = 16
    m: int = 32  # hnsw links per vector
    ef_construction: int = 64
    ef_search: int = 64
    pq_m: int = 32  # ivfpq: sub-quantisers (bytes per vector at 8 bits); must divide dim
    train_size: int = 100_000  # raised to 40 x nlist where that is more (k-means needs it)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index kind {self.kind!r}: expected one of {list(KINDS)}")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ValueError("a FAISS index needs the faiss-cpu package (pip install "
                         "'scarlet-ray[faiss]')") from None
    return faiss


def default_nlist(n: int) -> int:
    return max(1, min(n // 39, int(4 * np.sqrt(max(n, 1)))))  # faiss wants >= 39 per cell


def create(dim: int, n: int, spec: AnnSpec) -> Any:
    """An empty index of ``spec.kind`` for ``n`` vectors of ``dim`` (untrained for ivf/ivfpq)."""
    faiss = _faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if spec.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.m, ip)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
        return index
    nlist = spec.nlist or default_nlist(n)
    quant = faiss.IndexFlatIP(dim)
    if spec.kind == "ivf":
        index = faiss.IndexIVFFlat(quant, dim, nlist, ip)
    else:
        if dim % spec.pq_m:
            raise ValueError(f"ivfpq: pq_m {spec.pq_m} must divide the dimension {dim}")
        index = faiss.IndexIVFPQ(quant, dim, nlist, spec.pq_m, 8, ip)
    index.nprobe = min(spec.nprobe, nlist)
    return index


def train_size(n: int, spec: AnnSpec) -> int:
    """Vectors to train on: ``spec.train_size``, raised to 40 per IVF cell; at most ``n``."""
    if spec.kind not in ("ivf", "ivfpq"):
        return 0
    nlist = spec.nlist or default_nlist(n)
    return min(n, max(spec.train_size, 40 * nlist))


def sample_rows(n: int, spec: AnnSpec) -> np.ndarray:
    """The sorted rows an index of ``n`` vectors trains on (seeded: a rebuild trains alike)."""
    size = train_size(n, spec)
    if size >= n:
        return np.arange(n if size else 0, dtype=np.int64)
    return np.sort(np.random.default_rng(spec.seed).choice(n, size, replace=False))


def build(vectors: np.ndarray, spec: AnnSpec) -> Any:
    """A FAISS index over ``vectors`` (n x dim float32, normalised), trained on a sample."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"vectors: expected a non-empty 2-D array, got shape {x.shape}")
    n, dim = x.shape
    index = create(dim, n, spec)
    if spec.kind in ("ivf", "ivfpq"):
        index.train(x[sample_rows(n, spec)])
    index.add(x)
    return index


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, row ids), each (q x k); ids -1 where the index holds fewer than k."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def index_bytes(index: Any) -> int:
    """Serialised size: what the index costs on disk and, loaded, about that in memory."""
    return int(_faiss().serialize_index(index).size)


def save(index: Any, spec: AnnSpec, folder: str | Path, extra: dict | None = None) -> Path:
    """``folder/index.faiss`` and ``folder/ann.json`` (the spec, counts, dimension), written
    through temporary names so a crash never leaves a half index under the real name."""
    faiss = _faiss()
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    tmp.replace(d / "index.faiss")
    meta = {"spec": asdict(spec), "ntotal": int(index.ntotal), "dim": int(index.d),
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(extra or {})}
    (d / "ann.json.tmp").write_text(json.dumps(meta, indent=2))
    (d / "ann.json.tmp").replace(d / "ann.json")
    return d


def load(folder: str | Path, dim: int | None = None) -> tuple[Any, dict]:
    """The index and its record; one-line errors for a missing, corrupt or mismatched index."""
    faiss = _faiss()
    d = Path(folder)
    meta_p, idx_p = d / "ann.json", d / "index.faiss"
    for p in (meta_p, idx_p):
        if not p.is_file():
            raise ValueError(f"{p}: missing (build the index first)")
    try:
        meta = json.loads(meta_p.read_text())
        index = faiss.read_index(str(idx_p))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{d}: unreadable index ({str(exc).splitlines()[0][:200]})") from None
    if index.ntotal != meta.get("ntotal") or index.d != meta.get("dim"):
        raise ValueError(f"{idx_p}: holds {index.ntotal} x {index.d}, ann.json says "
                         f"{meta.get('ntotal')} x {meta.get('dim')}")
    if dim is not None and index.d != dim:
        raise ValueError(f"{idx_p}: dimension {index.d}, the encoder gives {dim}")
    spec = meta.get("spec", {})
    if spec.get("kind") in ("ivf", "ivfpq"):
        index.nprobe = spec.get("nprobe", index.nprobe)
    elif spec.get("kind") == "hnsw":
        index.hnsw.efSearch = spec.get("ef_search", 64)
    return index, meta


def recall_at_k(exact_ids: np.ndarray, approx_ids: np.ndarray, k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) for a, e in
            zip(approx_ids, exact_ids, strict=True)]
    return float(np.mean(hits)) / k


__all__ = ["KINDS", "AnnSpec", "build", "create", "default_nlist", "sample_rows", "train_size", "index_bytes", "load", "recall_at_k",
           "save", "search"]
