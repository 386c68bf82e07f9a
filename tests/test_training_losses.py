"""Losses against hand-computed values and against explicit per-pair / per-query definitions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scarlet_ray.training.losses import contrastive_loss, infonce, pairwise_ce, similarity


def test_pairwise_ce_hand_computed_dot():
    q = torch.tensor([[1.0, 0.0]])
    docs = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # pos, neg1, neg2
    # pairs: (2 vs 0) -> log(1 + e^-2); (2 vs 1) -> log(1 + e^-1); mean of the two
    want = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    assert pairwise_ce(q, docs, temperature=1.0, sim="dot").item() == pytest.approx(want, rel=1e-6)
    # temperature 0.5 doubles the margins
    want_t = (math.log1p(math.exp(-4)) + math.log1p(math.exp(-2))) / 2
    assert pairwise_ce(q, docs, temperature=0.5, sim="dot").item() == pytest.approx(want_t, rel=1e-6)


def test_cosine_ignores_norm_dot_does_not():
    q = torch.tensor([[3.0, 4.0]])
    d = torch.tensor([[6.0, 8.0], [4.0, -3.0]])
    assert similarity(q, d, "cos")[0].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert similarity(q, d, "dot")[0].tolist() == pytest.approx([50.0, 0.0])
    # cos, t=1: margin 0 - 1 -> log(1 + e^-1)
    assert pairwise_ce(q, d, 1.0, "cos").item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)


def test_infonce_hand_computed_in_batch():
    # two queries, group size 2: docs = [p0, n0, p1, n1]
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    docs = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # q0 scores (dot): [1, 0, 0, 1] target 0; q1: [0, 0, 2, 1] target 2
    l0 = -1 + math.log(math.e + 1 + 1 + math.e)
    l1 = -2 + math.log(1 + 1 + math.exp(2) + math.e)
    assert infonce(q, docs, 1.0, "dot").item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_bad_shapes_and_names():
    with pytest.raises(ValueError, match="multiple"):
        pairwise_ce(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="group size"):
        infonce(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="unknown loss"):
        contrastive_loss("triplet", torch.zeros(1, 2), torch.zeros(2, 2), 1.0, "cos")
    with pytest.raises(ValueError, match="unknown kind"):
        similarity(torch.zeros(1, 2), torch.zeros(2, 2), "l2")  # type: ignore[arg-type]


shapes = st.tuples(st.integers(1, 4), st.integers(2, 4), st.integers(1, 5),
                   st.sampled_from(["cos", "dot"]), st.floats(0.05, 2.0), st.integers(0, 10_000))


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_pairwise_matches_explicit_pair_ce(args):
    b, g, d, sim, t, seed = args
    gen = torch.Generator().manual_seed(seed)
    q, docs = torch.randn(b, d, generator=gen), torch.randn(b * g, d, generator=gen)
    terms = []
    for i in range(b):
        s = similarity(q[i : i + 1], docs[i * g : (i + 1) * g], sim)[0]
        for j in range(1, g):
            logits = torch.stack([s[0], s[j]]) / t
            terms.append(F.cross_entropy(logits[None], torch.tensor([0])))
    want = torch.stack(terms).mean()
    got = pairwise_ce(q, docs, t, sim)
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_infonce_matches_explicit_and_shards_sum_to_global(args):
    b, g, d, sim, t, seed = args
    gen = torch.Generator().manual_seed(seed)
    q, docs = torch.randn(2 * b, d, generator=gen), torch.randn(2 * b * g, d, generator=gen)
    s = similarity(q, docs, sim) / t
    want = torch.stack([-(s[i, i * g] - torch.logsumexp(s[i], 0)) for i in range(2 * b)]).mean()
    full = infonce(q, docs, t, sim)
    assert full.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    # two shards, each seeing the gathered documents: the mean of shard means is the global mean
    halves = [infonce(q[k * b : (k + 1) * b], docs[k * b * g : (k + 1) * b * g], t, sim,
                      extra_docs=docs, doc_offset=k * b * g) for k in range(2)]
    assert ((halves[0] + halves[1]) / 2).item() == pytest.approx(full.item(), rel=1e-5, abs=1e-6)


def test_loss_falls_under_gradient_descent():
    torch.manual_seed(0)
    q = torch.randn(4, 8, requires_grad=True)
    docs = torch.randn(12, 8, requires_grad=True)
    opt = torch.optim.SGD([q, docs], lr=0.1)
    first = None
    for _ in range(30):
        loss = pairwise_ce(q, docs, 0.1) + infonce(q, docs, 0.1)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


# ------------------------------------------------------------------ soft labels (issue 19)
@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 4), g=st.integers(2, 6), seed=st.integers(0, 10_000),
       sim=st.sampled_from(["cos", "dot"]))
def test_utility_kl_at_zero_label_temperature_is_cross_entropy_of_the_top_passage(b, g, seed,
                                                                                   sim):
    from scarlet_ray.training.losses import utility_kl

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, 8, generator=gen, dtype=torch.float64)
    docs = torch.randn(b * g, 8, generator=gen, dtype=torch.float64)
    u = torch.randn(b, g, generator=gen, dtype=torch.float64)
    top = u.argmax(dim=1)
    s = torch.einsum("bd,bgd->bg", F.normalize(q, dim=-1) if sim == "cos" else q,
                     (F.normalize(docs, dim=-1) if sim == "cos" else docs).view(b, g, 8))
    ce = F.cross_entropy(s / 0.1, top)
    # a label temperature far below the utility gaps: the target is one-hot on the top passage
    gap = (u.sort(dim=1).values[:, -1] - u.sort(dim=1).values[:, -2]).min().item()
    assume(gap >= 1e-3)  # a near-tie has no single top passage
    got = utility_kl(q, docs, u, temperature=0.1, label_temperature=gap / 200, sim=sim)
    assert got.item() == pytest.approx(ce.item(), rel=1e-6, abs=1e-9)
    # and a soft target is never worse than zero, zero only when the retriever matches it
    soft = utility_kl(q, docs, u, temperature=0.1, label_temperature=1.0, sim=sim)
    assert soft.item() >= -1e-12
    match = utility_kl(q, docs, s / 0.1 * 1.0, temperature=0.1, label_temperature=1.0, sim=sim)
    assert match.item() == pytest.approx(0.0, abs=1e-9)


def test_utility_kl_gradient_check_and_no_gradient_to_the_labels():
    from scarlet_ray.training.losses import utility_kl

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    docs = torch.randn(12, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    u = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    for sim in ("cos", "dot"):
        assert torch.autograd.gradcheck(
            lambda a, d, sim=sim: utility_kl(a, d, u, temperature=0.5, label_temperature=0.7,
                                             sim=sim), (q, docs))
    utility_kl(q, docs, u).backward()
    assert u.grad is None  # utilities are targets, not parameters
    with pytest.raises(ValueError, match="utilities"):
        utility_kl(q, docs, u[:, :3])
