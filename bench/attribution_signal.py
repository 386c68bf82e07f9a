"""Real-signal check: do perturbation utilities find the gold passages? (HotpotQA, MuSiQue)

For the first ``--limit`` questions of the shared HotpotQA (or ``--dataset musique``) train file
(passages cut to 100 words; MuSiQue's 20 passages capped at ``--max-passages`` 10, every
supporting passage kept and the first distractors in file order, so a question costs what a
HotpotQA one does), with SmolLM2:

* plain: nDCG@1/@5 against gold for perturbation, leave-one-out, attention, MiniLM similarity
  and random;
* counterfactual (the GTI benchmark's construction): each gold passage that contains the answer
  gets a copy with the answer replaced by another question's answer, inserted at a random
  position; reported is the share of true passages ranked above their copy, per method.

Each question is scored once with ``--masks`` masks and every target (one set of forwards); the
raw masks and scores are stored, so the sweep over target x surrogate x alpha x number of masks
is computed from the same forwards (``--analyse`` re-runs only the sweep). ContextCite 0.0.4
runs on the first ``--contextcite`` questions of each variant with the same model and the same
number of ablations; its rows and ours on those same questions are reported side by side.

Resumable: per-question records are appended to ``--records``; a rerun skips finished ones. A
record appended later for the same (variant, id) replaces the earlier one.

    python bench/attribution_signal.py --limit 50 --masks 64 --contextcite 10
    python bench/attribution_signal.py --dataset musique --limit 100 --variants plain

Records go to ``attribution_signal[_musique]_records.jsonl``; ``bench/value_study.py`` trains
retrievers on them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, train_file, write_json

from scarlet_ray.evaluation.counterfactual import (
    counterfactual,
    other_answer,
    pair_wins,
    share_won,
)

METHODS_FIXED = ("loo", "attention", "similarity", "random")
ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)
MASK_COUNTS = (16, 32, 64)
# Records timed before the scorer's walker threads ran in inference mode carry no "rev"; their
# seconds overstate ours. The side-by-side questions are re-scored until they carry this rev.
REV = 3


# ------------------------------------------------------------------ scoring (the slow part)

def score_question(gen, enc, eng, sv, variant: str, pairs, gold, n_cc: bool) -> dict:
    from scarlet_ray.attribution.scoring import TARGETS, ScoreStats, score_masks_multi
    from scarlet_ray.evaluation.attribution import (
        attention_scores,
        random_scores,
        similarity_scores,
    )

    prep = eng.prepare(sv)
    k = len(prep.passages)
    masks = eng.masks_for(sv.id, k)
    st = ScoreStats()
    t0 = time.perf_counter()
    scores = score_masks_multi(gen, prep, masks, TARGETS, stats=st)
    t_pert = time.perf_counter() - t0
    loo_m = np.ones((k + 1, k), dtype=bool)
    loo_m[np.arange(1, k + 1), np.arange(k)] = False
    loo = score_masks_multi(gen, prep, loo_m, TARGETS)
    rec = {
        "id": sv.id, "variant": variant, "passage_ids": [p.id for p in prep.passages],
        "gold": list(gold), "pairs": pairs, "truncated": prep.truncated,
        "masks": masks.astype(int).tolist(),
        "scores": {t: v.tolist() for t, v in scores.items()},
        "loo": {t: (v[0] - v[1:]).tolist() for t, v in loo.items()},
        "attention": attention_scores(gen, prep).tolist(),
        "similarity": similarity_scores(enc, sv.input, prep.passages).tolist(),
        "random": random_scores(sv.id, k).tolist(),
        "perturbation_seconds": t_pert, "tokens_forwarded": st.n_tokens,
        "tokens_equivalent": st.n_equiv_tokens, "rev": REV,
        "answer_tokens": len(prep.answer_ids),
    }
    if n_cc:
        add_contextcite(gen, eng, sv, rec)
    return rec


def add_contextcite(gen, eng, sv, rec: dict) -> None:
    """ContextCite on the same question (same model, prompt and number of ablations), and its
    masks scored by our engine."""
    from contextcite_peer import contextcite_utilities

    from scarlet_ray.attribution.scoring import TARGETS, score_masks_multi

    prep = eng.prepare(sv)
    if [p.id for p in prep.passages] != rec["passage_ids"]:
        raise RuntimeError(f"{sv.id}: passages differ from the stored record")
    sv_cut = sv.model_copy(update={"passages": prep.passages})
    util, info = contextcite_utilities(gen, sv_cut, len(rec["masks"]))
    rec["contextcite"] = util.tolist()
    rec["contextcite_seconds"] = info["seconds"]
    rec["contextcite_tokens"] = info["tokens"]
    # ContextCite's own masks scored by our engine: with the masks fixed, any difference left
    # is in the scores or the surrogate, not in the draw
    rec["contextcite_masks"] = info["masks"].astype(int).tolist()
    rec["contextcite_target"] = info["target"].tolist()
    same = score_masks_multi(gen, prep, info["masks"], TARGETS)
    rec["ours_on_cc_masks"] = {t: v.tolist() for t, v in same.items()}


# ------------------------------------------------------------------ analysis (cheap)

def quality(rec: dict, util) -> dict:
    """Plain: nDCG@1/@5 vs gold. Counterfactual: wins of true over copy (a list)."""
    from scarlet_ray.evaluation.ranking import ndcg_at_k

    x = np.asarray(util, dtype=np.float64)
    pids = rec["passage_ids"]
    rel = [p in set(rec["gold"]) for p in pids]
    out = {"ndcg@1": ndcg_at_k(x, rel, 1), "ndcg@5": ndcg_at_k(x, rel, 5)}
    if rec["variant"] == "plain":
        return out
    return out | {"wins": pair_wins(x, pids, [tuple(pr) for pr in rec["pairs"]])}


def summarise(rows: list[dict]) -> dict:
    if not rows:
        return {}
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("ndcg@1", "ndcg@5")}
    if "wins" in rows[0]:
        wins = [w for r in rows for w in r["wins"]]
        out |= {"true_above_cf": share_won(wins), "pairs": len(wins)}
    return out


def perturbation_utility(rec: dict, target: str, kind: str, alpha: float, n: int):
    from scarlet_ray.attribution.surrogate import fit_lasso, fit_ridge

    X = np.asarray(rec["masks"], dtype=np.float64)[:n]
    y = np.asarray(rec["scores"][target], dtype=np.float64)[:n]
    if kind == "ridge":
        return fit_ridge(X, y, alpha)[0]
    return fit_lasso(X, y, alpha, scale=rec["answer_tokens"])[0]  # ContextCite's per-token fit


def load_samples(dataset: str, data: str, limit: int, max_passages: int | None) -> list:
    """The bench's questions: 100-word passages, at most ``max_passages`` of them (gold first
    kept, then distractors in file order; the kept passages stay in their file order)."""
    from scarlet_ray.datasets import convert

    out = []
    for s in convert(dataset, data, limit=limit, passage_words=100).records:
        if max_passages and len(s.passages) > max_passages:
            gold = set(s.gold_passage_ids)
            room = max_passages - sum(p.id in gold for p in s.passages)
            keep = []
            for p in s.passages:
                if p.id in gold or room > 0:
                    keep.append(p)
                    room -= p.id not in gold
            s = s.model_copy(update={"passages": keep})
        out.append(s)
    return out


def default_data(dataset: str) -> str:
    return str(train_file(dataset))


def _tag(dataset: str) -> str:
    """HotpotQA keeps the file names it had before MuSiQue joined."""
    return "" if dataset == "hotpotqa" else f"_{dataset}"


def default_records(dataset: str) -> str:
    return str(RESULTS / f"attribution_signal{_tag(dataset)}_records.jsonl")


def fill_answer_tokens(records: list[dict], data: str, limit: int,
                       dataset: str = "hotpotqa") -> None:
    """Answer token counts (the LASSO's per-token scale) for records written without them."""
    missing = [r for r in records if "answer_tokens" not in r]
    if not missing:
        return
    from transformers import AutoTokenizer

    from scarlet_ray.datasets import convert
    from scarlet_ray.models.generator import prepare_named_generator

    tok = AutoTokenizer.from_pretrained(prepare_named_generator("smollm2-135m-instruct"))
    answers = {s.id: s.output for s in convert(dataset, data, limit=limit).records}
    for r in missing:
        r["answer_tokens"] = len(tok(answers[r["id"]], add_special_tokens=False)["input_ids"])


def same_masks(recs: list[dict], default: tuple[str, str, float]) -> dict:
    """On ContextCite's own masks: our scores against its per-mask target, and both rankings."""
    from scipy.stats import spearmanr

    from scarlet_ray.attribution.surrogate import fit_lasso, fit_ridge

    if not recs:
        return {}
    t_def, kind_def, a_def = default
    fit = {"ridge": fit_ridge, "lasso": fit_lasso}
    rel_diff, rho = [], []
    ours_def, ours_cc = [], []
    for r in recs:
        X = np.asarray(r["contextcite_masks"], dtype=np.float64)
        mine = np.asarray(r["ours_on_cc_masks"]["logit_prob"])
        theirs = np.asarray(r["contextcite_target"])
        rel_diff.append(float(np.max(np.abs(mine - theirs)) / (np.ptp(theirs) or 1.0)))
        rho.append(float(spearmanr(mine, theirs)[0]))
        y = np.asarray(r["ours_on_cc_masks"][t_def])
        ours_def.append(quality(r, fit[kind_def](X, y, a_def)[0]))
        ours_cc.append(quality(r, fit_lasso(X, mine, 0.01, scale=r["answer_tokens"])[0]))
    return {"same_masks": {
        "questions": len(recs),
        "logit_prob ours vs ContextCite's, max |diff| / range (worst question)": max(rel_diff),
        "logit_prob ours vs ContextCite's, Spearman (mean)": float(np.mean(rho)),
        "ours (default) on ContextCite's masks": summarise(ours_def),
        "ours (logit_prob + lasso) on ContextCite's masks": summarise(ours_cc),
        "contextcite on the same questions": summarise([quality(r, r["contextcite"])
                                                        for r in recs]),
    }}


def per_question(recs: list[dict], util_of, measure: str) -> np.ndarray:
    """One number per question: an nDCG, or (counterfactual) the share of its pairs won."""
    vals = []
    for r in recs:
        q = quality(r, util_of(r))
        share = share_won(q["wins"]) if measure == "wins" else q[measure]
        vals.append(np.nan if share is None else share)
    return np.asarray(vals, dtype=np.float64)


def paired_rows(recs: list[dict], base, others: dict, measures: tuple[str, ...]) -> dict:
    """``other - base`` per question with its 95% paired-bootstrap interval, per measure."""
    from scarlet_ray.evaluation.compare import paired_bootstrap

    out = {}
    for name, util_of in others.items():
        for m in measures:
            b, o = per_question(recs, base, m), per_question(recs, util_of, m)
            ok = ~(np.isnan(b) | np.isnan(o))
            out[f"{name} - default, {m}"] = paired_bootstrap(b[ok], o[ok])
    return out


def analyse(records: list[dict], default: tuple[str, str, float]) -> dict:
    from scarlet_ray.attribution.scoring import TARGETS
    from scarlet_ray.attribution.surrogate import fit_surrogate

    out: dict = {}
    t_def, kind_def, a_def = default
    for variant in ("plain", "counterfactual"):
        recs = [r for r in records if r["variant"] == variant]
        if not recs:
            continue
        res: dict = {"questions": len(recs)}
        res["perturbation (default)"] = summarise(
            [quality(r, perturbation_utility(r, t_def, kind_def, a_def, 10**9)) for r in recs])
        res["loo"] = summarise([quality(r, r["loo"][t_def]) for r in recs])
        for m in ("attention", "similarity", "random"):
            res[m] = summarise([quality(r, r[m]) for r in recs])
        res["r2_heldout_mean"] = float(np.nanmean([
            np.nan if (fs := fit_surrogate(np.asarray(r["masks"]), np.asarray(
                r["scores"][t_def]), kind_def, a_def, answer_tokens=r["answer_tokens"])).r2
            is None else fs.r2 for r in recs]))
        grid = {}
        for t in TARGETS:
            for kind, alphas in (("ridge", ALPHAS), ("lasso", (0.01,))):
                for a in alphas:
                    for n in MASK_COUNTS:
                        grid[f"{t}/{kind}/alpha={a}/n={n}"] = summarise(
                            [quality(r, perturbation_utility(r, t, kind, a, n)) for r in recs])
        res["grid"] = grid
        measures = ("ndcg@1", "ndcg@5") if variant == "plain" else ("wins", "ndcg@5")

        def default_util(r):
            return perturbation_utility(r, t_def, kind_def, a_def, 10**9)

        res["paired"] = paired_rows(recs, default_util, {
            "lasso 0.01 per token (logprob_sum)":
                lambda r: perturbation_utility(r, "logprob_sum", "lasso", 0.01, 10**9),
            "loo": lambda r: r["loo"][t_def],
            "similarity": lambda r: r["similarity"],
        }, measures)
        cc = [r for r in recs if "contextcite" in r]
        if cc:
            secs = sum(r["contextcite_seconds"] for r in cc)
            ours = sum(r["perturbation_seconds"] for r in cc)
            res["side_by_side"] = {
                "questions": len(cc),
                "contextcite": summarise([quality(r, r["contextcite"]) for r in cc]),
                "ours (default)": summarise(
                    [quality(r, perturbation_utility(r, t_def, kind_def, a_def, 10**9))
                     for r in cc]),
                "ours (logit_prob + lasso, ContextCite's recipe)": summarise(
                    [quality(r, perturbation_utility(r, "logit_prob", "lasso", 0.01, 10**9))
                     for r in cc]),
                **same_masks([r for r in cc if "ours_on_cc_masks" in r], default),
                "paired": paired_rows(cc, default_util,
                                      {"contextcite": lambda r: r["contextcite"]}, measures),
                "contextcite_seconds": secs, "ours_seconds": ours,
                "contextcite_tokens_per_s": sum(r["contextcite_tokens"] for r in cc) / secs,
                "ours_equivalent_tokens_per_s": sum(r["tokens_equivalent"] for r in cc) / ours,
                "speedup_vs_contextcite": secs / ours,
            }
        out[variant] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--masks", type=int, default=64)
    ap.add_argument("--contextcite", type=int, default=10,
                    help="run ContextCite on the first K questions of each variant")
    ap.add_argument("--variants", default="plain,counterfactual")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--budget", type=float, default=1e9, help="seconds of scoring, in all")
    ap.add_argument("--default", default="logprob_sum,ridge,1.0",
                    help="target,surrogate,alpha reported as 'perturbation (default)'")
    ap.add_argument("--analyse", action="store_true", help="only re-run the sweep")
    ap.add_argument("--dataset", choices=("hotpotqa", "musique"), default="hotpotqa")
    ap.add_argument("--max-passages", type=int, default=10)
    ap.add_argument("--data", default=None, help="default: the shared train file of --dataset")
    ap.add_argument("--records", default=None,
                    help="default: bench/results/attribution_signal[_DATASET]_records.jsonl")
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    args.data = args.data or default_data(args.dataset)
    args.records = args.records or default_records(args.dataset)
    args.output = args.output or str(RESULTS / f"attribution_signal{_tag(args.dataset)}.json")
    t_def, kind_def, a_def = args.default.split(",")
    default = (t_def, kind_def, float(a_def))
    rec_path = Path(args.records)
    done = {}
    if rec_path.exists():
        for line in rec_path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["variant"], r["id"])] = r

    if not args.analyse:
        from scarlet_ray.attribution.engine import AttributionEngine
        from scarlet_ray.config import AttributionConfig, LabelsConfig
        from scarlet_ray.models.encoder import load_encoder
        from scarlet_ray.models.generator import load_generator

        samples = load_samples(args.dataset, args.data, args.limit, args.max_passages)
        gen = load_generator("smollm2-135m-instruct", dtype=args.dtype)
        enc = load_encoder("all-minilm-l6-v2")
        eng = AttributionEngine(gen, AttributionConfig(n_masks=args.masks), LabelsConfig())
        t_start = time.time()
        rec_path.parent.mkdir(parents=True, exist_ok=True)
        n_cc = {v: 0 for v in args.variants.split(",")}
        for i, s in enumerate(samples):
            for v in args.variants.split(","):
                if time.time() - t_start > args.budget:
                    break
                key_id = s.id
                prior = done.get((v, key_id))
                if prior is not None:
                    # the first K of each variant get ContextCite with the current peer (same
                    # prompt as ours, its masks kept); our stored scores are reused
                    redo = ("skipped" not in prior and n_cc[v] < args.contextcite
                            and "contextcite_masks" not in prior)
                    if not redo:
                        n_cc[v] += "contextcite" in prior
                        continue
                    sv = s if v == "plain" else counterfactual(s, other_answer(samples, i))[0]
                    rec = dict(prior)
                    add_contextcite(gen, eng, sv, rec)
                    n_cc[v] += 1
                    with open(rec_path, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
                    done[(v, key_id)] = rec
                    print(f"[{time.time() - t_start:7.0f}s] {v} {i + 1}/{len(samples)} "
                          f"cc added {rec['contextcite_seconds']:.1f}s", flush=True)
                    continue
                if v == "plain":
                    sv, pairs = s, []
                else:
                    sv, pairs = counterfactual(s, other_answer(samples, i))
                    if not pairs:
                        rec = {"id": s.id, "variant": v,
                               "skipped": "no gold passage contains the answer"}
                        with open(rec_path, "a") as fh:
                            fh.write(json.dumps(rec) + "\n")
                        done[(v, key_id)] = rec
                        continue
                want_cc = n_cc[v] < args.contextcite
                rec = score_question(gen, enc, eng, sv, v, pairs, s.gold_passage_ids, want_cc)
                n_cc[v] += want_cc
                with open(rec_path, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                done[(v, key_id)] = rec
                print(f"[{time.time() - t_start:7.0f}s] {v} {i + 1}/{len(samples)} "
                      f"{rec['perturbation_seconds']:.1f}s"
                      + (f" cc {rec['contextcite_seconds']:.1f}s" if want_cc else ""),
                      flush=True)

    records = [r for r in done.values() if "skipped" not in r]
    fill_answer_tokens(records, args.data, max(args.limit, 1), args.dataset)
    summary = analyse(records, default)
    summary["skipped"] = [{"id": r["id"], "variant": r["variant"], "reason": r["skipped"]}
                          for r in done.values() if "skipped" in r]
    summary["config"] = {"masks": args.masks, "default": args.default, "limit": args.limit,
                         "dtype": args.dtype, "dataset": args.dataset,
                         "max_passages": args.max_passages}
    write_json(args.output, summary)
    for v in ("plain", "counterfactual"):
        if v not in summary:
            continue
        print(f"\n{v} ({summary[v]['questions']} questions; held-out R^2 of the default "
              f"surrogate {summary[v]['r2_heldout_mean']:.3f})")
        for m in ("perturbation (default)", *METHODS_FIXED):
            print(f"  {m:<26}{json.dumps(summary[v][m])}")
        best = sorted(summary[v]["grid"].items(), key=lambda kv: -max(
            x for x in kv[1].values() if isinstance(x, float)))[:5]
        print("  best of the sweep:")
        for k, x in best:
            print(f"    {k:<40}{json.dumps(x)}")
        if "side_by_side" in summary[v]:
            print("  side by side with ContextCite: " + json.dumps(summary[v]["side_by_side"]))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
