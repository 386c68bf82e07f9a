"""Building an index folder in three resumable phases; no Ray here (``distributed.index`` is).

1. **Ingest**: the corpus is streamed (our JSONL line by line; other formats through their
   converter) into the passage store, one transaction per ``shard_size`` input records, with
   the count of consumed records committed alongside: a rerun skips what was committed and
   the corpus's files must be unchanged (size and mtime, recorded at the start).
2. **Encode**: each missing shard of rows is encoded (longest texts first, so batches pad
   little) and written as fp16 with its sidecar; done shards are skipped, so a killed build
   resumes at the first missing shard and never writes one twice. In-process, or by Ray Data
   encoder actors (``index.runner: ray``).
3. **ANN** (not for ``flat``): trained on a seeded sample of rows, filled shard by shard. A
   rerun with another ``index.kind`` (or nlist, pq_m ...) rebuilds only this part.

Memory stays bounded by one shard (ingest, encode), the training sample and the ANN index
itself; ``index.json`` is written last and records what the folder holds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from scarlet_ray.context.ann import AnnSpec
from scarlet_ray.errors import EmptyInput, FingerprintMismatch
from scarlet_ray.index.folder import (
    ANN_DIR,
    FORMAT_VERSION,
    RECORD,
    IndexFolder,
    mismatch,
    read_record,
    settings_fingerprint,
)
from scarlet_ray.index.shards import (
    SHARD_DIR,
    Shards,
    n_shards,
    shard_done,
    shard_rows,
    write_shard,
)
from scarlet_ray.index.store import STORE_NAME, PassageStore, StoreWriter, passage_sha
from scarlet_ray.records import CorpusPassage, RecordError

log = logging.getLogger(__name__)

# (source "file:line", passage or the reason it was refused)
Item = tuple[str, "CorpusPassage | RecordError"]
OUTPUTS = (STORE_NAME, f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", SHARD_DIR, ANN_DIR, RECORD)


# ------------------------------------------------------------------ sources
def iter_specs(specs: Sequence[str], passage_words: int | None = None) -> Iterator[Item]:
    """Every record of the corpus specs in order: our JSONL streamed line by line (memory
    bounded), ``FORMAT:PATH`` through its converter (held in memory by the converter)."""
    from scarlet_ray.context.build import _split_spec
    from scarlet_ray.datasets import convert
    from scarlet_ray.records import iter_jsonl_objects, validate_record

    for spec in specs:
        fmt, path = _split_spec(spec, "corpus")
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(2, "corpus not found", path)
        if fmt is not None:
            res = convert(fmt, path, passage_words=passage_words)
            for e in res.skipped:
                yield (e.source if isinstance(e, RecordError) else path), e
            for i, rec in enumerate(res.records):
                yield f"{path}#{i}", rec  # type: ignore[misc]
            continue
        if p.is_dir():
            raise IsADirectoryError(21, "is a directory (a corpus file is expected)", path)
        for lineno, obj in iter_jsonl_objects(p):
            src = f"{path}:{lineno}"
            if isinstance(obj, RecordError):
                yield src, obj
                continue
            try:
                yield src, validate_record(CorpusPassage, obj, src)
            except RecordError as exc:
                yield src, exc


def specs_signature(specs: Sequence[str]) -> list[dict[str, Any]]:
    """What a resumed ingest must find unchanged: each corpus file's size and mtime."""
    from scarlet_ray.context.build import _split_spec

    out = []
    for spec in specs:
        _, path = _split_spec(spec, "corpus")
        p = Path(path)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            st = f.stat()
            out.append({"spec": spec, "file": str(f), "size": st.st_size,
                        "mtime_ns": st.st_mtime_ns})
    return out


def passages_signature(passages: Sequence[CorpusPassage]) -> list[dict[str, Any]]:
    """An in-memory corpus's signature: its count and a hash of every id, title and text."""
    h = hashlib.sha256()
    for p in passages:
        h.update(passage_sha(p))
    return [{"passages": len(passages), "sha256": h.hexdigest()}]


# ------------------------------------------------------------------ encoding
def encode_passages(encoder: Any, passages: Sequence[CorpusPassage], batch_size: int,
                    bar: Any = None) -> np.ndarray:
    """Normalised float32 embeddings in passage order, encoded longest first."""
    from tqdm import tqdm

    from scarlet_ray.evaluation.dense import encode
    from scarlet_ray.formatting import passage_text

    texts = [passage_text(p.title, p.text) for p in passages]
    order = np.argsort([-len(t) for t in texts], kind="stable")
    emb = encode(encoder, [texts[i] for i in order], batch_size=batch_size,
                 progress=bar if bar is not None else tqdm(disable=True))
    out = np.empty_like(emb)
    out[order] = emb
    return out


def encode_shard(folder: Path, shard: int, encoder: Any, shard_size: int, n_rows: int,
                 batch_size: int, bar: Any = None) -> dict[str, Any]:
    """Read one shard's rows from the store, encode, write; returns the sidecar."""
    a, b = shard_rows(shard, n_rows, shard_size)
    store = PassageStore(folder / STORE_NAME)
    try:
        passages = store.row_range(a, b)
    finally:
        store.close()
    t0 = time.perf_counter()
    emb = encode_passages(encoder, passages, batch_size, bar)
    return write_shard(folder, shard, emb, seconds=round(time.perf_counter() - t0, 3),
                       pid=os.getpid())


# ------------------------------------------------------------------ the build
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clear(folder: Path) -> None:
    """Delete an index folder's own files (never anything else in it)."""
    for name in OUTPUTS:
        p = folder / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _ingest(folder: Path, items: Iterable[Item], signature: list[dict[str, Any]],
            shard_size: int, on_errors: Callable[[list[dict[str, Any]]], None],
            progress: bool) -> dict[str, int]:
    from scarlet_ray.models.encoder import progress_bar

    w = StoreWriter(folder / STORE_NAME)
    try:
        old = w.get("signature")
        if old is not None and json.loads(old) != signature:
            raise FingerprintMismatch(
                f"{folder}: the corpus changed since this index was started; use --restart "
                "to build it anew, or another --output")
        counts = {k: int(w.get(k, "0") or 0) for k in ("consumed", "quarantined", "duplicates",
                                                       "refused", "batches")}
        if w.get("ingest_complete") == "1":
            counts["passages"] = w.rows
            return counts
        w.set_meta({"signature": json.dumps(signature), "shard_size": str(shard_size)})
        skip = counts["consumed"]
        rows_before = w.rows
        bar = progress_bar(0, "ingest corpus", unit="passage") if progress else None
        buf: list[tuple[str, CorpusPassage]] = []
        errs: list[dict[str, Any]] = []
        pending = 0

        def commit() -> None:
            nonlocal buf, errs, pending
            refused = w.commit_batch(counts["batches"], buf, {})
            bad = len(errs)
            errs += [{"source": s, "id": i, "field": "id", "reason": r} for s, i, r in refused]
            if errs:
                on_errors(errs)  # a crash before the counts land repeats these, never loses
            counts["consumed"] += pending
            counts["quarantined"] += bad
            counts["refused"] += len(refused)
            counts["batches"] += 1
            counts["duplicates"] = counts["consumed"] - counts["quarantined"] \
                - counts["refused"] - w.rows
            w.set_meta({k: str(v) for k, v in counts.items()})
            if bar is not None:
                bar.update(pending)
            buf, errs, pending = [], [], 0

        for n, (src, rec) in enumerate(items):
            if n < skip:
                continue
            pending += 1
            if isinstance(rec, RecordError):
                errs.append(rec.as_dict())
            else:
                buf.append((src, rec))
            if pending >= shard_size:
                commit()
        if pending:
            commit()
        if bar is not None:
            bar.close()
        w.set_meta({"ingest_complete": "1"})
        counts["passages"] = w.rows
        counts["ingested_now"] = counts["passages"] - rows_before
        return counts
    finally:
        w.close()


def build(folder: str | Path, items: Iterable[Item], signature: list[dict[str, Any]],
          settings: dict[str, Any], spec: AnnSpec, *, encoder_ref: str,
          load_encoder: Callable[[], Any], shard_size: int = 8192, batch_size: int = 64,
          rerank: int = 4, encode_with: Callable[..., Iterator[dict[str, Any]]] | None = None,
          on_errors: Callable[[list[dict[str, Any]]], None] | None = None,
          fresh_on_mismatch: bool = False, progress: bool = True,
          source_label: str = "corpus") -> dict[str, Any]:
    """Build (or resume, or just check) the index in ``folder``; returns its record.

    ``settings`` are ``folder.vector_settings`` of the encoder that ``load_encoder`` gives
    (checked again by every Ray actor). ``encode_with(folder, shards, n_rows, shard_size)``
    encodes shards elsewhere (Ray) and yields their sidecars; None encodes in this process.
    ``fresh_on_mismatch``: a folder built for another encoder or corpus is cleared and rebuilt
    (the stages' own index); otherwise it is refused (``scarlet index build``).
    """
    from scarlet_ray.models.encoder import progress_bar

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    rec = None
    try:
        rec = read_record(d)
    except ValueError:
        if not fresh_on_mismatch:
            raise
    store_sig = None
    if (d / STORE_NAME).exists():
        try:
            store = PassageStore(d / STORE_NAME)
            meta = store.meta()
            store.close()
            store_sig = json.loads(meta["signature"]) if "signature" in meta else None
            old_settings = json.loads(meta["vector_settings"]) if "vector_settings" in meta \
                else None
        except ValueError:
            if not fresh_on_mismatch:
                raise
            store_sig, old_settings = None, {"unreadable": True}
    else:
        old_settings = None
    stale = []
    if old_settings is not None and old_settings != settings:
        stale = mismatch({"vector_settings": old_settings}, settings)
    if store_sig is not None and store_sig != signature:
        stale.append("corpus")
    if stale:
        if not fresh_on_mismatch:
            raise FingerprintMismatch(
                f"{d}: built with another {' and '.join(stale)}; use --restart to build it "
                "anew, or another --output")
        log.info("%s: rebuilding the index (%s changed)", d, ", ".join(stale))
        clear(d)
        rec = None
    on_errors = on_errors or (lambda errs: None)

    t0 = time.perf_counter()
    w = StoreWriter(d / STORE_NAME)
    w.set_meta({"vector_settings": json.dumps(settings)})
    recorded_size = int(w.get("shard_size", str(shard_size)) or shard_size)
    w.close()
    if recorded_size != shard_size:
        log.warning("%s: keeps its shard size %d (index.shard_size=%d applies to new folders)",
                    d, recorded_size, shard_size)
        shard_size = recorded_size
    counts = _ingest(d, items, signature, shard_size, on_errors, progress)
    timings["ingest_s"] = time.perf_counter() - t0
    n = counts["passages"]
    if n == 0:
        why = (f"all {counts['consumed']} records refused, reasons in errors.jsonl"
               if counts["consumed"] else "no records")
        raise EmptyInput(f"{source_label}: no passages to index ({why})")

    # ---- encode
    t0 = time.perf_counter()
    total = n_shards(n, shard_size)
    todo = [s for s in range(total)
            if not shard_done(d, s, shard_rows(s, n, shard_size)[1] - s * shard_size)]
    encoded = sum(shard_rows(s, n, shard_size)[1] - s * shard_size for s in todo)
    dims: set[int] = set()
    if todo:
        with progress_bar(encoded, "encode corpus", unit="passage") as bar:
            if encode_with is None:
                encoder = load_encoder()
                for s in todo:
                    side = encode_shard(d, s, encoder, shard_size, n, batch_size, bar)
                    dims.add(side["dim"])
            else:
                for side in encode_with(d, todo, n, shard_size):
                    dims.add(int(side["dim"]))
                    bar.update(int(side["rows"]))
    timings["encode_s"] = time.perf_counter() - t0
    dim = _shard_dim(d, dims)
    # shards left by an interrupted build are checked against their checksums once, here
    resumed = rec is None and len(todo) < total
    shards = Shards(d, n, dim, shard_size, verify=resumed)

    # ---- ANN
    t0 = time.perf_counter()
    ann_rec = _ann(d, shards, spec, rerank, rebuild=bool(todo), progress=progress)
    timings["ann_s"] = time.perf_counter() - t0

    shard_bytes = sum(f.stat().st_size for f in (d / SHARD_DIR).glob("emb-*.npy"))
    record = {
        "format": FORMAT_VERSION, "status": "complete",
        "fingerprint": settings_fingerprint(settings), "vector_settings": settings,
        "encoder_ref": encoder_ref, "dim": dim, "normalized": True, "dtype": "float16",
        "shard_size": shard_size,
        "counts": {"passages": n, "shards": total, "quarantined": counts["quarantined"],
                   "refused": counts["refused"], "duplicates": counts["duplicates"],
                   "encoded_now": encoded},
        "sources": signature, "ann": ann_rec,
        "bytes": {"shards": shard_bytes, "store": (d / STORE_NAME).stat().st_size,
                  "ann": ann_rec.get("bytes", 0)},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = d / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, d / RECORD)
    record["_timings"] = timings
    return record


def _shard_dim(d: Path, dims: set[int]) -> int:
    if len(dims) > 1:
        raise ValueError(f"{d / SHARD_DIR}: shards of different dimensions {sorted(dims)}")
    if dims:
        return dims.pop()
    first = d / SHARD_DIR / "emb-00000.json"
    try:
        return int(json.loads(first.read_text())["dim"])
    except (OSError, ValueError, KeyError):
        raise ValueError(f"{first}: missing or unreadable shard record") from None


def _ann(d: Path, shards: Shards, spec: AnnSpec, rerank: int, *, rebuild: bool,
         progress: bool) -> dict[str, Any]:
    """Build the FAISS index unless the one there has this spec and size."""
    from scarlet_ray.context import ann

    rec = {"kind": spec.kind, "spec": asdict(spec), "rerank": rerank if spec.kind != "flat"
           else 1}
    if spec.kind == "flat":
        if (d / ANN_DIR).exists():
            shutil.rmtree(d / ANN_DIR)
        return {**rec, "bytes": 0}
    meta_p = d / ANN_DIR / "ann.json"
    if not rebuild and meta_p.is_file() and (d / ANN_DIR / "index.faiss").is_file():
        try:
            meta = json.loads(meta_p.read_text())
        except ValueError:
            meta = {}
        if meta.get("spec") == asdict(spec) and meta.get("ntotal") == shards.n_rows:
            return {**rec, "bytes": (d / ANN_DIR / "index.faiss").stat().st_size,
                    "trained_on": meta.get("trained_on")}
    t0 = time.perf_counter()
    if spec.kind == "ivfpq" and shards.n_rows < 256:
        raise ValueError(f"index.kind=ivfpq needs at least 256 passages to train its 8-bit "
                         f"codes (this corpus has {shards.n_rows}); use flat or ivf")
    index = ann.create(shards.dim, shards.n_rows, spec)
    rows = ann.sample_rows(shards.n_rows, spec)
    try:
        if len(rows):
            index.train(np.ascontiguousarray(shards.take(rows)))
        for s in range(len(shards)):
            index.add(np.ascontiguousarray(shards.shard(s)))
    except RuntimeError as exc:  # FAISS's own checks: the line that says what failed
        why = str(exc).strip().splitlines()[-1].split("failed: ")[-1]
        raise ValueError(f"index.kind={spec.kind}: FAISS refused the build ({why})") from None
    ann.save(index, spec, d / ANN_DIR, extra={"trained_on": int(len(rows)),
                                              "build_s": round(time.perf_counter() - t0, 3)})
    return {**rec, "bytes": (d / ANN_DIR / "index.faiss").stat().st_size,
            "trained_on": int(len(rows))}


def ensure(folder: str | Path, passages: Sequence[CorpusPassage], encoder: Any,
           encoder_ref: str, passage_words: int | None, *, batch_size: int = 64,
           shard_size: int = 8192, spec: AnnSpec | None = None, rerank: int = 4,
           progress: bool = True) -> IndexFolder:
    """A stage's own index over an in-memory corpus: reused when encoder and corpus match,
    resumed when a build was interrupted, rebuilt when either changed."""
    from scarlet_ray.index.folder import encoder_settings

    d = Path(folder)
    settings = encoder_settings(encoder, passage_words)
    signature = passages_signature(passages)
    spec = spec or AnnSpec("flat")
    if d.exists() and not d.is_dir():
        raise ValueError(f"{d}: exists and is not a directory (an index folder is expected)")
    try:
        rec = read_record(d) if d.is_dir() else None
    except ValueError:
        rec = None
    reuse = (rec is not None and rec.get("status") == "complete"
             and rec.get("vector_settings") == settings and rec.get("sources") == signature
             and (rec.get("ann") or {}).get("spec") == asdict(spec))
    if not reuse:
        build(d, (("passages", p) for p in passages), signature, settings, spec,
              encoder_ref=encoder_ref, load_encoder=lambda: encoder, shard_size=shard_size,
              batch_size=batch_size, rerank=rerank, fresh_on_mismatch=True, progress=progress)
    idx = IndexFolder.open(d, settings)
    idx.loaded_from_disk = reuse
    return idx
