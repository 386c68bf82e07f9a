"""Attribution faithfulness against gold passages (the GTI protocol of the paper's Table 8).

Every method produces one score per passage; all are ranked and scored the same way
(nDCG@k with binary gold relevance). Baselines: leave-one-out (drop one passage, score change),
retriever similarity (query vs passage embeddings), attention mass from the answer tokens to each
passage, and random.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from scarlet_ray.attribution.masks import mask_seed
from scarlet_ray.attribution.scoring import PreparedSample, score_masks
from scarlet_ray.formatting import passage_text
from scarlet_ray.models.generator import Generator
from scarlet_ray.prompt import chat_messages
from scarlet_ray.records import Passage


def ndcg_at_k(scores: Sequence[float], relevant: Sequence[bool], k: int) -> float:
    """Binary-relevance nDCG@k of ranking passages by score (ties: original order)."""
    s = np.asarray(scores, dtype=np.float64)
    rel = np.asarray(relevant, dtype=np.float64)
    if rel.sum() == 0:
        raise ValueError("no relevant passage: nDCG undefined")
    order = np.argsort(-s, kind="stable")[:k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((rel[order] * disc[: len(order)]).sum())
    ideal = float(disc[: int(min(k, rel.sum()))].sum())
    return dcg / ideal


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
