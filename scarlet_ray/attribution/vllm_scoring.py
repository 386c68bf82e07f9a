"""Teacher-forced scoring of a sample's masks by a vLLM engine's prompt log-probs.

The same masked prompts as the HF path, as the same token ids (``masked_prompt_ids`` + the
answer ids), sent as ``TokensPrompt`` with ``prompt_logprobs=0``: vLLM then returns, for every
prompt position, the score of the token that is actually there, and the last ``len(answer)``
rows are the answer's. Targets:

* ``logprob_sum``: the sum of those rows (engine in ``raw_logprobs`` mode);
* ``logit_prob``: a function of ``logprob_sum`` (``scoring.logit_of_prob``), same engine;
* ``logit_sum``: needs unnormalised logits, which vLLM gives only from an engine started in
  ``raw_logits`` mode (``vllm_engine.logprobs_mode``); such an engine cannot give the other two.

Prefix cache: vLLM skips *reading* the prefix cache for any request that asks for prompt
log-probs (a cached block would have no log-probs). Here the rows wanted are only the answer's,
at the end of each sequence, and a sample's masks differ before their answers, so a block
shared by two masks never holds an answer row: reading the cache is safe *within* one sample.
Across calls it is not (the same sample scored twice would hit its own answer rows), so every
call salts the cache with a fresh id (``cache_salt``): masks of one call share their prefixes,
nothing else does. Every answer row is still checked to carry its own token; a row that does
not fails the sample with the reason instead of giving a wrong score.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import numpy as np
import torch

from scarlet_ray.attribution.masks import unique_rows
from scarlet_ray.attribution.scoring import (
    TARGETS,
    PreparedSample,
    ScoreStats,
    logit_of_prob,
    masked_prompt_ids,
)
from scarlet_ray.models.generator import Generator

_CALLS = itertools.count()


def targets_available(mode: str) -> tuple[str, ...]:
    return ("logit_sum",) if mode == "raw_logits" else ("logprob_sum", "logit_prob")


def score_masks_vllm(gen: Generator, prep: PreparedSample, masks: np.ndarray,
                     targets: Sequence[str] = ("logprob_sum",), *, prefix_cache: bool = True,
                     stats: ScoreStats | None = None) -> dict[str, np.ndarray]:
    """Every requested target for every mask (duplicates scored once), from one engine call."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    mode = gen.info.get("engine_kwargs", {}).get("logprobs_mode", "raw_logprobs")
    for t in targets:
        if t not in TARGETS:
            raise ValueError(f"unknown target {t!r}; known: {list(TARGETS)}")
        if t not in targets_available(mode):
            raise ValueError(f"target {t}: a vLLM engine in {mode} mode gives only "
                             f"{list(targets_available(mode))} (one mode per engine)")
    uniq, inverse = unique_rows(masks)
    ans = prep.answer_ids
    n_ans = len(ans)
    seqs = [masked_prompt_ids(gen, prep, m) + ans for m in uniq]
    salt = f"{os.getpid()}-{next(_CALLS)}"
    reqs = [TokensPrompt(prompt_token_ids=s, cache_salt=salt) for s in seqs]
    sp = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False,
                        skip_reading_prefix_cache=not prefix_cache)
    outs = gen.engine.generate(reqs, sp, use_tqdm=False)
    sums = np.empty(len(uniq), dtype=np.float64)
    computed = 0
    for j, (o, seq) in enumerate(zip(outs, seqs, strict=True)):
        rows = (o.prompt_logprobs or [])[-n_ans:]
        if len(rows) != n_ans or list(o.prompt_token_ids[-n_ans:]) != ans:
            raise RuntimeError(f"vllm returned {len(rows)} answer rows for mask {j}, "
                               f"wanted {n_ans}")
        total = 0.0
        for pos, (row, tok) in enumerate(zip(rows, ans, strict=True)):
            if not row or tok not in row:
                raise RuntimeError(f"vllm returned no score for answer token {pos} (id {tok}) "
                                   f"of mask {j}: was its row served from the prefix cache?")
            total += row[tok].logprob
        sums[j] = total
        computed += len(seq) - int(getattr(o, "num_cached_tokens", 0) or 0)
    st = stats if stats is not None else ScoreStats()
    st.n_unique_masks += len(uniq)
    st.n_equiv_tokens += int(sum(len(seqs[j]) for j in inverse))
    st.n_tokens += computed
    st.n_padded_tokens += computed
    st.n_forwards += 1
    st.n_logit_rows += int(sum(len(s) for s in seqs))  # vLLM projects every prompt row
    out: dict[str, np.ndarray] = {}
    for t in targets:
        v = sums if t != "logit_prob" else logit_of_prob(torch.from_numpy(sums)).numpy()
        out[t] = v[inverse]
    return out


__all__ = ["score_masks_vllm", "targets_available"]
