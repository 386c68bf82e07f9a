"""Prefix-tree (radix tree) KV-cache sharing over a sample's masked prompts.

Masked prompts keep the passage order, so two masks that agree on passages ``1..i`` produce the
same tokens up to the end of passage ``i``. Laid out as a radix tree over the *token ids* (not
the masks: a BPE merge across a passage boundary is then handled exactly), every shared run of
tokens is forwarded once; a depth-first walk extends one KV cache down an edge and crops it back
on the way up. With 64 random masks over 10 passages, about half of the passage tokens the naive
loop forwards are shared with an earlier mask.

Each edge is one forward of a few hundred rows, which keeps a CPU's matmuls efficient; on a GPU
many small sequential forwards leave it idle, which is why the batched path stays the GPU default.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scarlet_ray.cancel import check_cancelled


@dataclass
class Node:
    """Edge ``[start, end)`` of the token tree; ``members`` are the sequences below it."""

    start: int
    end: int
    members: list[int]
    children: list[Node] = field(default_factory=list)


def build_tree(seqs: Sequence[Sequence[int]]) -> Node:
    """Radix tree of token sequences; the root's edge is the prefix common to all of them."""
    if not seqs:
        raise ValueError("build_tree: no sequences")
    n = len(seqs)
    width = max(len(s) for s in seqs)
    arr = np.full((n, width + 1), -1, dtype=np.int64)  # -1 sentinel marks each sequence's end
    for i, s in enumerate(seqs):
        arr[i, : len(s)] = s
    lens = np.array([len(s) for s in seqs])

    def grow(members: list[int], start: int) -> Node:
        rows = arr[members]
        end_cap = int(lens[members].max())
        if len(members) == 1:
            return Node(start, end_cap, members)
        diff = (rows[:, start:end_cap + 1] != rows[:1, start:end_cap + 1]).any(axis=0)
        end = start + int(np.argmax(diff)) if diff.any() else end_cap
        node = Node(start, end, members)
        groups: dict[int, list[int]] = {}
        for m in members:
            groups.setdefault(int(arr[m, end]), []).append(m)
        for tok, grp in groups.items():
            if tok != -1:  # -1: sequences that end exactly here (a prefix of another)
                node.children.append(grow(grp, end))
        return node

    return grow(list(range(n)), 0)


def tree_tokens(node: Node) -> int:
    """Tokens a depth-first walk forwards (each edge once)."""
    return (node.end - node.start) + sum(tree_tokens(c) for c in node.children)


def _split(root: Node, workers: int) -> list[list[Node]]:
    """Subtrees to walk in parallel: expand the largest subtree until there are enough to
    balance, then deal them out largest-first to the least-loaded worker."""
    frontier = list(root.children)
    while frontier and len(frontier) < 2 * workers:
        big = max(frontier, key=tree_tokens)
        if not big.children:
            break
        frontier.remove(big)
        frontier.extend(big.children)  # its own edge then runs once per child (small)
    loads = [0] * workers
    groups: list[list[Node]] = [[] for _ in range(workers)]
    for node in sorted(frontier, key=tree_tokens, reverse=True):
        w = loads.index(min(loads))
        groups[w].append(node)
        loads[w] += tree_tokens(node)
    return [g for g in groups if g]


def _path_to(root: Node, target: Node) -> list[Node]:
    """The nodes strictly between root and target, top-down."""
    def walk(node: Node, acc: list[Node]) -> list[Node] | None:
        for c in node.children:
            if c is target:
                return acc
            found = walk(c, [*acc, c])
            if found is not None:
                return found
        return None

    got = walk(root, [])
    if got is None:
        raise RuntimeError("trie: subtree not under root")
    return got


@torch.no_grad()
def trie_hidden_rows(base: Any, seqs: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]],
                     device: torch.device, *, max_edge_tokens: int = 4096, workers: int = 1
                     ) -> tuple[list[torch.Tensor], int, int]:
    """Final hidden states of ``seqs[i]`` at positions ``spans[i] = [lo, hi)``.

    Returns (rows per sequence, tokens forwarded, forward calls). ``base`` is the decoder
    without its LM head; positions are absolute, so every token sees exactly the context it
    would see in its own full-sequence forward.

    ``workers > 1`` (CPU): after the root edge, subtrees are walked by that many threads with
    one intra-op thread each. The tree's forwards are a few hundred rows wide, too narrow for
    two cores to split one matmul well; two walks side by side use them better (ops release
    the GIL). Each walk has its own cache; ancestors of a split-off subtree are re-run in it.
    """
    from transformers import DynamicCache

    from scarlet_ray.models.kvcache import cache_kwargs

    root = build_tree(seqs)
    parts: list[dict[int, torch.Tensor]] = [{} for _ in seqs]
    counters = [0, 0]
    lock = threading.Lock()

    def forward_edge(node: Node, cache: Any) -> None:
        check_cancelled()  # a signal stops the walkers at the next edge
        a, b = node.start, node.end
        first = seqs[node.members[0]]
        for s in range(a, b, max_edge_tokens):  # a long edge goes in chunks
            e = min(b, s + max_edge_tokens)
            ids = torch.tensor([first[s:e]], device=device)
            pos = torch.arange(s, e, device=device)[None, :]
            hidden = base(input_ids=ids, position_ids=pos, use_cache=True,
                          **cache_kwargs(base, cache)).last_hidden_state[0]
            with lock:
                counters[0] += e - s
                counters[1] += 1
            for m in node.members:
                lo, hi = spans[m]
                x, y = max(lo, s), min(hi, e)
                if x < y:
                    parts[m][x] = hidden[x - s : y - s]

    def visit(node: Node, cache: Any) -> None:
        forward_edge(node, cache)
        for child in node.children:
            visit(child, cache)
            extra = cache.get_seq_length() - node.end
            if extra:
                cache.crop(-extra)  # transformers 5: crop takes the number of tokens to drop

    groups = _split(root, workers) if workers > 1 and device.type == "cpu" else []
    if len(groups) < 2:
        visit(root, DynamicCache(config=base.config))
    else:
        root_cache = DynamicCache(config=base.config)
        forward_edge(root, root_cache)
        root_kv = [(lay.keys, lay.values) for lay in root_cache.layers]

        def walk(group: list[Node]) -> None:
            with torch.inference_mode():  # grad mode is per thread: off here too, or every
                _walk(group)  # activation is kept for an autograd graph (memory, time)

        def _walk(group: list[Node]) -> None:
            for sub in group:
                cache = DynamicCache(config=base.config)
                for layer, (k, v) in enumerate(root_kv):
                    cache.update(k, v, layer)  # update concatenates: the root stays intact
                for anc in _path_to(root, sub):  # re-run per split subtree; any rows it
                    forward_edge(anc, cache)  # records are the same values, keyed by position
                visit(sub, cache)

        threads_before = torch.get_num_threads()
        per = max(1, threads_before // len(groups))
        torch.set_num_threads(per)
        try:
            with ThreadPoolExecutor(len(groups)) as pool:
                list(pool.map(walk, groups))
        finally:
            torch.set_num_threads(threads_before)

    out: list[torch.Tensor] = []
    for i, (lo, hi) in enumerate(spans):
        got = [parts[i][k] for k in sorted(parts[i])]
        rows = torch.cat(got) if got else torch.empty(0)
        if rows.shape[0] != hi - lo:
            raise RuntimeError(f"trie: sequence {i} got {rows.shape[0]} rows, wanted {hi - lo}")
        out.append(rows)
    return out, counters[0], counters[1]


__all__ = ["Node", "build_tree", "tree_tokens", "trie_hidden_rows"]
