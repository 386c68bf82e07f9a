"""An index folder, opened for search: the one index the context stage and both evaluations use.

Layout (DESIGN.md section 3)::

    INDEX_DIR/index.json        the record: fingerprint, dimension, normalisation, counts, ANN
    INDEX_DIR/passages.sqlite   the passage store, keyed by id and by row
    INDEX_DIR/shards/emb-*.npy  fp16 embeddings, ``shard_size`` rows each, + .json sidecars
    INDEX_DIR/ann/              the FAISS index (ivf, hnsw, ivfpq; none for flat)

``index.json`` is written last, so a folder without it (or with ``status`` other than
``complete``) is a build in progress and is refused. Search returns rows ranked by scores
recomputed in float64 from the fp16 shards: the exact kind (``flat``) takes each shard's top k
and merges; the approximate kinds take ``k x rerank`` candidates from FAISS and re-rank them.
So every kind ranks on the same numbers, ties go to the lower row, and a compressed index
(ivfpq) is searched without loading the embeddings (only the candidates' rows are read).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scarlet_ray.context.index import exact_topk, pair_scores
from scarlet_ray.index.shards import Shards
from scarlet_ray.index.store import STORE_NAME, PassageStore

RECORD = "index.json"
ANN_DIR = "ann"
FORMAT_VERSION = 1


def vector_settings(encoder_key: str, passage_words: int | None) -> dict[str, Any]:
    """Everything that changes the vectors: the encoder's weights (``dense.model_fingerprint``,
    which covers its sequence limit), how a passage is written for it, how the corpus is cut,
    normalisation and the stored precision."""
    from scarlet_ray.formatting import passage_text

    return {"encoder": encoder_key, "passage_format": passage_text("TITLE", "TEXT"),
            "passage_words": passage_words, "normalized": True, "dtype": "float16"}


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_record(folder: Path) -> dict[str, Any] | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    if not isinstance(rec, dict) or "fingerprint" not in rec:
        raise ValueError(f"{path}: not an index record (no fingerprint)")
    return rec


def mismatch(rec: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """The vector settings that differ between a record and what a run asks for."""
    old = rec.get("vector_settings") or {}
    return [k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]


def check(folder: Path, rec: Mapping[str, Any], settings: Mapping[str, Any], asked: str) -> None:
    """Refuse (one line) an index whose vectors were made another way than ``settings``."""
    diff = mismatch(rec, settings)
    if diff:
        parts = rec.get("vector_settings") or {}
        raise ValueError(
            f"{folder}: built with another {' and '.join(diff)} than {asked or 'asked'}"
            f" (index: encoder {rec.get('encoder_ref')!r}, passage_words "
            f"{parts.get('passage_words')}); build an index for it with scarlet index build")


class IndexFolder:
    """Search and passages of a complete index folder."""

    loaded_from_disk = True

    def __init__(self, path: Path, record: dict[str, Any], store: PassageStore, shards: Shards,
                 ann: Any = None):
        self.path, self.record, self.passages, self.shards, self.ann = (path, record, store,
                                                                        shards, ann)
        self.fingerprint: str = record["fingerprint"]
        self.dim: int = int(record["dim"])
        self.kind: str = (record.get("ann") or {}).get("kind", "flat")
        self.rerank: int = int((record.get("ann") or {}).get("rerank", 1))

    @classmethod
    def open(cls, path: str | Path, settings: Mapping[str, Any] | None = None,
             asked: str = "") -> IndexFolder:
        """Open and check ``path``; ``settings`` (``vector_settings``) must match the record's.

        Every problem is one line naming the file: not an index, a build in progress, another
        encoder or formatting than ``asked``, a missing or corrupt shard, a store or ANN index
        that disagrees with the record.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not an index folder (build one with scarlet index "
                             "build --corpus ... --output DIR)")
        rec = read_record(folder)
        if rec is None:
            what = "a build in progress or interrupted" if (folder / STORE_NAME).exists() \
                else "not an index folder"
            raise ValueError(f"{folder}: {what} (no {RECORD}); run scarlet index build "
                             f"--output {folder}")
        if rec.get("status") != "complete":
            raise ValueError(f"{folder / RECORD}: status {rec.get('status')!r}, not complete; "
                             f"rerun scarlet index build --output {folder}")
        if settings is not None:
            check(folder, rec, settings, asked)
        n, dim = int(rec["counts"]["passages"]), int(rec["dim"])
        store = PassageStore(folder / STORE_NAME)
        if len(store) != n:
            raise ValueError(f"{folder / STORE_NAME}: holds {len(store)} passages, {RECORD} "
                             f"says {n}")
        shards = Shards(folder, n, dim, int(rec["shard_size"]))
        ann = None
        kind = (rec.get("ann") or {}).get("kind", "flat")
        if kind != "flat":
            from scarlet_ray.context.ann import load

            ann, meta = load(folder / ANN_DIR, dim=dim)
            if meta.get("ntotal") != n:
                raise ValueError(f"{folder / ANN_DIR}: indexes {meta.get('ntotal')} vectors, "
                                 f"the store holds {n}")
        return cls(folder, rec, store, shards, ann)

    @staticmethod
    def peek(path: str | Path) -> dict[str, Any]:
        """The record of a complete index folder (one-line errors), without opening it."""
        folder = Path(path)
        rec = read_record(folder) if folder.is_dir() else None
        if rec is None or rec.get("status") != "complete":
            IndexFolder.open(folder)  # raises the precise one-line reason
        assert rec is not None
        return rec

    @staticmethod
    def identity(rec: Mapping[str, Any]) -> str:
        """What makes two indexes return the same hits: vectors, corpus, ANN settings."""
        return settings_fingerprint({"fingerprint": rec.get("fingerprint"),
                                     "sources": rec.get("sources"), "ann": {
                                         k: (rec.get("ann") or {}).get(k)
                                         for k in ("kind", "spec", "rerank")}})

    def check(self, settings: Mapping[str, Any], asked: str = "") -> IndexFolder:
        check(self.path, self.record, settings, asked)
        return self

    def __len__(self) -> int:
        return len(self.passages)

    def search(self, query_emb: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-k (row, score) per query embedding, best first, ties to the lower row."""
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        k = min(k, len(self))
        if k <= 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        if self.ann is None:
            size = self.shards.shard_size
            cand = np.concatenate([exact_topk(q, self.shards.shard(s), k)[1] + s * size
                                   for s in range(len(self.shards))], axis=1)
        else:
            from scarlet_ray.context.ann import search

            _, cand = search(self.ann, q, min(len(self), k * max(1, self.rerank)))
        return self._rescore(q, cand, k)

    def _rescore(self, q: np.ndarray, cand: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        out = []
        for i in range(len(q)):
            rows = np.unique(cand[i][cand[i] >= 0])
            vec = self.shards.take(rows)
            sc = pair_scores(np.broadcast_to(q[i], vec.shape), vec)
            order = np.lexsort((rows, -sc))[:k]
            out.append([(int(rows[j]), float(sc[j])) for j in order])
        return out

    def search_ids(self, query_emb: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top-k (passage id, score) per query."""
        hits = self.search(query_emb, k)
        rows = [r for h in hits for r, _ in h]
        ids = dict(zip(rows, self.passages.ids(rows), strict=True)) if rows else {}
        return [[(ids[r], s) for r, s in h] for h in hits]

    def rows_of(self, hits: Sequence[Sequence[tuple[int, float]]]) -> list[list[Any]]:
        """The passages of ``search`` hits, per query."""
        flat = [r for h in hits for r, _ in h]
        got = dict(zip(flat, self.passages.rows(flat), strict=True)) if flat else {}
        return [[got[r] for r, _ in h] for h in hits]

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "fingerprint": self.fingerprint,
                "encoder": self.record.get("encoder_ref"), "kind": self.kind,
                "passages": len(self)}

    def close(self) -> None:
        self.passages.close()


def encoder_settings(encoder: Any, passage_words: int | None) -> dict[str, Any]:
    """``vector_settings`` of a loaded encoder (hashes its weights: about a second for BGE)."""
    from scarlet_ray.evaluation.dense import model_fingerprint

    return vector_settings(model_fingerprint(encoder), passage_words)
