"""ContextCite 0.0.4 on our samples: passages as its sources, the ground truth as its response.

Its passages come through a custom ``BaseContextPartitioner`` (one source per passage, rendered
as our prompt renders them) and the ground truth is injected as the response via
``_cache["output"] = prompt + answer``, so it attributes the same answer to the same passages.
Its masked prompts go through our chat messages (DESIGN §5, system prompt included), so the two
tools score identical token sequences and differ only in their masks and surrogate.
"""

from __future__ import annotations

import time

import numpy as np


def contextcite_utilities(gen, sample, n_ablations: int, batch_size: int = 8,
                          seed_masks: bool = True) -> tuple[np.ndarray, dict]:
    from context_cite import ContextCiter
    from context_cite.context_partitioner import BaseContextPartitioner
    from context_cite.utils import aggregate_logit_probs

    from scarlet_ray.prompt import chat_messages

    sources = [p.render() for p in sample.passages]
    context = "\n\n".join(sources)

    class PassagePartitioner(BaseContextPartitioner):
        def __init__(self, ctx: str) -> None:
            super().__init__(ctx)

        @property
        def num_sources(self) -> int:
            return len(sources)

        def split_context(self) -> None:
            return None

        def get_source(self, index: int) -> str:
            return sources[index]

        def get_context(self, mask=None) -> str:
            if mask is None:
                return context
            return "\n\n".join(s for s, m in zip(sources, mask, strict=True) if m)

    class SamePromptCiter(ContextCiter):
        """Its masked prompts rendered by our chat messages (system prompt included), so both
        tools score the same token sequences; ContextCite's own template would put the user
        turn under the tokenizer's default system prompt instead."""

        def _get_prompt_ids(self, mask=None, return_prompt: bool = False):
            sel = sample.passages if mask is None else [
                p for p, keep in zip(sample.passages, mask, strict=True) if keep]
            msgs = chat_messages(sample.instruction, sel, sample.input)
            text = self.tokenizer.apply_chat_template(msgs, tokenize=False,
                                                      add_generation_prompt=True)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            return (ids, text) if return_prompt else ids

    gen.tokenizer.padding_side = "left"
    cc = SamePromptCiter(gen.model, gen.tokenizer, context, sample.input,
                         partitioner=PassagePartitioner(context), num_ablations=n_ablations,
                         batch_size=batch_size)
    _, prompt = cc._get_prompt_ids(return_prompt=True)
    cc._cache["output"] = prompt + sample.output
    t0 = time.perf_counter()
    util = np.asarray(cc.get_attributions(verbose=False), dtype=np.float64)
    dt = time.perf_counter() - t0
    masks = cc._masks
    n_resp = len(cc._response_ids)
    tokens = int(sum(len(cc._get_prompt_ids(m)) + n_resp for m in masks))
    gen.tokenizer.padding_side = "right"
    # its masks and its per-mask target (logit_prob of the whole answer), so the same masks can be
    # scored by our engine and the two compared mask for mask
    target = np.asarray(aggregate_logit_probs(cc._logit_probs), dtype=np.float64)
    return util, {"seconds": dt, "tokens": tokens, "masks": np.asarray(masks, dtype=bool),
                  "target": target}
