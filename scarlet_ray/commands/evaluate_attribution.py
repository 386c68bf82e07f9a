"""``scarlet evaluate attribution``: nDCG@1/@5 of utilities vs gold, beside the baselines."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from scarlet_ray.config import Config
from scarlet_ray.manifest import print_table, write_manifest
from scarlet_ray.records import Sample, read_attributions, read_jsonl


def main(cfg: Config, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.evaluation.attribution import (
        attention_scores,
        loo_scores,
        ndcg_at_k,
        random_scores,
        similarity_scores,
    )

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    attrs = read_attributions(args.attributions)
    rep = read_jsonl(args.samples, Sample, on_error="quarantine", errors_path=out / "errors.jsonl")
    samples = {s.id: s for s in rep.records}
    base = list(cfg.attribution.eval_baselines)
    gen = enc = None
    if {"loo", "attention"} & set(base):
        from scarlet_ray.models.generator import load_generator

        gen = load_generator(cfg.models.generator, cfg.models.dtype, cfg.models.device)
    if "similarity" in base:
        from scarlet_ray.models.encoder import load_encoder

        enc = load_encoder(cfg.models.retriever)
    engine = AttributionEngine(gen, cfg.attribution, cfg.labels,
                               generator_name=cfg.models.generator)
    methods = ["perturbation", *base]
    res: dict[str, dict[str, list[float]]] = {m: {"ndcg@1": [], "ndcg@5": []} for m in methods}
    skipped = {"no_sample": 0, "no_gold": 0}
    t0 = time.time()
    for a in tqdm(attrs, desc="evaluate attribution", unit="sample"):
        s = samples.get(a.id)
        if s is None:
            skipped["no_sample"] += 1
            continue
        gold = set(s.gold_passage_ids) & set(a.passage_ids)
        if not gold:
            skipped["no_gold"] += 1
            continue
        by_id = {p.id: p for p in s.passages}
        rel = [pid in gold for pid in a.passage_ids]
        scores = {"perturbation": np.asarray(a.utility)}
        if gen is not None:
            sub = s.model_copy(update={"passages": [by_id[p] for p in a.passage_ids]})
            prep = engine.prepare(sub)
            if [p.id for p in prep.passages] == a.passage_ids:
                if "loo" in base:
                    scores["loo"] = loo_scores(gen, prep, cfg.attribution.target)
                if "attention" in base:
                    scores["attention"] = attention_scores(gen, prep)
        if enc is not None:
            scores["similarity"] = similarity_scores(enc, s.input,
                                                     [by_id[p] for p in a.passage_ids])
        if "random" in base:
            scores["random"] = random_scores(s.id, len(a.passage_ids), cfg.seed)
        for m, v in scores.items():
            res[m]["ndcg@1"].append(ndcg_at_k(v, rel, 1))
            res[m]["ndcg@5"].append(ndcg_at_k(v, rel, 5))
    metrics = {m: {k: (float(np.mean(v)) if v else None) for k, v in d.items()}
               | {"n": len(d["ndcg@1"])} for m, d in res.items()}
    (out / "metrics.json").write_text(json.dumps({"methods": metrics, "skipped": skipped},
                                                 indent=2))
    write_manifest(out, "evaluate_attribution", config=cfg.dump(),
                   counts={"attributions": len(attrs), **skipped},
                   timings={"total": time.time() - t0})
    print_table("attribution vs gold", [
        (m, metrics[m]["ndcg@1"], metrics[m]["ndcg@5"], metrics[m]["n"]) for m in methods],
        headers=("method", "nDCG@1", "nDCG@5", "n"))
    return 0
