"""The trainer's guard: held-out examples, a ranking measure on them, and the best step kept.

Contrastive fine-tuning of a small retriever on a few hundred noisy examples can make it worse
than the model it started from (the value study in the README measured exactly that). With
``training.validation_fraction`` the loop holds out a seeded share of the examples, ranks each
held-out example's own passages (every positive and negative it lists) before training and at
every validation point, and exports the best-validating weights, the starting model included; with
``training.early_stopping_patience`` it stops after that many validations without improvement.

The measure is nDCG over the example's passages with its positives as relevant: loss-independent
(the same number for InfoNCE, pairwise CE and utility KL), so runs with different losses compare.
Every rank ranks every held-out example, so all ranks reach the same decision without a
collective and run the same forwards (ZeRO-3 needs that).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scarlet_ray.evaluation.ranking import ndcg_at_k
from scarlet_ray.records import TrainingExample


def split_validation(examples: Sequence[TrainingExample], fraction: float, seed: int
                     ) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(train, held out): a seeded ``fraction`` of the examples, at least one when > 0."""
    if not 0 <= fraction < 1:
        raise ValueError(f"training.validation_fraction: {fraction} is not in [0, 1)")
    if fraction == 0:
        return list(examples), []
    n_val = max(1, int(round(fraction * len(examples))))
    if n_val >= len(examples):
        raise ValueError(f"training.validation_fraction: {fraction} of {len(examples)} "
                         "examples leaves none to train on")
    order = np.random.default_rng([seed, 7]).permutation(len(examples))
    held = set(order[:n_val].tolist())
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


def validation_ndcg(encode: Callable[[list[str]], np.ndarray],
                    examples: Sequence[TrainingExample], query_text: Callable[[Any], str],
                    chunk: int = 64) -> float:
    """Mean nDCG of each held-out example's passages ranked by cosine to its query.

    ``encode`` maps texts to L2-normalised embeddings (the loop passes the model in eval mode,
    without gradients); texts are encoded ``chunk`` at a time so memory stays flat."""
    queries = [query_text(e) for e in examples]
    docs = [d for e in examples for d in (*e.pos, *e.neg)]
    texts = queries + docs
    emb = np.concatenate([encode(texts[i:i + chunk]) for i in range(0, len(texts), chunk)])
    q, d = emb[: len(queries)], emb[len(queries):]
    out, at = [], 0
    for i, e in enumerate(examples):
        n = len(e.pos) + len(e.neg)
        out.append(ndcg_at_k(d[at:at + n] @ q[i], [True] * len(e.pos) + [False] * len(e.neg),
                              ties="pessimistic"))
        at += n
    return float(np.mean(out))


@dataclass
class BestTracker:
    """The best validation so far and how many validations since it improved (checkpointed)."""

    patience: int | None = None
    best_value: float | None = None
    best_step: int | None = None
    since_best: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def update(self, step: int, value: float) -> bool:
        """Record a validation; True if it is the best so far (strictly better)."""
        self.history.append({"step": step, "val_ndcg": value})
        if self.best_value is None or value > self.best_value:
            self.best_value, self.best_step, self.since_best = value, step, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_step": self.best_step,
                "since_best": self.since_best, "history": self.history}

    @classmethod
    def from_state(cls, patience: int | None, state: dict[str, Any] | None) -> BestTracker:
        t = cls(patience=patience)
        if state:
            t.best_value, t.best_step = state["best_value"], state["best_step"]
            t.since_best, t.history = int(state["since_best"]), list(state["history"])
        return t
