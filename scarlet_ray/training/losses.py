"""Contrastive losses for the bi-encoder (pure torch, no distributed logic).

Layout used everywhere: ``q`` is ``[B, D]`` query embeddings; ``docs`` is ``[B * G, D]`` passage
embeddings in groups of ``G`` per query, the first of each group being the positive and the other
``G - 1`` the sampled negatives (FlagEmbedding's ``group_size``).

* ``pairwise_ce``: the paper's loss. Every (query, positive, negative) triple is a two-way softmax
  over ``[s(q, p+), s(q, p-)] / t``; the loss is the mean over triples of
  ``-log softmax(...)[0] = softplus((s(q, p-) - s(q, p+)) / t)``.
* ``infonce``: one positive against the query's own negatives and every other document in the
  batch (in-batch negatives). Passing ``extra_docs`` (other workers' documents, gathered) makes a
  distributed batch see the same candidates as one big batch.
* ``utility_kl``: soft labels (issue 19, LLM-Embedder's distillation of LLM rewards): the KL
  divergence from a softmax of the passages' utilities (at ``label_temperature``) to the
  retriever's softmax over the same group. As ``label_temperature -> 0`` the target becomes the
  top-utility passage alone and the loss the group cross-entropy of that passage against the
  others (tested). ``training.loss: utility_kl`` trains on it, with the utilities the label
  stage writes (``pos_scores``/``neg_scores``) and ``training.label_temperature``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Similarity = Literal["cos", "dot"]


def similarity(q: torch.Tensor, d: torch.Tensor, kind: Similarity = "cos") -> torch.Tensor:
    """``[B, D] x [N, D] -> [B, N]`` cosine or dot-product scores."""
    if kind == "cos":
        q = F.normalize(q, dim=-1)
        d = F.normalize(d, dim=-1)
    elif kind != "dot":
        raise ValueError(f"similarity: unknown kind {kind!r} (cos | dot)")
    return q @ d.T


def _check(q: torch.Tensor, docs: torch.Tensor) -> int:
    if q.ndim != 2 or docs.ndim != 2 or q.shape[1] != docs.shape[1]:
        raise ValueError(f"expected q [B, D] and docs [B*G, D], got {tuple(q.shape)} and "
                         f"{tuple(docs.shape)}")
    b = q.shape[0]
    if b == 0 or docs.shape[0] % b:
        raise ValueError(f"docs rows ({docs.shape[0]}) must be a multiple of queries ({b})")
    g = docs.shape[0] // b
    if g < 2:
        raise ValueError("each query needs a positive and at least one negative (group size >= 2)")
    return g


def _group_scores(q: torch.Tensor, docs: torch.Tensor, sim: Similarity) -> torch.Tensor:
    """``[B, G]`` scores of each query against its own group of ``G`` passages."""
    g = _check(q, docs)
    b, dim = q.shape
    grouped = docs.view(b, g, dim)
    if sim == "cos":
        return torch.einsum("bd,bgd->bg", F.normalize(q, dim=-1), F.normalize(grouped, dim=-1))
    if sim == "dot":
        return torch.einsum("bd,bgd->bg", q, grouped)
    raise ValueError(f"similarity: unknown kind {sim!r} (cos | dot)")


def pairwise_ce(q: torch.Tensor, docs: torch.Tensor, temperature: float = 0.05,
                sim: Similarity = "cos", reduction: Literal["mean", "sum"] = "mean"
                ) -> torch.Tensor:
    """Mean over (q, p+, p-) triples of the two-way cross-entropy (the paper's loss)."""
    s = _group_scores(q, docs, sim)
    margins = (s[:, 1:] - s[:, :1]) / temperature  # [B, G-1]
    per_query = F.softplus(margins).mean(dim=1)
    return per_query.mean() if reduction == "mean" else per_query.sum()


def infonce(q: torch.Tensor, docs: torch.Tensor, temperature: float = 0.05,
            sim: Similarity = "cos", *, extra_docs: torch.Tensor | None = None,
            doc_offset: int = 0, reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Cross-entropy of each query's positive against all candidate documents.

    Candidates are ``extra_docs`` when given (the gathered global batch, which must contain
    ``docs`` at row ``doc_offset``), else ``docs``. Query ``i``'s positive is candidate row
    ``doc_offset + i * G``.
    """
    g = _check(q, docs)
    cands = docs if extra_docs is None else extra_docs
    scores = similarity(q, cands, sim) / temperature
    target = doc_offset + torch.arange(q.shape[0], device=q.device) * g
    return F.cross_entropy(scores, target, reduction=reduction)


def utility_kl(q: torch.Tensor, docs: torch.Tensor, utilities: torch.Tensor,
               temperature: float = 0.05, label_temperature: float = 1.0,
               sim: Similarity = "cos", reduction: Literal["mean", "sum"] = "mean"
               ) -> torch.Tensor:
    """Mean over queries of ``KL(softmax(u / label_t) || softmax(s / t))`` within each group.

    ``utilities`` is ``[B, G]``, aligned with the ``G`` passages of each query's group (any
    order: no passage is special). Gradients flow to the embeddings only.
    """
    s = _group_scores(q, docs, sim)
    if utilities.shape != s.shape:
        raise ValueError(f"utilities: expected {list(s.shape)}, got {tuple(utilities.shape)}")
    if label_temperature <= 0 or temperature <= 0:
        raise ValueError("temperatures must be > 0")
    log_p = F.log_softmax(s / temperature, dim=1)
    log_t = F.log_softmax(utilities.detach().to(s.dtype) / label_temperature, dim=1)
    per_query = (log_t.exp() * (log_t - log_p)).sum(dim=1)
    return per_query.mean() if reduction == "mean" else per_query.sum()


def contrastive_loss(kind: str, q: torch.Tensor, docs: torch.Tensor, temperature: float,
                     sim: Similarity, **kw: object) -> torch.Tensor:
    """Dispatch by config name (``training.loss``)."""
    if kind == "pairwise_ce":
        return pairwise_ce(q, docs, temperature, sim)
    if kind == "infonce":
        return infonce(q, docs, temperature, sim, **kw)  # type: ignore[arg-type]
    if kind == "utility_kl":
        return utility_kl(q, docs, kw["utilities"], temperature,  # type: ignore[arg-type]
                          float(kw.get("label_temperature", 1.0)), sim)  # type: ignore[arg-type]
    raise ValueError(f"training.loss: unknown loss {kind!r} (pairwise_ce | infonce | utility_kl)")
