"""Tree: construction from paths, validation, derived structure, verify layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spectune.simulator.errors import InputError
from spectune.simulator.tree import Tree

PATHS = [[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0]]


def test_from_paths_structure():
    t = Tree.from_paths([[0, 0, 0], [1, 0], [0], [0, 1], [1], [0, 0]])  # any input order
    assert t.paths() == PATHS  # sorted by (depth, path), as vLLM does
    assert t.parents == (-1, -1, 0, 0, 1, 2)
    assert t.ranks == (0, 1, 0, 1, 0, 0)
    assert t.depths == (1, 1, 2, 2, 2, 3)
    assert (t.num_nodes, t.max_depth) == (6, 3)
    assert t.children(-1) == (0, 1)
    assert t.children(0) == (2, 3)
    assert t.children(5) == ()
    assert t.width_per_depth() == [2, 3, 1]
    assert t.path_nodes(5) == [0, 2, 5]
    assert not t.is_chain


def test_chain():
    t = Tree.chain(4)
    assert t.paths() == [[0], [0, 0], [0, 0, 0], [0, 0, 0, 0]]
    assert t.is_chain and t.max_depth == 4 and t.num_nodes == 4
    assert Tree.chain(0).num_nodes == 0 and Tree.chain(0).max_depth == 0
    assert Tree.from_paths([]) == Tree.chain(0)


def test_equality_and_hash_ignore_derived_fields():
    a = Tree.from_paths(PATHS)
    b = Tree(a.parents, a.ranks)
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1


def test_direct_construction_topological_not_bfs():
    # Depth-first order is valid too: parents come first, siblings in rank order.
    t = Tree((-1, 0, -1), (0, 0, 1))
    assert t.paths() == [[0], [0, 0], [1]]


@pytest.mark.parametrize(
    ("paths", "msg"),
    [
        ([[0], [2]], "no sibling [1]"),
        ([[1]], "no sibling [0]"),
        ([[0, 0]], "no parent path [0]"),
        ([[0], [0]], "more than once"),
        ([[]], "must not be empty"),
        ([[-1]], ">= 0"),
        ([["a"]], "integer ranks"),
    ],
)
def test_from_paths_rejects(paths, msg):
    with pytest.raises(InputError, match=r"tree\.paths") as e:
        Tree.from_paths(paths)
    assert msg in str(e.value)


@pytest.mark.parametrize(
    ("parents", "ranks", "field"),
    [
        ((-1, -1), (0, 0), "tree.ranks"),  # two rank-0 siblings
        ((-1,), (1,), "tree.ranks"),  # gap
        ((0,), (0,), "tree.parents"),  # self-parent
        ((-1, 2, 0), (0, 0, 0), "tree.parents"),  # parent later than child
        ((-2,), (0,), "tree.parents"),
        ((-1, 0), (0,), "tree"),  # lengths differ
    ],
)
def test_direct_construction_rejects(parents, ranks, field):
    with pytest.raises(InputError, match=field):
        Tree(parents, ranks)


def test_chain_negative():
    with pytest.raises(InputError, match="k"):
        Tree.chain(-1)


def test_attention_mask_and_positions():
    t = Tree.from_paths([[0], [1], [0, 0]])
    expected = np.array(
        [
            [1, 0, 0, 0],  # root
            [1, 1, 0, 0],  # [0]
            [1, 0, 1, 0],  # [1] does not see its sibling
            [1, 1, 0, 1],  # [0, 0] sees root, [0], itself
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(t.attention_mask(), expected)
    np.testing.assert_array_equal(t.positions(), [0, 1, 1, 2])
    np.testing.assert_array_equal(Tree.chain(0).attention_mask(), [[True]])


def test_chain_mask_is_causal():
    m = Tree.chain(5).attention_mask()
    np.testing.assert_array_equal(m, np.tril(np.ones((6, 6), dtype=bool)))


@st.composite
def trees(draw, max_nodes: int = 12) -> Tree:
    """Random valid trees: each new node picks a parent; its rank is the next free one."""
    n = draw(st.integers(0, max_nodes))
    parents, ranks, counts = [], [], {}
    for i in range(n):
        p = draw(st.integers(-1, i - 1))
        parents.append(p)
        ranks.append(counts.get(p, 0))
        counts[p] = counts.get(p, 0) + 1
    return Tree(tuple(parents), tuple(ranks))


@given(trees())
def test_paths_round_trip_and_mask_matches_ancestry(t: Tree):
    back = Tree.from_paths(t.paths())
    assert sorted(map(tuple, back.paths())) == sorted(map(tuple, t.paths()))
    assert back.depths == tuple(sorted(t.depths))
    m = t.attention_mask()
    for i in range(t.num_nodes):
        ancestors = {0} | {j + 1 for j in t.path_nodes(i)}
        assert set(np.nonzero(m[i + 1])[0]) == ancestors
        assert t.positions()[i + 1] == len(t.path_nodes(i)) == t.depths[i]
