"""Choose the attribution defaults on questions nobody tuned on (cross-validated).

The defaults (logprob_sum, ridge alpha 1, 64 masks) were picked on the first 50 shared HotpotQA
questions. Here the sweep of ``bench/attribution_signal.py`` (target x surrogate x alpha x masks,
computed from each question's stored forwards) picks a configuration on one part of the data
and is scored on another:

* across datasets: pick on all of HotpotQA, score on MuSiQue, and the reverse;
* within a dataset: 5-fold over questions, pick on four folds, score the fifth.

Each pick is compared with the current default on the same held-out questions (nDCG@5 against
the gold passages, paired bootstrap). No model runs: only the stored records are read.

    python bench/default_choice.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from _common import RESULTS, write_json
from attribution_signal import (
    ALPHAS,
    MASK_COUNTS,
    default_data,
    default_records,
    fill_answer_tokens,
    per_question,
    perturbation_utility,
)

DEFAULT = ("logprob_sum", "ridge", 1.0, 64)


def configs() -> list[tuple[str, str, float, int]]:
    from scarlet_ray.attribution.scoring import TARGETS

    return [(t, kind, a, n) for t in TARGETS
            for kind, alphas in (("ridge", ALPHAS), ("lasso", (0.01,)))
            for a in alphas for n in MASK_COUNTS]


def plain_records(dataset: str) -> list[dict]:
    recs: dict[str, dict] = {}
    for line in Path(default_records(dataset)).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r.get("variant") == "plain" and "skipped" not in r:
                recs[r["id"]] = r
    out = list(recs.values())
    fill_answer_tokens(out, default_data(dataset), 100, dataset)  # the LASSO's per-token scale
    return out


def scores(recs: list[dict], cfg: tuple[str, str, float, int]) -> np.ndarray:
    t, kind, a, n = cfg
    return per_question(recs, lambda r: perturbation_utility(r, t, kind, a, n), "ndcg@5")


def name(cfg: tuple[str, str, float, int]) -> str:
    return f"{cfg[0]}/{cfg[1]}/alpha={cfg[2]}/n={cfg[3]}"


def main() -> None:
    from scarlet_ray.evaluation.compare import paired_bootstrap

    data = {ds: plain_records(ds) for ds in ("hotpotqa", "musique")}
    grid = configs()
    table = {ds: {c: scores(recs, c) for c in grid} for ds, recs in data.items()}
    out: dict = {"default": name(DEFAULT), "questions": {k: len(v) for k, v in data.items()}}
    cross = {}
    for a, b in (("hotpotqa", "musique"), ("musique", "hotpotqa")):
        pick = max(grid, key=lambda c: float(np.mean(table[a][c])))
        cross[f"pick on {a}, score on {b}"] = {
            "pick": name(pick), f"ndcg@5 on {a}": float(np.mean(table[a][pick])),
            f"ndcg@5 on {b}": float(np.mean(table[b][pick])),
            f"default ndcg@5 on {b}": float(np.mean(table[b][DEFAULT])),
            "pick - default": paired_bootstrap(table[b][DEFAULT], table[b][pick])}
    out["across_datasets"] = cross
    within = {}
    for ds, recs in data.items():
        idx = list(range(len(recs)))
        random.Random(0).shuffle(idx)
        folds = [idx[f::5] for f in range(5)]
        picked, held_pick, held_def = [], np.zeros(len(recs)), np.zeros(len(recs))
        for held in folds:
            train = [i for i in idx if i not in set(held)]
            pick = max(grid, key=lambda c: float(np.mean(table[ds][c][train])))
            picked.append(name(pick))
            held_pick[held] = table[ds][pick][held]
            held_def[held] = table[ds][DEFAULT][held]
        within[ds] = {"picks": picked, "held-out ndcg@5 of the picks": float(held_pick.mean()),
                      "held-out ndcg@5 of the default": float(held_def.mean()),
                      "pick - default": paired_bootstrap(held_def, held_pick)}
    out["within_dataset_5fold"] = within
    out["pooled_best"] = sorted(
        ((name(c), float(np.mean(np.concatenate([table[d][c] for d in data])))) for c in grid),
        key=lambda x: -x[1])[:5]
    out["pooled_default"] = float(np.mean(np.concatenate([table[d][DEFAULT] for d in data])))
    write_json(RESULTS / "default_choice.json", out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
