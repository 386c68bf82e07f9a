"""ContextCite 0.0.4 on our samples: passages as its sources, the ground truth as its response.

Its passages come through a custom ``BaseContextPartitioner`` (one source per passage, rendered
as our prompt renders them) and the ground truth is injected as the response via
``_cache["output"] = prompt + answer``, so it attributes the same answer to the same passages.
"""

from __future__ import annotations

import time

import numpy as np


def contextcite_utilities(gen, sample, n_ablations: int, batch_size: int = 8,
                          seed_masks: bool = True) -> tuple[np.ndarray, dict]:
    from context_cite import ContextCiter
    from context_cite.context_partitioner import BaseContextPartitioner

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

    instr = sample.instruction.replace("{", "{{").replace("}", "}}")
    template = instr + "\n\nPassages:\n{context}\n\nInput: {query}"
    gen.tokenizer.padding_side = "left"
    cc = ContextCiter(gen.model, gen.tokenizer, context, sample.input,
                      partitioner=PassagePartitioner(context), num_ablations=n_ablations,
                      batch_size=batch_size, prompt_template=template)
    _, prompt = cc._get_prompt_ids(return_prompt=True)
    cc._cache["output"] = prompt + sample.output
    t0 = time.perf_counter()
    util = np.asarray(cc.get_attributions(verbose=False), dtype=np.float64)
    dt = time.perf_counter() - t0
    masks = cc._masks
    n_resp = len(cc._response_ids)
    tokens = int(sum(len(cc._get_prompt_ids(m)) + n_resp for m in masks))
    gen.tokenizer.padding_side = "right"
    return util, {"seconds": dt, "tokens": tokens}
