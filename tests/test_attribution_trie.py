"""The token radix tree: every sequence is spelled out by its path, shared runs appear once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scarlet_ray.attribution.trie import Node, build_tree, tree_tokens


def paths(node: Node, prefix_len: int = 0) -> dict[int, tuple[int, int]]:
    """member -> deepest edge end reached along its path."""
    out: dict[int, tuple[int, int]] = {}
    for m in node.members:
        out[m] = (node.start, node.end)
    for c in node.children:
        assert c.start == node.end  # children continue exactly where the parent stops
        assert set(c.members) <= set(node.members)
        out.update(paths(c))
    return out


seqs_strategy = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), min_size=1,
                         max_size=10).map(lambda xs: [list(x) for x in {tuple(x) for x in xs}])


@settings(max_examples=200, deadline=None)
@given(seqs_strategy)
def test_tree_spells_every_sequence_and_shares_prefixes(seqs):
    root = build_tree(seqs)
    assert root.start == 0 and sorted(root.members) == list(range(len(seqs)))
    ends = paths(root)
    for i, s in enumerate(seqs):
        assert ends[i][1] == len(s)  # each sequence's path ends at its own length

    def check(node: Node) -> None:  # an edge's tokens are identical across its members
        for m in node.members:
            assert seqs[m][node.start:node.end] == seqs[node.members[0]][node.start:node.end]
        firsts = [seqs[c.members[0]][c.start] for c in node.children]
        assert len(firsts) == len(set(firsts))  # siblings start with different tokens
        for c in node.children:
            check(c)

    check(root)
    # never more tokens than forwarding each sequence whole, never fewer than the longest
    assert max(map(len, seqs)) <= tree_tokens(root) <= sum(map(len, seqs))


def test_prefix_sequence_ends_inside_tree():
    root = build_tree([[1, 2, 3], [1, 2], [1, 2, 4, 5]])
    assert (root.start, root.end) == (0, 2)
    assert tree_tokens(root) == 2 + 1 + 2
