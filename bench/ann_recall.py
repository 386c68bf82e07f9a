"""Recall@10, query latency and memory of each FAISS index kind against exact search.

The vectors are generated, clustered like real embeddings (points around ``--clusters``
centres on the unit sphere, with a spread that makes neighbours ambiguous), not independent
random draws (in high dimension those have no meaningful neighbours, so any index "recalls"
noise). Queries come from the same distribution and are not in the index. Not part of CI
(1M x 384 fp32 is 1.5 GB and the builds take minutes):

    python bench/ann_recall.py --n 1000000 --dim 384 --kinds flat,ivf,ivfpq,hnsw
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
from _common import RESULTS, write_json


def clustered(n: int, dim: int, clusters: int, spread: float, seed: int,
              local_dim: int = 0) -> np.ndarray:
    """Points around cluster centres. ``local_dim`` > 0: each cluster varies mostly along its
    own random ``local_dim``-dimensional subspace (real embeddings have a low intrinsic
    dimension, so neighbours are distinguishable), plus a little isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = None
    if local_dim:
        bases = rng.standard_normal((clusters, local_dim, dim)).astype(np.float32) / np.sqrt(dim)
    out = np.empty((n, dim), dtype=np.float32)
    step = 50_000
    for s in range(0, n, step):  # bounded temporaries
        m = min(step, n - s)
        which = rng.integers(0, clusters, m)
        if bases is None:
            noise = rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
        else:
            z = rng.standard_normal((m, 1, local_dim)).astype(np.float32)
            noise = (z @ bases[which])[:, 0] / np.sqrt(local_dim)
            noise += 0.1 * rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
        x = centres[which] + spread * noise
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rerank_fp16(q: np.ndarray, x16: np.ndarray, cand: np.ndarray, k: int) -> np.ndarray:
    """Top-k of each query's candidates by exact scores over fp16 vectors (IndexFolder's rule:
    float64 scores, ties to the lower row)."""
    from scarlet_ray.context.index import pair_scores

    out = np.full((len(q), k), -1, dtype=np.int64)
    for i in range(len(q)):
        rows = np.unique(cand[i][cand[i] >= 0])
        vec = x16[rows].astype(np.float32)
        sc = pair_scores(np.broadcast_to(q[i], vec.shape), vec)
        top = rows[np.lexsort((rows, -sc))[:k]]
        out[i, :len(top)] = top
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--spread", type=float, default=1.0)
    ap.add_argument("--local-dim", type=int, default=16)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kinds", default="flat,ivf,ivfpq,hnsw")
    ap.add_argument("--output", default=str(RESULTS / "ann_recall.json"))
    args = ap.parse_args()

    import faiss

    from scarlet_ray.context.ann import AnnSpec, build, index_bytes, recall_at_k, search

    t0 = time.perf_counter()
    x = clustered(args.n + args.queries, args.dim, args.clusters, args.spread, seed=0,
                  local_dim=args.local_dim)
    q, x = x[: args.queries], x[args.queries:]
    gen_s = time.perf_counter() - t0
    exact = None
    calib: dict = {}
    rows = []
    variants: list[tuple[str, AnnSpec, dict]] = []
    for kind in args.kinds.split(","):
        if kind == "flat":
            variants.append(("flat", AnnSpec("flat"), {}))
        elif kind == "ivf":
            for p in (8, 32):
                variants.append((f"ivf nprobe={p}", AnnSpec("ivf", nprobe=p), {"nprobe": p}))
        elif kind == "ivfpq":
            for p in (8, 32):
                variants.append((f"ivfpq(48B) nprobe={p}", AnnSpec("ivfpq", nprobe=p, pq_m=48),
                                 {"nprobe": p}))
            for r in (4, 8):  # what scarlet_ray.index does: k x r candidates re-ranked exactly
                variants.append((f"ivfpq(48B) nprobe=32 rerank={r}",  # from the fp16 shards
                                 AnnSpec("ivfpq", nprobe=32, pq_m=48), {"rerank": r}))
        elif kind == "hnsw":
            variants.append(("hnsw m=16 ef=64", AnnSpec("hnsw", m=16, ef_construction=40,
                                                        ef_search=64), {}))
    built: dict[str, tuple] = {}
    x16 = x.astype(np.float16)  # the index folder's shards
    for name, spec, extra in variants:
        key = (spec.kind, spec.pq_m, spec.m)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        if key in built:
            index, build_s = built[key]
            if hasattr(index, "nprobe"):
                index.nprobe = spec.nprobe
        else:
            index = build(x, spec)
            build_s = time.perf_counter() - t
            built[key] = (index, build_s)
        t = time.perf_counter()
        rerank = extra.get("rerank", 1)
        scores, ids = search(index, q, args.k * rerank)
        if rerank > 1:
            ids = rerank_fp16(q, x16, ids, args.k)
        lat_ms = (time.perf_counter() - t) / len(q) * 1e3
        if spec.kind == "flat":
            exact = ids
            # how clustered the data is, to set against real embeddings: the mean cosine of a
            # query's nearest and 10th-nearest neighbours
            calib = {"top1_cos": float(scores[:, 0].mean()),
                     "topk_cos": float(scores[:, -1].mean())}
        r = {"index": name, "build_s": round(build_s, 1), "query_ms": round(lat_ms, 3),
             "bytes": index_bytes(index), "bytes_per_vector": index_bytes(index) / len(x),
             "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024}
        if exact is not None:
            r["recall_at_k"] = recall_at_k(exact, ids, args.k)
        rows.append(r)
        print(r, flush=True)
    out = {"n": len(x), "dim": args.dim, "clusters": args.clusters, "spread": args.spread,
           "local_dim": args.local_dim,
           "queries": len(q), "k": args.k, "neighbour_cosines": calib, "generate_s": gen_s, "faiss": faiss.__version__,
           "threads": faiss.omp_get_max_threads(),
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
           "results": rows}
    write_json(args.output, out)
    print(f"exact neighbour cosines: {calib}")
    print(f"{'index':<24}{f'recall@{args.k}':>10}{'ms/query':>10}{'MB':>10}{'build s':>9}")
    for r in rows:
        print(f"{r['index']:<24}{r.get('recall_at_k', float('nan')):>10.3f}{r['query_ms']:>10.3f}"
              f"{r['bytes'] / 2**20:>10.0f}{r['build_s']:>9.1f}")


if __name__ == "__main__":
    main()
