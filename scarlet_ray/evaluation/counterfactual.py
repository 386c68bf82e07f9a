"""Counterfactual attribution check (the GTI benchmark's construction), as pure functions.

Plain nDCG against gold rewards any method that finds the passages that look like the question
(retriever similarity does well on HotpotQA, whose distractors were picked by word overlap).
The counterfactual sample separates looking relevant from being used: each gold passage that
contains the answer gets a copy with the answer swapped for another sample's answer, inserted at
a random position; the ground truth stays. A faithful attribution ranks the true passage above
its copy, which reads the same but supports another answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from scarlet_ray.records import Passage, Sample

Pair = tuple[str, str]  # (true gold passage id, id of its answer-swapped copy)


def _copy_id(pid: str, taken: set[str]) -> str:
    """``cf-<pid>``, suffixed until it is not a passage id already."""
    cid, n = f"cf-{pid}", 1
    while cid in taken:
        cid, n = f"cf-{pid}-{n}", n + 1
    return cid


def counterfactual(sample: Sample, other_answer: str) -> tuple[Sample, list[Pair]]:
    """Copy each answer-bearing gold passage with the answer (case-insensitively) swapped.

    Returns the sample with the copies inserted at seeded random positions, and the
    (true, copy) pairs; no pairs when the answer is empty or in no gold passage. The output,
    gold ids and the order of the original passages are unchanged. The seed (the id's length)
    is the one the bench's stored records were made with.
    """
    ans = sample.output.strip()
    pat = re.compile(re.escape(ans), re.IGNORECASE)
    passages = list(sample.passages)
    by_id = {p.id: p for p in sample.passages}
    taken = set(by_id)
    pairs: list[Pair] = []
    rng = np.random.default_rng(len(sample.id))
    for pid in sample.gold_passage_ids:
        p = by_id.get(pid)
        if p is None or not ans or not pat.search(p.text):
            continue
        cid = _copy_id(pid, taken)
        taken.add(cid)
        # a function, not a template: an answer with a backslash is text, not a group reference
        cf = Passage(id=cid, title=p.title, text=pat.sub(lambda _: other_answer, p.text))
        passages.insert(int(rng.integers(0, len(passages) + 1)), cf)
        pairs.append((pid, cid))
    return sample.model_copy(update={"passages": passages}), pairs


def other_answer(samples: Sequence[Sample], i: int) -> str:
    """The next sample's (non-empty) answer that neither equals nor contains sample ``i``'s,
    case-insensitively; ValueError when there is none."""
    mine = samples[i].output.strip().lower()
    for j in range(1, len(samples)):
        cand = samples[(i + j) % len(samples)].output.strip()
        if cand and cand.lower() != mine and mine not in cand.lower():
            return cand
    raise ValueError("no other answer to swap in")


def pair_wins(scores: Sequence[float], passage_ids: Sequence[str],
              pairs: Sequence[Pair]) -> list[float]:
    """1.0 per pair whose true passage scores above its copy, else 0.0 (a tie is not a win).

    Pairs with a side not in ``passage_ids`` (cut to fit the window) are left out.
    """
    x = np.asarray(scores, dtype=np.float64)
    idx = {p: j for j, p in enumerate(passage_ids)}
    return [float(x[idx[a]] > x[idx[b]]) for a, b in pairs if a in idx and b in idx]


def share_won(wins: Sequence[float]) -> float | None:
    """The share of pairs won; None without pairs."""
    return float(np.mean(wins)) if len(wins) else None


def summarise_wins(per_sample: Sequence[Sequence[float]]) -> dict[str, float | int | None]:
    """Pooled share of pairs won, the mean of per-sample shares, and the counts behind them."""
    pooled = [w for ws in per_sample for w in ws]
    shares = [s for ws in per_sample if (s := share_won(ws)) is not None]
    return {"won": share_won(pooled),
            "won_per_sample": float(np.mean(shares)) if shares else None,
            "pairs": len(pooled), "n": len(shares)}
