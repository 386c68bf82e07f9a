"""Dense passage index for the shared-context stage: encode once, save, reload, exact top-k.

Embeddings are L2-normalised, so inner product is cosine similarity. Search is exact: query
blocks times corpus chunks (bounded memory), keeping a running top-k per query. FAISS
(``IndexFlatIP``) is an optional backend for large corpora and is imported only when asked for.
The saved index carries a fingerprint of corpus and model: a matching directory is reloaded,
a stale one rebuilt. Ray stays out of here; a Ray Data encoder can pass its embeddings in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scarlet_ray.formatting import passage_text
from scarlet_ray.records import CorpusPassage


def corpus_fingerprint(passages: Sequence[CorpusPassage], model_id: str) -> str:
    h = hashlib.sha256()
    h.update(model_id.encode())
    for p in passages:
        for part in (p.id, p.title, p.text):
            h.update(b"\x00")
            h.update(part.encode())
    return h.hexdigest()


def model_identity(ref: str) -> str:
    """A string that changes when the encoder's weights change: the ref plus, for a folder,
    the names, sizes and mtimes of its weight files."""
    from scarlet_ray.models.encoder import resolve_encoder_path

    path = Path(resolve_encoder_path(ref))
    if not path.is_dir():
        return ref
    parts = [ref]
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"):
            st = f.stat()
            parts.append(f"{f.relative_to(path)}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def encode_texts(encoder: Any, texts: Sequence[str], batch_size: int = 64,
                 progress: bool = False, desc: str = "encode") -> np.ndarray:
    """Normalised float32 embeddings of ``texts`` (a SentenceTransformer-like ``encode``).

    ``progress`` shows ``models.encoder.progress_bar`` on stderr, advanced every few batches
    (sentence-transformers' own bar draws only on a terminal-like stream, and per call).
    """
    if not texts:
        dim = encoder.get_sentence_embedding_dimension() or 0
        return np.zeros((0, dim), dtype=np.float32)
    if not progress:
        emb = encoder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(emb, dtype=np.float32)
    from scarlet_ray.models.encoder import progress_bar

    step = batch_size * 4
    parts = []
    with progress_bar(len(texts), desc) as bar:
        for start in range(0, len(texts), step):
            chunk = list(texts[start:start + step])
            parts.append(encoder.encode(chunk, batch_size=batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False))
            bar.update(len(chunk))
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def pair_scores(queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """Row-wise inner products ``queries[i] . corpus[i]`` in float64.

    Each score is a function of its two vectors only (exact float64 products, one fixed
    reduction per row), unlike a BLAS matmul whose rounding depends on the matrix shape and on
    where a row sits in the kernel's tiles: identical documents get identical scores here.
    """
    return (queries.astype(np.float64) * corpus.astype(np.float64)).sum(axis=-1)


def exact_topk(queries: np.ndarray, corpus: np.ndarray, k: int, chunk: int = 65536,
               query_chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices), both (n_queries, min(k, n)), best first; ties go to the lower index.

    A fast float32 matmul (chunked over queries and corpus, so memory stays bounded) picks the
    candidates: every document whose matmul score is within twice the matmul's rounding bound
    of the k-th best. The candidates are then rescored with ``pair_scores`` and ranked by
    (score, index). So the result depends only on the vectors, never on the chunk sizes or on
    which other queries share the batch, and exact ties really go to the lower index (a plain
    matmul gives two identical documents scores an ulp apart, in an order that varies).
    """
    n = corpus.shape[0]
    k = min(k, n)
    nq = queries.shape[0]
    if k == 0 or nq == 0:
        return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)
    if nq > query_chunk:
        parts = [exact_topk(queries[i:i + query_chunk], corpus, k, chunk, query_chunk)
                 for i in range(0, nq, query_chunk)]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    # |matmul - exact| <= d * eps * |q| * |c| for any summation order (Higham 3.1); doubled.
    dim = max(queries.shape[1], 1)
    cmax = float(np.sqrt((corpus.astype(np.float64) ** 2).sum(axis=1).max()))
    qnorm = np.sqrt((queries.astype(np.float64) ** 2).sum(axis=1))
    margin = 2.0 * (dim + 2) * float(np.finfo(np.float32).eps) * qnorm * cmax
    kth = np.full(nq, -np.inf)
    best = np.full((nq, 0), -np.inf, dtype=np.float32)
    pool_q, pool_i, pool_s = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    for start in range(0, n, chunk):
        s = (queries @ corpus[start:start + chunk].T).astype(np.float32, copy=False)
        cand = np.concatenate([best, s], axis=1)
        if cand.shape[1] >= k:  # the k best matmul scores so far, unordered
            best = np.partition(cand, cand.shape[1] - k, axis=1)[:, cand.shape[1] - k:]
            kth = best.min(axis=1).astype(np.float64)
        else:
            best = cand
        rows, cols = np.nonzero(s >= (kth - 2 * margin)[:, None])
        pool_q.append(rows)
        pool_i.append(cols + start)
        pool_s.append(s[rows, cols].astype(np.float64))
        pq, pi, ps = (np.concatenate(x) for x in (pool_q, pool_i, pool_s))
        keep = ps >= kth[pq] - 2 * margin[pq]  # the threshold only rises: prune as we go
        pool_q, pool_i, pool_s = [pq[keep]], [pi[keep]], [ps[keep]]
    pq, pi = pool_q[0], pool_i[0]
    if (np.bincount(pq, minlength=nq) < k).any():  # only NaN scores escape the pool
        raise ValueError("embeddings hold NaN: cannot rank passages")
    exact = np.concatenate([pair_scores(queries[pq[a:a + chunk]], corpus[pi[a:a + chunk]])
                            for a in range(0, len(pq), chunk)] or [np.zeros(0)])
    order = np.lexsort((pi, -exact, pq))  # by query, then score descending, then index
    pq, pi, exact = pq[order], pi[order], exact[order]
    first = np.searchsorted(pq, np.arange(nq))
    take = (first[:, None] + np.arange(k)[None, :]).reshape(-1)
    return (exact[take].astype(np.float32).reshape(nq, k), pi[take].reshape(nq, k))


class DenseIndex:
    """Passages, their normalised embeddings, and exact (or FAISS) inner-product search."""

    def __init__(self, passages: Sequence[CorpusPassage], embeddings: np.ndarray,
                 fingerprint: str, backend: str = "exact"):
        if len(passages) != embeddings.shape[0]:
            raise ValueError(f"{len(passages)} passages but {embeddings.shape[0]} embeddings")
        self.passages = list(passages)
        self.embeddings = embeddings
        self.fingerprint = fingerprint
        self.backend = backend
        self.loaded_from_disk = False
        self._faiss: Any = None
        if backend == "faiss":
            self._faiss = self._build_faiss(embeddings)
        elif backend != "exact":
            raise ValueError(f"unknown index backend {backend!r} (exact or faiss)")

    @staticmethod
    def _build_faiss(emb: np.ndarray) -> Any:
        try:
            import faiss
        except ImportError:
            raise ValueError("context.index_backend=faiss needs the faiss-cpu package "
                             "(pip install faiss-cpu); the default backend is exact") from None
        index = faiss.IndexFlatIP(emb.shape[1])
        index.add(emb)
        return index

    def __len__(self) -> int:
        return len(self.passages)

    def search(self, query_emb: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-k (passage index, score) per query embedding, best first."""
        if self._faiss is not None:
            scores, idx = self._faiss.search(np.ascontiguousarray(query_emb, np.float32),
                                             min(k, len(self)))
        else:
            scores, idx = exact_topk(query_emb, self.embeddings, k)
        return [[(int(i), float(s)) for i, s in zip(ri, rs, strict=True) if i >= 0]
                for ri, rs in zip(idx, scores, strict=True)]

    # ------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> Path:
        """embeddings.npy + ids.json + meta.json, each written atomically (meta last)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "embeddings.npy.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, self.embeddings)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, d / "embeddings.npy")
        _atomic_text(d / "ids.json", json.dumps([p.id for p in self.passages]))
        _atomic_text(d / "meta.json", json.dumps({
            "fingerprint": self.fingerprint, "n": len(self.passages),
            "dim": int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else 0}))
        return d

    @classmethod
    def load(cls, directory: str | Path, passages: Sequence[CorpusPassage], fingerprint: str,
             backend: str = "exact") -> DenseIndex | None:
        """The saved index if it was built from these passages with this model, else None."""
        d = Path(directory)
        try:
            meta = json.loads((d / "meta.json").read_text())
            ids = json.loads((d / "ids.json").read_text())
            if meta.get("fingerprint") != fingerprint or ids != [p.id for p in passages]:
                return None
            emb = np.load(d / "embeddings.npy")
        except (OSError, ValueError):
            return None
        if emb.shape[0] != len(passages):
            return None
        idx = cls(passages, emb, fingerprint, backend)
        idx.loaded_from_disk = True
        return idx


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def build_or_load(passages: Sequence[CorpusPassage], encoder: Any, model_id: str,
                  directory: str | Path | None = None, batch_size: int = 64,
                  backend: str = "exact", progress: bool = False,
                  embeddings: np.ndarray | None = None) -> DenseIndex:
    """Reload the index in ``directory`` when corpus and model match; else encode and save.

    ``embeddings`` lets a parallel encoder (e.g. Ray Data) supply the vectors it computed.
    Encoding the corpus is the stage's longest silent step (minutes on a laptop), so it always
    shows progress, whatever ``progress`` says (that only picks the other, shorter bars of the
    stage); ``progress_bar`` keeps it to a line every 30 s off a terminal.
    """
    fp = corpus_fingerprint(passages, model_id)
    if directory is not None:
        found = DenseIndex.load(directory, passages, fp, backend)
        if found is not None:
            return found
    if embeddings is None:
        embeddings = encode_texts(encoder, [passage_text(p.title, p.text) for p in passages],
                                  batch_size, progress=True, desc="encode corpus")
    index = DenseIndex(passages, embeddings, fp, backend)
    if directory is not None:
        index.save(directory)
    return index
