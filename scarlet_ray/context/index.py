"""Exact dense search and text encoding, the maths under every index (``scarlet_ray.index``).

Embeddings are L2-normalised, so inner product is cosine similarity. ``exact_topk`` is exact:
query blocks times corpus chunks (bounded memory), keeping a running top-k per query, with
candidates rescored in float64 so ties and rounding never depend on chunking. The index folders
(passage store, fp16 shards, FAISS) live in ``scarlet_ray.index``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from scarlet_ray.records import CorpusPassage


def corpus_fingerprint(passages: Sequence[CorpusPassage], model_id: str) -> str:
    h = hashlib.sha256()
    h.update(model_id.encode())
    for p in passages:
        for part in (p.id, p.title, p.text):
            h.update(b"\x00")
            h.update(part.encode())
    return h.hexdigest()


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
