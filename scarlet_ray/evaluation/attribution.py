"""Attribution faithfulness against gold passages (the GTI protocol of the paper's Table 8).

Every method produces one score per passage; all are ranked and scored the same way
(nDCG@k with binary gold relevance). Baselines: leave-one-out (drop one passage, score change),
retriever similarity (query vs passage embeddings), attention mass from the answer tokens to each
passage, and random.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from scarlet_ray.attribution.masks import mask_seed
from scarlet_ray.attribution.scoring import PreparedSample, score_masks
from scarlet_ray.formatting import passage_text
from scarlet_ray.models.generator import Generator
from scarlet_ray.prompt import chat_messages
from scarlet_ray.records import Passage, Sample

if TYPE_CHECKING:
    from scarlet_ray.attribution.engine import AttributionEngine


def loo_scores(gen: Generator, prep: PreparedSample, target: str = "logprob_sum",
               max_batch_tokens: int = 16384) -> np.ndarray:
    """Leave-one-out: score(all) - score(all but i)."""
    k = len(prep.passages)
    masks = np.ones((k + 1, k), dtype=bool)
    for i in range(k):
        masks[i + 1, i] = False
    v = score_masks(gen, prep, masks, target, max_batch_tokens=max_batch_tokens)
    return v[0] - v[1:]


def similarity_scores(encoder: Any, query: str, passages: Sequence[Passage]) -> np.ndarray:
    """Cosine similarity of the query and each passage (title + text) with the retriever."""
    texts = [passage_text(p.title, p.text) for p in passages]
    q = encoder.encode([query], normalize_embeddings=True, convert_to_numpy=True)
    d = encoder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    return (d @ q[0]).astype(np.float64)


def random_scores(sample_id: str, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(mask_seed(seed, "random-baseline:" + sample_id)).random(k)


def passage_token_spans(gen: Generator, prep: PreparedSample) -> tuple[list[int],
                                                                      list[tuple[int, int]]]:
    """Prompt token ids and the [start, end) token span of each passage, via char offsets."""
    tok = gen.tokenizer
    msgs = chat_messages(prep.instruction, prep.passages, prep.input_text)
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offs = list(enc["input_ids"]), enc["offset_mapping"]
    spans, cursor = [], 0
    for p in prep.passages:
        start = text.index(p.render(), cursor)
        end = start + len(p.render())
        cursor = end
        toks = [i for i, (a, b) in enumerate(offs) if a < end and b > start]
        spans.append((min(toks), max(toks) + 1))
    return ids, spans


@torch.no_grad()
def attention_scores(gen: Generator, prep: PreparedSample) -> np.ndarray:
    """Attention mass from the answer tokens to each passage, averaged over layers and heads."""
    ids, spans = passage_token_spans(gen, prep)
    ans = prep.answer_ids
    x = torch.tensor([ids + ans], device=gen.device)
    model = gen.model
    prev = getattr(model.config, "_attn_implementation", None)
    try:
        model.set_attn_implementation("eager")
        out = model(x, output_attentions=True)
    finally:
        if prev:
            model.set_attn_implementation(prev)
    q0 = len(ids) - 1  # positions that predict answer tokens
    att = torch.stack([a[0, :, q0 : q0 + len(ans)].float() for a in out.attentions])
    mass = att.mean(dim=(0, 1)).sum(0)  # (seq,) summed over answer queries
    return np.array([float(mass[a:b].sum()) for a, b in spans], dtype=np.float64)


def baseline_scores(baselines: Sequence[str], sample_id: str, query: str,
                    passages: Sequence[Passage], *, gen: Generator | None = None,
                    prep: PreparedSample | None = None, encoder: Any = None,
                    target: str = "logprob_sum", seed: int = 0) -> dict[str, np.ndarray]:
    """Per-passage scores of the configured baselines, one place for the plain and the
    counterfactual evaluation.

    The generator baselines (leave-one-out, attention) run only with ``prep`` over exactly
    ``passages`` (a context cut by the window would score other passages); similarity only with
    an encoder.
    """
    out: dict[str, np.ndarray] = {}
    if gen is not None and prep is not None \
            and [p.id for p in prep.passages] == [p.id for p in passages]:
        if "loo" in baselines:
            out["loo"] = loo_scores(gen, prep, target)
        if "attention" in baselines:
            out["attention"] = attention_scores(gen, prep)
    if encoder is not None and "similarity" in baselines:
        out["similarity"] = similarity_scores(encoder, query, passages)
    if "random" in baselines:
        out["random"] = random_scores(sample_id, len(passages), seed)
    return out


def counterfactual_wins(engine: AttributionEngine, sample: Sample, other: str,
                        baselines: Sequence[str], *, encoder: Any = None,
                        seed: int = 0) -> tuple[dict[str, list[float]], str | None]:
    """Per method, the (true, copy) pair wins on the sample's counterfactual, the copy's sample
    attributed afresh by ``engine``; or ``({}, reason)`` when no pair can be scored.

    ValueError (a prompt that cannot fit, too few masks) propagates: the caller records it.
    """
    from scarlet_ray.evaluation.counterfactual import counterfactual, pair_wins

    cf, pairs = counterfactual(sample, other)
    if not pairs:
        return {}, "no_answer_in_gold"
    attr = engine.attribute(cf)
    ids = set(attr.passage_ids)
    pairs = [(a, b) for a, b in pairs if a in ids and b in ids]
    if not pairs:
        return {}, "pairs_cut"  # the window dropped a true passage or its copy
    by_id = {p.id: p for p in cf.passages}
    passages = [by_id[p] for p in attr.passage_ids]
    prep = engine.prepare(cf) if {"loo", "attention"} & set(baselines) else None
    scores = {"perturbation": np.asarray(attr.utility),
              **baseline_scores(baselines, cf.id, cf.input, passages, gen=engine.generator,
                                prep=prep, encoder=encoder, target=engine.cfg.target,
                                seed=seed)}
    return {m: pair_wins(v, attr.passage_ids, pairs) for m, v in scores.items()}, None
