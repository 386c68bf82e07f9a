"""Dense retrieval shared by the retrieval and RAG evaluations: the index, queries, top-k.

The corpus side is an index folder (``scarlet_ray.index``): one given with ``--index``, or the
evaluation's own exact one, built by the same code in its cache folder, keyed by a fingerprint
of the model weights and the corpus (a rerun or a resumed crash re-encodes only missing
shards; a retrained model under the same path gets a new index). Query embeddings are cached
here in shards keyed the same way (``encode_corpus``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from scarlet_ray.context.index import exact_topk
from scarlet_ray.models.encoder import progress_bar

log = logging.getLogger(__name__)

SHARD_SIZE = 8192


def model_fingerprint(model: Any) -> str:
    """Hash of the encoder's weights and its sequence limit: same model, same key."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    h.update(str(getattr(model, "max_seq_length", "")).encode())
    with torch.no_grad():
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def texts_fingerprint(ids: Sequence[str], texts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for i, t in zip(ids, texts, strict=True):
        h.update(i.encode())
        h.update(b"\0")
        h.update(t.encode())
        h.update(b"\1")
    return h.hexdigest()


def encode(model: Any, texts: Sequence[str], *, batch_size: int = 64, desc: str = "encode",
           progress: tqdm | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text, with a progress bar."""
    own = progress is None
    bar = progress if progress is not None else progress_bar(len(texts), desc)
    out: list[np.ndarray] = []
    step = batch_size * 4
    try:
        for start in range(0, len(texts), step):
            chunk = list(texts[start:start + step])
            emb = model.encode(chunk, batch_size=batch_size, convert_to_numpy=True,
                               normalize_embeddings=True, show_progress_bar=False)
            out.append(np.asarray(emb, dtype=np.float32))
            bar.update(len(chunk))
    finally:
        if own:
            bar.close()
    if not out:
        dim = model.get_sentence_embedding_dimension() or 0
        return np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(out, axis=0)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def encode_corpus(model: Any, ids: Sequence[str], texts: Sequence[str], cache_dir: Path | None,
                  *, batch_size: int = 64, shard_size: int = SHARD_SIZE,
                  model_key: str | None = None, kind: str = "corpus"
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """Corpus embeddings in corpus order, from the shard cache where present.

    Texts are encoded longest first (less padding per batch); shards follow that order and are
    put back in corpus order at the end. Returns (embeddings, info with the cache key and how
    many texts were actually encoded this time).
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    key = f"{model_key or model_fingerprint(model)}-{texts_fingerprint(ids, texts)}"
    folder = cache_dir / f"{kind}-{key}" if cache_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    n_shards = (len(order) + shard_size - 1) // shard_size
    parts: list[np.ndarray] = []
    encoded = 0
    todo = []
    for s in range(n_shards):
        f = folder / f"shard-{s:05d}.npy" if folder is not None else None
        n = len(order[s * shard_size:(s + 1) * shard_size])
        if f is not None and f.exists():
            arr = np.load(f)
            if arr.shape[0] == n:
                parts.append(arr)
                continue
            log.warning("%s: %d rows, expected %d; re-encoding", f, arr.shape[0], n)
        parts.append(None)  # type: ignore[arg-type]
        todo.append(s)
    remaining = sum(len(order[s * shard_size:(s + 1) * shard_size]) for s in todo)
    if todo:
        with progress_bar(remaining, f"encode {kind}") as bar:
            for s in todo:
                idx = order[s * shard_size:(s + 1) * shard_size]
                arr = encode(model, [texts[i] for i in idx], batch_size=batch_size, progress=bar)
                if folder is not None:
                    _save_npy(folder / f"shard-{s:05d}.npy", arr)
                parts[s] = arr
                encoded += len(idx)
    if parts:
        sorted_emb = np.concatenate(parts, axis=0)
    else:
        sorted_emb = np.zeros((0, model.get_sentence_embedding_dimension() or 0), np.float32)
    emb = np.empty_like(sorted_emb)
    emb[np.asarray(order, dtype=np.int64)] = sorted_emb
    if folder is not None:
        (folder / "info.json").write_text(json.dumps({"n": len(ids), "shard_size": shard_size}))
    return emb, {"cache_key": key, "encoded": encoded, "cached": len(ids) - encoded}


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, *,
          chunk_size: int = 65536, query_chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (the context index's search, so both rank alike)."""
    return exact_topk(queries, corpus, k, chunk=chunk_size, query_chunk=query_chunk)


def corpus_index(model: Any, passages: Sequence[Any] | None, cache_dir: Path | None, *,
                 index_path: str | Path | None = None, model_ref: str = "",
                 passage_words: int | None = None, batch_size: int = 64) -> Any:
    """The index to search: ``index_path`` (refused in one line when built with another
    encoder or passage form), else the evaluation's own exact index of ``passages`` in
    ``cache_dir/index`` (reused while model and corpus are the same, resumed by shard)."""
    from scarlet_ray.index.build import ensure
    from scarlet_ray.index.folder import IndexFolder, encoder_settings

    if index_path is not None:
        return IndexFolder.open(index_path, encoder_settings(model, passage_words),
                                asked=f"--model {model_ref!r}" if model_ref else "this model")
    if cache_dir is None:
        import tempfile

        cache_dir = Path(tempfile.mkdtemp(prefix="scarlet-index-"))
    return ensure(cache_dir / "index", list(passages or []), model, model_ref, passage_words,
                  batch_size=batch_size)


def search(model: Any, query_texts: Sequence[str], index: Any, k: int,
           cache_dir: Path | None = None, *, batch_size: int = 64
           ) -> tuple[list[list[tuple[str, float]]], dict[str, Any]]:
    """Top-k (passage id, score) per query from ``index`` (``corpus_index``), plus info
    (index fingerprint, passages encoded this time) for the manifest.

    ``query_texts`` are already in the retriever's form (``formatting.query_text``)."""
    key = index.record["vector_settings"]["encoder"]
    q_texts = list(query_texts)
    q_emb, _ = encode_corpus(model, [str(i) for i in range(len(q_texts))], q_texts, cache_dir,
                             batch_size=batch_size, model_key=key, kind="queries")
    encoded = 0 if index.loaded_from_disk else int(index.record["counts"].get("encoded_now", 0))
    info = {"cache_key": index.fingerprint, "encoded": encoded, "cached": len(index) - encoded,
            "index": index.summary()}
    if len(index) == 0 or not q_texts:
        return [[] for _ in q_texts], info
    return index.search_ids(q_emb, k), info
