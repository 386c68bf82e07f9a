"""Teacher-forced ground-truth scoring under masked contexts (SCARLet stage 3's cost).

Two scorers that must agree:

* ``naive_scores``: the obvious loop, one forward per mask over prompt + answer with
  full-vocabulary logits at every position. It is the reference the fast path is tested against.
* ``score_masks``: the fast path. Duplicate masks are scored once; the LM head runs only at the
  answer positions (hidden states -> lm_head on the gathered rows), so the vocabulary
  projection costs answer tokens, not context tokens. KV reuse, two ways:
  - ``trie`` (CPU default): a radix tree over the masked prompts' token ids; every shared run
    of tokens (the instruction, and passages 1..i for masks that agree on them) is forwarded
    once, down one KV cache that is cropped on the way back up (``attribution/trie.py``).
  - ``prefix`` (GPU default): the prefix common to every masked prompt is run once and its KV
    cache expanded over each batch; a sample's masks are batched, bucketed by length.

The shared prefix is the longest common prefix of the *token ids* of every masked prompt, so the
fast path forwards exactly the tokens the reference forwards (no re-tokenisation at a boundary).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scarlet_ray.attribution.masks import unique_rows
from scarlet_ray.attribution.trie import trie_hidden_rows
from scarlet_ray.models.generator import Generator
from scarlet_ray.models.kvcache import cache_kwargs, output_cache
from scarlet_ray.prompt import PromptFit, fit_chat_prompt
from scarlet_ray.records import Passage

log = logging.getLogger(__name__)

TARGETS = ("logprob_sum", "logit_sum", "logit_prob")
SHARING = ("auto", "trie", "prefix")
MIN_SHARED_PREFIX = 8  # below this the cache copies cost more than they save


@dataclass
class PreparedSample:
    """A sample's scoring inputs after the context was fitted into the token budget."""

    instruction: str
    input_text: str
    passages: list[Passage]
    answer_ids: list[int]
    truncated: list[str] = field(default_factory=list)  # passage ids dropped or shortened
    truncation_note: str = ""
    fit: PromptFit | None = None  # the shared window rule's record (prompt.fit_passages)


@dataclass
class ScoreStats:
    """What a scoring call forwarded, for throughput accounting."""

    n_tokens: int = 0  # tokens actually run through the model (prefix once + suffixes)
    n_padded_tokens: int = 0  # including right-padding inside batches
    n_equiv_tokens: int = 0  # tokens the naive reference would forward for the same masks
    n_forwards: int = 0
    n_logit_rows: int = 0  # rows that went through the LM head (vocabulary projection)
    n_unique_masks: int = 0
    prefix_len: int = 0


# ---------------------------------------------------------------- targets

def _token_logprobs(logits: torch.Tensor, ans: torch.Tensor) -> torch.Tensor:
    """(…, T, V) float logits, (…, T) ids -> (…, T) log p(answer token)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, ans.unsqueeze(-1)).squeeze(-1)


def logit_of_prob(lp: torch.Tensor) -> torch.Tensor:
    """log p - log(1 - p) from log p, stable near p = 1 (ContextCite's ``logit_prob``)."""
    lp = lp.clamp(max=-1e-12)
    log1m = torch.where(lp > -0.1, torch.log(-torch.expm1(lp)), torch.log1p(-torch.exp(lp)))
    return lp - log1m


def target_from_logits(logits: torch.Tensor, ans: torch.Tensor, target: str) -> torch.Tensor:
    """Sequence-level target from answer-position logits; batched over leading dims.

    ``logit_prob`` is ContextCite's: the logit of the whole answer's probability,
    log p - log(1 - p) with log p the summed token log-probabilities.
    """
    if target == "logit_sum":
        return logits.float().gather(-1, ans.unsqueeze(-1)).squeeze(-1).sum(-1).double()
    lp = _token_logprobs(logits, ans).sum(-1).double()
    if target == "logprob_sum":
        return lp
    if target == "logit_prob":
        return logit_of_prob(lp)
    raise ValueError(f"unknown target {target!r}; known: {list(TARGETS)}")


# ---------------------------------------------------------------- context budget

def model_window(gen: Generator) -> int | None:
    return gen.window


def prepare_sample(gen: Generator, instruction: str, passages: Sequence[Passage],
                   input_text: str, answer: str, *, max_context_tokens: int | None = None,
                   min_passages: int = 2) -> PreparedSample:
    """Tokenise the answer and fit the full context into the budget by the shared rule.

    The budget is ``max_context_tokens`` and the model window, whichever is smaller, for prompt
    plus answer; the passages are fitted by ``prompt.fit_passages`` (the rule synthesis and RAG
    use too: longest passages shortened first, lowest-ranked dropped only if that is not
    enough), and every change is recorded. Since every mask keeps a subset of the passages, a
    full context that fits means every masked prompt fits.
    """
    if not answer.strip():
        raise ValueError("output: empty ground-truth answer, nothing to score")
    ans = gen.answer_ids(answer)
    if not ans:
        raise ValueError("output: answer is empty after tokenisation")
    if len(passages) < min_passages:
        raise ValueError(f"passages: {len(passages)} passage(s); attribution needs at least "
                         f"{min_passages} to compare")
    limits = [x for x in (max_context_tokens, gen.window) if x]
    fit = fit_chat_prompt(gen, instruction, passages, input_text,
                          window=min(limits) if limits else None, room=len(ans),
                          min_passages=min_passages)
    return PreparedSample(instruction, input_text, fit.passages, ans, fit.cut, fit.note, fit)


def masked_prompt_ids(gen: Generator, prep: PreparedSample, mask: np.ndarray) -> list[int]:
    sel = [p for p, keep in zip(prep.passages, mask, strict=True) if keep]
    return gen.prompt_ids(prep.instruction, sel, prep.input_text)


# ---------------------------------------------------------------- reference scorer

@torch.no_grad()
def naive_scores(gen: Generator, prep: PreparedSample, masks: np.ndarray,
                 target: str = "logprob_sum", stats: ScoreStats | None = None) -> np.ndarray:
    """Reference: one forward per mask (duplicates too), full-vocabulary logits everywhere."""
    ans = prep.answer_ids
    ans_t = torch.tensor(ans, device=gen.device)
    out = np.empty(len(masks), dtype=np.float64)
    for i, m in enumerate(masks):
        prompt = masked_prompt_ids(gen, prep, m)
        ids = torch.tensor([prompt + ans], device=gen.device)
        logits = gen.model(ids).logits[0].float()  # (S, V): every position, every token
        out[i] = float(target_from_logits(logits[len(prompt) - 1 : -1], ans_t, target))
        if stats is not None:
            stats.n_tokens += ids.shape[1]
            stats.n_padded_tokens += ids.shape[1]
            stats.n_equiv_tokens += ids.shape[1]
            stats.n_logit_rows += ids.shape[1]
            stats.n_forwards += 1
    if stats is not None:
        stats.n_unique_masks += len(masks)
    return out


# ---------------------------------------------------------------- fast path

def _base_and_head(model: Any) -> tuple[Any, Any]:
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    head = model.get_output_embeddings()
    if base is None or head is None:
        raise ValueError(f"{type(model).__name__}: cannot split into base model and LM head")
    return base, head


def _head_logits(model: Any, head: Any, hidden: torch.Tensor) -> torch.Tensor:
    logits = head(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _lcp(seqs: Sequence[Sequence[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


def _expand_cache(model: Any, prefix_kv: list[tuple[torch.Tensor, torch.Tensor]], batch: int):
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for layer, (k, v) in enumerate(prefix_kv):
        cache.update(k.expand(batch, *k.shape[1:]), v.expand(batch, *v.shape[1:]), layer)
    return cache


def _buckets(lengths: Sequence[int], max_batch_tokens: int,
             max_pad_frac: float = 0.1) -> list[list[int]]:
    """Indices grouped longest-first: batch size x longest row <= max_batch_tokens, and a row
    joins a batch only while padding stays under ``max_pad_frac`` of the batch's tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    real = 0
    for i in order:
        if cur:
            width = lengths[cur[0]]
            total = (len(cur) + 1) * width
            if total > max_batch_tokens or total - (real + lengths[i]) > max_pad_frac * total:
                out.append(cur)
                cur, real = [], 0
        cur.append(i)
        real += lengths[i]
    if cur:
        out.append(cur)
    return out


def _answer_span(seq_len: int, n_ans: int) -> tuple[int, int]:
    """Hidden positions whose next-token logits score the answer (the last ``n_ans`` tokens)."""
    return seq_len - n_ans - 1, seq_len - 1


def resolve_sharing(sharing: str, device: torch.device) -> str:
    """``auto``: the token tree on CPU (one forward per shared edge keeps matmuls large and
    skips about half the passage tokens); the batched shared-prefix path on GPU, whose
    throughput comes from large batches rather than fewer tokens."""
    if sharing not in SHARING:
        raise ValueError(f"unknown kv sharing {sharing!r}; known: {list(SHARING)}")
    if sharing == "auto":
        return "trie" if device.type == "cpu" else "prefix"
    return sharing


@torch.no_grad()
def _rows_batched(model: Any, base: Any, gen: Generator, prompts: list[list[int]],
                  ans: list[int], max_batch_tokens: int, use_prefix: bool,
                  st: ScoreStats) -> list[torch.Tensor]:
    """Answer-position hidden rows: masks batched and bucketed, common prefix cached once."""
    dev = gen.device
    n_ans = len(ans)
    plen = min(len(p) for p in prompts)
    L = _lcp(prompts) if (use_prefix and len(prompts) > 1) else 0
    L = min(L, plen - 1)  # the last prompt token is always forwarded with its suffix
    if L < MIN_SHARED_PREFIX:
        L = 0
    st.prefix_len = L
    prefix_kv = None
    if L:
        out = base(input_ids=torch.tensor([prompts[0][:L]], device=dev), use_cache=True)
        prefix_kv = [(lay.keys, lay.values) for lay in output_cache(out).layers]
        st.n_tokens += L
        st.n_padded_tokens += L
        st.n_forwards += 1
    suffixes = [p[L:] + ans for p in prompts]
    lengths = [len(s) for s in suffixes]
    pad = gen.tokenizer.pad_token_id if gen.tokenizer.pad_token_id is not None else 0
    rows: list[torch.Tensor | None] = [None] * len(prompts)
    for idx in _buckets(lengths, max_batch_tokens):
        B = len(idx)
        S = max(lengths[i] for i in idx)
        ids = torch.full((B, S), pad, dtype=torch.long, device=dev)
        for r, i in enumerate(idx):  # right padding: pads sit after every real token (causal)
            ids[r, : lengths[i]] = torch.tensor(suffixes[i], device=dev)
        kwargs: dict[str, Any] = {}
        if L:
            kwargs.update(cache_kwargs(base, _expand_cache(model, prefix_kv, B)))
            kwargs["position_ids"] = torch.arange(L, L + S, device=dev).expand(B, S)
        hidden = base(input_ids=ids, use_cache=bool(L), **kwargs).last_hidden_state
        for r, i in enumerate(idx):
            lo, hi = _answer_span(lengths[i], n_ans)
            rows[i] = hidden[r, lo:hi]
        st.n_tokens += sum(lengths[i] for i in idx)
        st.n_padded_tokens += B * S
        st.n_forwards += 1
    return [r for r in rows if r is not None]


@torch.no_grad()
def _rows_trie(base: Any, gen: Generator, prompts: list[list[int]], ans: list[int],
               st: ScoreStats, walkers: int) -> list[torch.Tensor]:
    seqs = [p + ans for p in prompts]
    spans = [_answer_span(len(s), len(ans)) for s in seqs]
    rows, n_tok, n_fwd = trie_hidden_rows(base, seqs, spans, gen.device, workers=walkers)
    st.prefix_len = _lcp(seqs) if len(seqs) > 1 else 0
    st.n_tokens += n_tok
    st.n_padded_tokens += n_tok
    st.n_forwards += n_fwd
    return rows


@torch.no_grad()
def score_masks_multi(gen: Generator, prep: PreparedSample, masks: np.ndarray,
                      targets: Sequence[str] = ("logprob_sum",), *,
                      max_batch_tokens: int = 16384, prefix_cache: bool = True,
                      sharing: str = "auto", walkers: int | None = None,
                      stats: ScoreStats | None = None,
                      max_logit_elems: int = 1 << 25) -> dict[str, np.ndarray]:
    """Fast path, every requested target from one set of forwards (same values as
    ``naive_scores`` up to float rounding, far fewer FLOPs).

    ``prefix_cache=False`` turns all KV reuse off (each unique mask forwarded whole, batched);
    otherwise ``sharing`` picks the token tree (``trie``) or the batched common prefix
    (``prefix``); see ``resolve_sharing``. ``walkers``: parallel subtree walks of the tree on
    CPU, one intra-op thread each (default: torch's thread count).
    """
    for t in targets:
        if t not in TARGETS:
            raise ValueError(f"unknown target {t!r}; known: {list(TARGETS)}")
    model = gen.model
    base, head = _base_and_head(model)
    dev = gen.device
    uniq, inverse = unique_rows(masks)
    ans = prep.answer_ids
    n_ans = len(ans)
    prompts = [masked_prompt_ids(gen, prep, m) for m in uniq]
    st = stats if stats is not None else ScoreStats()
    st.n_unique_masks += len(uniq)
    st.n_equiv_tokens += int(sum(len(prompts[j]) + n_ans for j in inverse))
    mode = resolve_sharing(sharing, dev) if prefix_cache else "none"
    if mode == "trie":
        n_walk = walkers if walkers is not None else torch.get_num_threads()
        rows = _rows_trie(base, gen, prompts, ans, st, max(1, n_walk))
    else:
        rows = _rows_batched(model, base, gen, prompts, ans, max_batch_tokens,
                             mode == "prefix", st)
    stacked = torch.stack(rows)  # (U, n_ans, H)
    st.n_logit_rows += len(uniq) * n_ans
    ans_t = torch.tensor(ans, device=dev)
    vocab = head.weight.shape[0]
    chunk = max(1, max_logit_elems // max(1, n_ans * vocab))
    values = {t: np.empty(len(uniq), dtype=np.float64) for t in targets}
    for c in range(0, len(uniq), chunk):
        logits = _head_logits(model, head, stacked[c : c + chunk])
        a = ans_t.expand(logits.shape[0], n_ans)
        for t in targets:
            values[t][c : c + logits.shape[0]] = target_from_logits(logits, a, t).cpu().numpy()
    return {t: v[inverse] for t, v in values.items()}


def score_masks(gen: Generator, prep: PreparedSample, masks: np.ndarray,
                target: str = "logprob_sum", **kwargs: Any) -> np.ndarray:
    """One target; see ``score_masks_multi``."""
    return score_masks_multi(gen, prep, masks, (target,), **kwargs)[target]


def assert_finite(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values)))
        raise ValueError(f"{what}: {bad} non-finite score(s) (inf/nan) from the generator")


def tokens_per_mask(prep: PreparedSample, gen: Generator) -> int:
    """Full-context length (all passages kept) plus answer, for reporting."""
    return len(gen.prompt_ids(prep.instruction, prep.passages, prep.input_text)) + len(
        prep.answer_ids)


__all__ = ["TARGETS", "PreparedSample", "ScoreStats", "assert_finite", "model_window",
           "logit_of_prob", "naive_scores", "prepare_sample", "resolve_sharing", "score_masks", "score_masks_multi",
           "target_from_logits",
           "tokens_per_mask"]
