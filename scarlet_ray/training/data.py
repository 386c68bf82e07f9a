"""FlagEmbedding-format training examples -> deterministic, rank-sharded contrastive batches.

Everything about a batch is a pure function of (seed, epoch, step, rank): the epoch's example
order, which positive and which negatives each example contributes, and which slice of the global
batch a worker gets. That is what makes a resumed run see exactly the batches an uninterrupted
run would, and one worker with global batch B see the same examples per step as two workers with
B/2 each (worker r takes the r-th contiguous slice of each global batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scarlet_ray.formatting import query_instruction, query_text
from scarlet_ray.records import RecordError, TrainingExample, iter_jsonl_objects, validate_record


def load_examples(path: str | Path, *, require_negatives: bool = True,
                  require_scores: bool = False) -> list[TrainingExample]:
    """Strictly read training JSONL; the first bad line raises ``file:line: field: reason``.

    ``require_scores`` (soft-label training): every passage needs its utility, i.e.
    ``pos_scores``/``neg_scores`` as long as ``pos``/``neg``."""
    p = Path(path)  # a missing file raises RecordError "PATH: (file): No such file ..."
    out: list[TrainingExample] = []
    for lineno, obj in iter_jsonl_objects(p):
        src = f"{p}:{lineno}"
        if isinstance(obj, RecordError):
            raise obj
        if isinstance(obj, dict) and obj.get("pos") == []:
            raise RecordError(src, "pos", "empty: an example needs at least one positive")
        ex = validate_record(TrainingExample, obj, src)
        if not ex.query.strip():
            raise RecordError(src, "query", "empty text")
        if require_negatives and not ex.neg:
            raise RecordError(src, "neg", "empty: an example needs at least one negative")
        if require_scores:
            for texts, field in ((ex.pos, "pos_scores"), (ex.neg, "neg_scores")):
                if len(getattr(ex, field)) != len(texts):
                    raise RecordError(src, field, f"{len(getattr(ex, field))} scores for "
                                      f"{len(texts)} passages (training.loss=utility_kl needs "
                                      "one utility per passage)")
        out.append(ex)
    if not out:
        raise ValueError(f"{p}: no training examples")
    return out


@dataclass
class MicroBatch:
    """What one worker feeds through the model for one forward/backward."""

    queries: list[str]
    docs: list[str]  # len(queries) * group_size; positive first in each group
    indices: list[int]  # example indices in the file, for logging and tests
    scores: list[float] | None = None  # each doc's utility, where the examples carry them


class Batcher:
    """Deterministic global batches, each split into ``grad_accum x world_size`` micro-batches."""

    def __init__(self, examples: list[TrainingExample], *, global_batch: int, group_size: int,
                 world_size: int = 1, rank: int = 0, grad_accum: int = 1, seed: int = 42,
                 query_instruction: str | None = None, shuffle: bool = True):
        if group_size < 2:
            raise ValueError("training.group_size: must be >= 2 (one positive, >= 1 negative)")
        per = world_size * grad_accum
        if global_batch % per:
            raise ValueError(f"training.batch_size: {global_batch} is not divisible by "
                             f"num_workers x grad_accum = {per}")
        if len(examples) < global_batch:
            raise ValueError(f"training.batch_size: {global_batch} exceeds the number of "
                             f"training examples ({len(examples)})")
        self.examples = examples
        self.global_batch = global_batch
        self.micro = global_batch // per
        self.group_size = group_size
        self.world_size = world_size
        self.rank = rank
        self.grad_accum = grad_accum
        self.seed = seed
        self.query_instruction = query_instruction
        self.shuffle = shuffle

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch; the last incomplete global batch is dropped (logged)."""
        return len(self.examples) // self.global_batch

    @property
    def dropped_per_epoch(self) -> int:
        return len(self.examples) - self.steps_per_epoch * self.global_batch

    def order(self, epoch: int) -> np.ndarray:
        n = len(self.examples)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def query_text(self, ex: TrainingExample) -> str:
        """``instruction [SEP] query``: the example's task instruction (its ``prompt``) unless
        ``training.query_instruction`` names one text for all."""
        return query_text(query_instruction(self.query_instruction, ex.prompt), ex.query)

    def group(self, idx: int, epoch: int) -> list[str]:
        """One positive and ``group_size - 1`` negatives, sampled by (seed, epoch, example)."""
        return self._pick(idx, epoch)[0]

    def group_scores(self, idx: int, epoch: int) -> list[float] | None:
        """The utilities of ``group``'s passages, in its order (None without scores)."""
        return self._pick(idx, epoch)[1]

    def _pick(self, idx: int, epoch: int) -> tuple[list[str], list[float] | None]:
        ex = self.examples[idx]
        rng = np.random.default_rng([self.seed, epoch, idx, 1])
        p = int(rng.integers(len(ex.pos)))
        k = self.group_size - 1
        if len(ex.neg) >= k:
            ni = [int(i) for i in rng.choice(len(ex.neg), size=k, replace=False)]
        else:  # too few negatives: repeat them (FlagEmbedding does the same)
            ni = [int(i) for i in rng.choice(len(ex.neg), size=k, replace=True)]
        texts = [ex.pos[p], *[ex.neg[i] for i in ni]]
        if len(ex.pos_scores) != len(ex.pos) or len(ex.neg_scores) != len(ex.neg):
            return texts, None
        return texts, [ex.pos_scores[p], *[ex.neg_scores[i] for i in ni]]

    def global_indices(self, epoch: int, step: int) -> list[int]:
        """Example indices of optimizer step ``step`` (0-based, within the epoch)."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside epoch of {self.steps_per_epoch} steps")
        o = self.order(epoch)
        return [int(i) for i in o[step * self.global_batch : (step + 1) * self.global_batch]]

    def micro_batches(self, epoch: int, step: int) -> list[MicroBatch]:
        """This rank's ``grad_accum`` micro-batches of step ``step``."""
        idx = self.global_indices(epoch, step)
        out = []
        for a in range(self.grad_accum):
            k = a * self.world_size + self.rank
            mine = idx[k * self.micro : (k + 1) * self.micro]
            picks = [self._pick(i, epoch) for i in mine]
            docs = [d for texts, _ in picks for d in texts]
            scores = None if any(sc is None for _, sc in picks) else \
                [x for _, sc in picks for x in sc]  # type: ignore[union-attr]
            out.append(MicroBatch([self.query_text(self.examples[i]) for i in mine], docs, mine,
                                  scores))
        return out
