"""Real-signal check: do perturbation utilities find the gold passages? (HotpotQA, SmolLM2)

For the first questions of the shared HotpotQA train file (passages cut to 100 words):
  * plain: nDCG@1/@5 against gold for perturbation (ridge on n masks), leave-one-out, MiniLM
    similarity and random;
  * counterfactual (the GTI benchmark's construction): each gold passage that contains the
    answer gets a copy with the answer replaced by another question's answer; reported is the
    share of true passages ranked above their counterfactual copy, per method.
Stops after --budget seconds and reports exactly what ran. Writes JSON incrementally.

    PYTHONPATH=. python bench/attribution_signal.py --limit 50 --masks 32 --budget 900
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def counterfactual(sample, other_answer: str):
    """Copy each answer-bearing gold passage with the answer swapped; (sample, pairs)."""
    from scarlet_ray.records import Passage

    ans = sample.output.strip()
    pat = re.compile(re.escape(ans), re.IGNORECASE)
    passages = list(sample.passages)
    pairs = []
    rng = np.random.default_rng(len(sample.id))
    for pid in sample.gold_passage_ids:
        p = next(x for x in sample.passages if x.id == pid)
        if ans and pat.search(p.text):
            cf = Passage(id=f"cf-{pid}", title=p.title, text=pat.sub(other_answer, p.text))
            passages.insert(int(rng.integers(0, len(passages) + 1)), cf)
            pairs.append((pid, cf.id))
    return sample.model_copy(update={"passages": passages}), pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--masks", type=int, default=32)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--target", default="logprob_sum")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds of scoring, in all")
    ap.add_argument("--variants", default="plain,counterfactual")
    ap.add_argument("--data", default="/work/shared/data/hotpotqa/hotpotqa_train.json")
    ap.add_argument("--output", default=str(ROOT / "bench" / "results" /
                                            "attribution_signal.json"))
    args = ap.parse_args()

    from scarlet_ray.attribution.engine import AttributionEngine
    from scarlet_ray.config import AttributionConfig, LabelsConfig
    from scarlet_ray.datasets import convert
    from scarlet_ray.evaluation.attribution import (
        loo_scores,
        ndcg_at_k,
        random_scores,
        similarity_scores,
    )
    from scarlet_ray.models.encoder import load_encoder
    from scarlet_ray.models.generator import load_generator

    samples = convert("hotpotqa", args.data, limit=args.limit, passage_words=100).records
    gen = load_generator("smollm2-135m-instruct")
    enc = load_encoder("all-minilm-l6-v2")
    cfg = AttributionConfig(n_masks=args.masks, target=args.target, alpha=args.alpha)
    eng = AttributionEngine(gen, cfg, LabelsConfig())
    variants = args.variants.split(",")
    per: dict[str, list[dict]] = {v: [] for v in variants}
    t_start = time.time()
    out = {"config": vars(args), "generator": gen.name, "dtype": str(gen.dtype)}

    def methods(s, prep, util):
        pids = [p.id for p in prep.passages]
        return pids, {
            "perturbation": np.asarray(util),
            "loo": loo_scores(gen, prep, args.target),
            "similarity": similarity_scores(enc, s.input, prep.passages),
            "random": random_scores(s.id, len(pids)),
        }

    stop = False
    for i, s in enumerate(samples):
        for v in variants:
            if time.time() - t_start > args.budget:
                stop = True
                break
            t0 = time.time()
            if v == "plain":
                sv, pairs = s, []
            else:
                sv, pairs = counterfactual(s, samples[(i + 1) % len(samples)].output)
                if not pairs:
                    per[v].append({"id": s.id, "skipped": "no gold passage contains the answer"})
                    continue
            scored = eng.score(sv)
            attr = eng.fit(scored)
            prep = eng.prepare(sv)
            pids, sc = methods(sv, prep, attr.utility)
            rec = {"id": s.id, "seconds": time.time() - t0, "tokens": scored.n_tokens,
                   "r2": attr.r2, "truncated": scored.truncated}
            if v == "plain":
                rel = [p in set(s.gold_passage_ids) for p in pids]
                for m, x in sc.items():
                    rec[m] = {"ndcg@1": ndcg_at_k(x, rel, 1), "ndcg@5": ndcg_at_k(x, rel, 5)}
            else:
                idx = {p: j for j, p in enumerate(pids)}
                for m, x in sc.items():
                    wins = [float(x[idx[a]] > x[idx[b]]) for a, b in pairs
                            if a in idx and b in idx]
                    rec[m] = {"true_above_cf": wins}
            per[v].append(rec)
        if stop:
            break
        summary = {}
        for v, rows in per.items():
            rows = [r for r in rows if "skipped" not in r]
            ms = ["perturbation", "loo", "similarity", "random"]
            if v == "plain":
                summary[v] = {m: {k: float(np.mean([r[m][k] for r in rows])) if rows else None
                                  for k in ("ndcg@1", "ndcg@5")} for m in ms}
            else:
                summary[v] = {m: {"share_true_above_cf": float(np.mean(
                    [w for r in rows for w in r[m]["true_above_cf"]])) if rows else None,
                    "pairs": sum(len(r[m]["true_above_cf"]) for r in rows)} for m in ms}
            summary[v]["questions"] = len(rows)
        out.update({"summary": summary, "per_question": per,
                    "seconds": time.time() - t_start})
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(out, indent=2))
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
