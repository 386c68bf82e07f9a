"""The attribution engine: ``score`` (generator, expensive) then ``fit`` (CPU, pure).

The split is the contract with the Ray runner: actors holding the generator call ``score`` and
ship ``ScoredSample.to_row()`` rows; ``fit`` runs anywhere without the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scarlet_ray.attribution.labels import assign_labels
from scarlet_ray.attribution.masks import make_masks
from scarlet_ray.attribution.scoring import (
    PreparedSample,
    ScoreStats,
    assert_finite,
    prepare_sample,
    score_masks,
)
from scarlet_ray.attribution.surrogate import fit_surrogate
from scarlet_ray.config import AttributionConfig, LabelsConfig
from scarlet_ray.models.generator import Generator
from scarlet_ray.prompt import PromptTooLong, WindowLog
from scarlet_ray.records import Attribution, Passage, Sample


@dataclass
class ScoredSample:
    """Output of the expensive generator part: masks and the target under each."""

    id: str
    passage_ids: list[str]
    masks: np.ndarray  # (n, k) bool
    scores: np.ndarray  # (n,) float64 target values
    n_tokens: int  # tokens actually forwarded (for throughput)
    truncated: list[str] = field(default_factory=list)  # passage ids dropped/shortened
    answer_tokens: int = 1  # ground-truth tokens scored (the LASSO penalty is per token)

    def to_row(self) -> dict[str, Any]:
        """Arrow-friendly: lists and scalars only."""
        return {
            "id": self.id,
            "passage_ids": list(self.passage_ids),
            "masks": np.asarray(self.masks, dtype=bool).tolist(),
            "scores": [float(x) for x in self.scores],
            "n_tokens": int(self.n_tokens),
            "truncated": list(self.truncated),
            "answer_tokens": int(self.answer_tokens),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScoredSample:
        pids = [str(x) for x in row["passage_ids"]]
        scores = np.asarray(list(row["scores"]), dtype=np.float64)
        masks = np.asarray([list(m) for m in row["masks"]], dtype=bool)
        masks = masks.reshape(len(scores), len(pids))
        return cls(id=str(row["id"]), passage_ids=pids, masks=masks, scores=scores,
                   n_tokens=int(row["n_tokens"]), truncated=[str(x) for x in row["truncated"]],
                   answer_tokens=int(row["answer_tokens"]))


def cut_words(passages: list[Passage], words: int | None) -> list[Passage]:
    """Optional ``attribution.passage_words``: each passage cut to its first N words."""
    if not words:
        return passages
    out = []
    for p in passages:
        w = p.text.split()
        out.append(p if len(w) <= words else Passage(id=p.id, title=p.title,
                                                     text=" ".join(w[:words])))
    return out


class AttributionEngine:
    """Perturbation attribution of one sample at a time (stages 3-4)."""

    def __init__(self, generator: Generator | None, cfg: AttributionConfig,
                 labels_cfg: LabelsConfig, *, generator_name: str | None = None):
        self.generator = generator
        self.cfg = cfg
        self.labels_cfg = labels_cfg
        self.generator_name = generator_name or (generator.name if generator else "unknown")
        self.last_stats = ScoreStats()
        self.last_note = ""
        # every prepared context, for the manifest's ``prompt_window`` (window_log.summary())
        self.window_log = WindowLog()
        self.max_batch_tokens = self._batch_tokens()

    def _batch_tokens(self) -> int:
        """On CUDA, cap ``max_batch_tokens`` by what the GPU's free memory holds (so an 8B
        model on a 24 GB card does not OOM where an 80 GB card takes the configured size)."""
        gen = self.generator
        if gen is None or gen.engine is not None or gen.device.type != "cuda":
            return self.cfg.max_batch_tokens
        from scarlet_ray.models.gpu import scoring_batch_tokens

        return scoring_batch_tokens(gen.model.config, gen.dtype, gen.device,
                                    logits_fraction=0.1, max_tokens=self.cfg.max_batch_tokens)

    # -- generator part
    def prepare(self, sample: Sample) -> PreparedSample:
        """The sample's context fitted to the window by the shared rule, logged for the manifest."""
        if self.generator is None:
            raise ValueError("this engine has no generator: it can fit but not score")
        try:
            prep = prepare_sample(self.generator, sample.instruction,
                                  cut_words(list(sample.passages), self.cfg.passage_words),
                                  sample.input, sample.output,
                                  max_context_tokens=self.cfg.max_context_tokens)
        except PromptTooLong:
            self.window_log.add_error(sample.id)
            raise
        if prep.fit is not None:
            self.window_log.add(sample.id, prep.fit)
        return prep

    def masks_for(self, sample_id: str, n_passages: int) -> np.ndarray:
        c = self.cfg
        return make_masks(n_passages, c.n_masks, c.keep_prob, seed=c.seed, sample_id=sample_id,
                          include_full=c.include_full, include_empty=c.include_empty,
                          dedupe=c.dedupe_masks)

    def score(self, sample: Sample) -> ScoredSample:
        """Score the ground truth under every mask; ValueError with the reason on bad samples."""
        prep = self.prepare(sample)
        masks = self.masks_for(sample.id, len(prep.passages))
        if len(masks) < 2:
            raise ValueError(f"only {len(masks)} distinct mask(s) possible; need at least 2")
        stats = ScoreStats()
        if self.generator.engine is not None:  # the vllm backend
            from scarlet_ray.attribution.vllm_scoring import score_masks_vllm

            scores = score_masks_vllm(self.generator, prep, masks, (self.cfg.target,),
                                      prefix_cache=self.cfg.prefix_cache,
                                      stats=stats)[self.cfg.target]
        else:
            scores = score_masks(self.generator, prep, masks, self.cfg.target,
                                 max_batch_tokens=self.max_batch_tokens,
                                 prefix_cache=self.cfg.prefix_cache,
                                 sharing=self.cfg.kv_sharing,
                                 walkers=self.cfg.cpu_walkers, stats=stats)
        assert_finite(scores, f"sample {sample.id}")
        self.last_stats = stats
        self.last_note = prep.truncation_note
        return ScoredSample(id=sample.id, passage_ids=[p.id for p in prep.passages],
                            masks=masks, scores=scores, n_tokens=stats.n_tokens,
                            truncated=list(prep.truncated), answer_tokens=len(prep.answer_ids))

    # -- CPU part
    def fit(self, scored: ScoredSample) -> Attribution:
        """Surrogate + labels; pure function of the scored sample and the config."""
        c, lc = self.cfg, self.labels_cfg
        alpha = c.alpha if c.surrogate == "ridge" else c.lasso_alpha
        sur = fit_surrogate(scored.masks, scored.scores, c.surrogate, alpha, c.cv_folds, c.seed,
                            answer_tokens=scored.answer_tokens)
        lab = assign_labels(sur.utility, lc.method, lc.k, lc.random_state, lc.fixed_top,
                            lc.fixed_bottom)
        return Attribution(
            id=scored.id, passage_ids=list(scored.passage_ids),
            utility=[float(x) for x in sur.utility], intercept=float(sur.intercept),
            r2=None if sur.r2 is None else float(sur.r2), label=lab.labels,
            n_masks=int(len(scored.masks)), target=c.target, generator=self.generator_name)

    def attribute(self, sample: Sample) -> Attribution:
        return self.fit(self.score(sample))
