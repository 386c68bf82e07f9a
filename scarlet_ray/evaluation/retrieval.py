"""Retrieval evaluation on BEIR-format sets: exact dense top-k, TREC run file, pytrec_eval metrics.

Metrics come from pytrec_eval (trec_eval's own code), not from hand-written formulas: nDCG@10
(``ndcg_cut_10``), Recall@10/@100 (``recall_10``/``recall_100``) and MRR@10 (``recip_rank`` on the
run cut to its top 10, since trec_eval's reciprocal rank has no cutoff). Queries of the split that
the run does not answer count as zero, so the mean is over every judged query.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Run = dict[str, dict[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def cut_run(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """Each query's k best documents (score descending, then doc id, as trec_eval ranks)."""
    out: Run = {}
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        out[qid] = dict(ranked)
    return out


def per_query_metrics(qrels: Qrels, run: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per judged query: ndcg@10, recall@10, recall@100, mrr@10 (0 where the run is silent)."""
    import pytrec_eval

    qrels_d = {q: {d: int(s) for d, s in docs.items()} for q, docs in qrels.items()}
    run_d = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in qrels_d}
    main = pytrec_eval.RelevanceEvaluator(qrels_d, {"ndcg_cut.10", "recall.10,100"})
    mrr = pytrec_eval.RelevanceEvaluator(qrels_d, {"recip_rank"})
    res = main.evaluate(run_d)
    res_mrr = mrr.evaluate(cut_run(run_d, 10))
    out: dict[str, dict[str, float]] = {}
    for q in qrels_d:
        r = res.get(q, {})
        out[q] = {
            "ndcg@10": float(r.get("ndcg_cut_10", 0.0)),
            "recall@10": float(r.get("recall_10", 0.0)),
            "recall@100": float(r.get("recall_100", 0.0)),
            "mrr@10": float(res_mrr.get(q, {}).get("recip_rank", 0.0)),
        }
    return out


def aggregate(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    n = len(per_query)
    return {m: (sum(v[m] for v in per_query.values()) / n if n else 0.0) for m in METRICS}


def compute_metrics(qrels: Qrels, run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@10, Recall@100 and MRR@10 over the judged queries."""
    return aggregate(per_query_metrics(qrels, run))


def write_trec_run(path: str | Path, run: Mapping[str, list[tuple[str, float]]],
                   tag: str = "scarlet") -> int:
    """``qid Q0 docid rank score tag`` lines, ranks from 1, atomically; returns the line count."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tag = "".join(ch if not ch.isspace() else "_" for ch in tag) or "scarlet"
    tmp = p.with_name(p.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for qid, hits in run.items():
            for rank, (did, score) in enumerate(hits, start=1):
                fh.write(f"{qid} Q0 {did} {rank} {score:.6f} {tag}\n")
                n += 1
    os.replace(tmp, p)
    return n


def read_trec_run(path: str | Path) -> Run:
    """A TREC run file back into ``{qid: {docid: score}}``; malformed lines name file:line."""
    from scarlet_ray.records import RecordError

    run: Run = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise RecordError(f"{path}:{lineno}", "(line)", "expected qid Q0 docid rank score tag")
            try:
                run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
            except ValueError:
                raise RecordError(f"{path}:{lineno}", "score", "not a number") from None
    return run


def evaluate_dense(encoder: Any, beir: Any, *, k: int = 100, cache_dir: Path | None = None,
                   batch_size: int = 64, instruction: str = "",
                   limit: int | None = None, index: Any = None, model_ref: str = "",
                   passage_words: int | None = None) -> dict[str, Any]:
    """Search every judged query of ``beir`` (a datasets.beir.BeirSet) and score the run.

    ``index``: an opened index folder to search; else the set's corpus is indexed (exactly) in
    ``cache_dir``. Returns {"metrics", "per_query", "hits", "info"}; ``hits`` is
    {qid: [(docid, score)...]}.
    """
    from scarlet_ray.evaluation.dense import corpus_index, search
    from scarlet_ray.formatting import query_text

    qids = sorted(beir.queries)
    if limit is not None:
        qids = qids[:limit]
    if index is None:
        index = corpus_index(encoder, list(beir.corpus.values()), cache_dir,
                             model_ref=model_ref, passage_words=passage_words,
                             batch_size=batch_size)
    hits_list, info = search(encoder, [query_text(instruction, beir.queries[q]) for q in qids],
                             index, max(k, 100), cache_dir, batch_size=batch_size)
    hits = dict(zip(qids, hits_list, strict=True))
    run = {q: dict(h) for q, h in hits.items()}
    qrels = {q: beir.qrels[q] for q in qids}
    per_q = per_query_metrics(qrels, run)
    # qrels pointing nowhere (read_beir warned): said in the result, not only in a log line
    info = {**info, "n_docs": len(index),
            "qrels_unknown_docs": len(getattr(beir, "unknown_docs", [])),
            "qrels_queries_without_text": len(getattr(beir, "queries_without_text", []))}
    return {"metrics": aggregate(per_q), "per_query": per_q, "hits": hits, "info": info}
