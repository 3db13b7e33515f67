"""Closed forms vs brute force and Monte Carlo; invariants; optimal trees; costs; bad input."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectune.simulator import analytic as an
from spectune.simulator.errors import InputError
from spectune.simulator.tree import Tree

prob = st.floats(0.0, 1.0, allow_nan=False)


def rng(purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([2024, purpose]))


# ------------------------------------------------------------------ chain


def test_chain_known_values():
    assert an.expected_tokens_chain([0.8], 4) == pytest.approx(1 + 0.8 + 0.64 + 0.512 + 0.4096)
    assert an.expected_tokens_chain([0.9, 0.5], 3) == pytest.approx(1 + 0.9 + 0.45 + 0.225)
    assert an.expected_tokens_chain([0.3, 0.2], 0) == 1.0
    assert isinstance(an.expected_tokens_chain([0.5], 2), float)


def test_chain_vectorised_over_batch_and_k():
    a = np.array([[0.8, 0.7, 0.6], [0.5, 0.5, 0.5]])  # [batch=2, K=3]
    ks = np.array([0, 1, 3, 5])
    out = an.expected_tokens_chain(a, ks)
    assert out.shape == (2, 4)
    for b in range(2):
        for j, k in enumerate(ks):
            assert out[b, j] == pytest.approx(an.expected_tokens_chain(a[b], int(k)))


def brute_force_chain(a: list[float], k: int) -> float:
    """E over all 2^k accept/reject outcomes, each weighted by its probability."""
    a = (a + [a[-1]] * k)[:k]
    total = 0.0
    for outcome in itertools.product([0, 1], repeat=k):
        p = np.prod([ai if o else 1 - ai for ai, o in zip(a, outcome, strict=True)])
        n = next((i for i, o in enumerate(outcome) if not o), k)  # accepted prefix
        total += p * (n + 1)
    return total


@pytest.mark.parametrize("a", [[0.8], [0.9, 0.6, 0.3], [0.2, 0.99, 0.5, 0.7], [1.0, 0.0]])
@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_chain_equals_brute_force(a, k):
    assert an.expected_tokens_chain(a, k) == pytest.approx(brute_force_chain(a, k), abs=1e-12)


def test_chain_monte_carlo_mean_and_distribution():
    a, k, n = np.array([0.85, 0.7, 0.6, 0.5, 0.45]), 5, 200_000
    accept = rng(1).random((n, k)) < a  # [n, k]
    accepted = np.where(accept.all(1), k, np.argmin(accept, axis=1))  # first reject
    dist = an.accepted_dist_chain(a, k)
    assert dist.sum() == pytest.approx(1.0)
    emp = np.bincount(accepted, minlength=k + 1) / n
    np.testing.assert_allclose(emp, dist, atol=4 * np.sqrt(0.25 / n))
    se = accepted.std() / np.sqrt(n)
    assert abs(accepted.mean() + 1 - an.expected_tokens_chain(a, k)) < 4 * se


def test_chain_distribution_mean_matches_expected_tokens():
    a = [[0.9, 0.8, 0.7], [0.3, 0.3, 0.3]]
    dist = an.accepted_dist_chain(a, 6)  # [2, 7]
    np.testing.assert_allclose(dist.sum(-1), 1.0)
    np.testing.assert_allclose(dist @ np.arange(7) + 1, an.expected_tokens_chain(a, 6))


@given(prob, st.integers(0, 30))
def test_iid_formula_equals_per_position(a, k):
    assert an.expected_tokens_iid(a, k) == pytest.approx(
        an.expected_tokens_chain([a], k), rel=1e-9, abs=1e-12
    )


def test_iid_edges_and_broadcast():
    assert an.expected_tokens_iid(1.0, 7) == 8.0
    assert an.expected_tokens_iid(0.0, 7) == 1.0
    assert an.expected_tokens_iid(0.0, 0) == 1.0
    assert an.expected_tokens_iid(1 - 1e-12, 7) == pytest.approx(8.0, rel=1e-9)
    out = an.expected_tokens_iid(np.array([[0.5], [0.8]]), np.array([1, 2, 3]))
    assert out.shape == (2, 3)
    assert out[1, 2] == pytest.approx(1 + 0.8 + 0.64 + 0.512)


@given(st.lists(prob, min_size=1, max_size=8), st.integers(0, 12))
def test_chain_invariants(a, k):
    e = an.expected_tokens_chain(a, k)
    assert 1.0 <= e <= k + 1 + 1e-12
    assert an.expected_tokens_chain([1.0] * len(a), k) == k + 1
    # Monotone in each a_i.
    for i in range(len(a)):
        up = list(a)
        up[i] = min(1.0, a[i] + 0.1)
        assert an.expected_tokens_chain(up, k) >= e - 1e-12


# ------------------------------------------------------------------ tree


def test_tree_node_probs_by_hand():
    t = Tree.from_paths([[0], [1], [0, 0], [0, 1], [1, 0]])
    p = [0.6, 0.5]  # q = [0.6, 0.5 * 0.4 = 0.2]
    np.testing.assert_allclose(an.node_accept_probs(t, p), [0.6, 0.2, 0.36, 0.12, 0.12], rtol=1e-12)
    assert an.expected_tokens_tree(t, p) == pytest.approx(1 + 0.6 + 0.2 + 0.36 + 0.12 + 0.12)


def test_tree_chain_equals_chain_formula():
    per_depth = [[0.9], [0.7], [0.5]]  # per-depth ranked rows of width 1
    for k in range(6):
        e_tree = an.expected_tokens_tree(Tree.chain(k), per_depth)
        assert e_tree == pytest.approx(an.expected_tokens_chain([0.9, 0.7, 0.5], k))


def test_rank_beyond_width_has_zero_probability():
    t = Tree.from_paths([[0], [1], [2]])
    np.testing.assert_allclose(an.node_accept_probs(t, [0.5, 0.5]), [0.5, 0.25, 0.0])


def monte_carlo_tree(tree: Tree, ranked: np.ndarray, n: int, gen) -> np.ndarray:
    """Accepted depth of n simulated steps: at each accepted node the drafter's candidates
    are tried in rank order; the first accepted rank continues if the tree has it."""
    q_rows = np.atleast_2d(ranked)
    depth, width = max(tree.max_depth, 1), q_rows.shape[1]
    p = q_rows[np.minimum(np.arange(depth), len(q_rows) - 1)]  # [D, W]
    hit = gen.random((n, depth, width)) < p  # [n, D, W]
    first = np.where(hit.any(-1), np.argmax(hit, -1), width)  # accepted rank, W = none
    child = np.full((tree.num_nodes + 1, width + 1), -1)  # [slot, rank] -> child slot
    for i, (par, r) in enumerate(zip(tree.parents, tree.ranks, strict=True)):
        if r < width:
            child[par + 1, r] = i + 1
    cur = np.zeros(n, dtype=np.int64)
    accepted = np.zeros(n, dtype=np.int64)
    for t in range(depth):
        nxt = np.where(cur >= 0, child[np.maximum(cur, 0), first[:, t]], -1)
        accepted += nxt >= 0
        cur = nxt
    return accepted


@pytest.mark.parametrize(
    "ranked",
    [np.array([0.7, 0.4, 0.3]), np.array([0.2, 0.9, 0.5]), np.array([[0.8, 0.5], [0.4, 0.6]])],
)
def test_tree_monte_carlo(ranked):
    t = Tree.from_paths([[0], [1], [2], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 0, 1]])
    n = 100_000
    acc = monte_carlo_tree(t, ranked, n, rng(2))
    dist = an.accepted_dist_tree(t, ranked)
    np.testing.assert_allclose(np.bincount(acc, minlength=4) / n, dist, atol=4 * np.sqrt(0.25 / n))
    assert abs(acc.mean() + 1 - an.expected_tokens_tree(t, ranked)) < 4 * acc.std() / np.sqrt(n)


# ------------------------------------------------------------------ optimal tree


def forests(n: int, depth: int, width: int, slots: int | None = None):
    """Every ordered forest of exactly n nodes, depth <= depth, <= width children per node,
    as path lists (ranks from the forest's root); ``slots`` = sibling ranks still free."""
    slots = width if slots is None else slots
    if n == 0:
        yield []
        return
    if depth == 0 or slots == 0:
        return
    for s in range(1, n + 1):  # size of the first sibling's subtree
        for sub in forests(s - 1, depth - 1, width):
            for rest in forests(n - s, depth, width, slots - 1):
                yield [[0]] + [[0, *p] for p in sub] + [[p[0] + 1, *p[1:]] for p in rest]


def test_forest_enumeration_counts():
    # Ordered trees with n+1 nodes (unbounded depth/width) are counted by Catalan numbers.
    assert [sum(1 for _ in forests(n, 9, 9)) for n in range(6)] == [1, 1, 2, 5, 14, 42]
    # At most 2 children per node: Motzkin numbers.
    assert [sum(1 for _ in forests(n, 9, 2)) for n in range(6)] == [1, 1, 2, 4, 9, 21]
    all_4 = [sorted(map(tuple, f)) for f in forests(4, 9, 2)]
    assert len(all_4) == len({tuple(f) for f in all_4})  # no duplicates
    assert sorted([(0,), (1,), (1, 0), (1, 1)]) in all_4  # a wide subtree under rank 1
    assert all(max(p[-1] for p in f) <= 1 for f in all_4)


@pytest.mark.parametrize(
    "ranked",
    [
        [0.8, 0.5, 0.3],
        [0.1, 0.9],  # q not monotone: a low-rank node must be paid for to reach rank 1
        [0.5, 0.0, 0.9],
        [[0.9, 0.3], [0.4, 0.6], [0.2, 0.7]],  # per depth
        [0.95],
    ],
)
def test_optimal_tree_beats_every_tree(ranked):
    width = np.atleast_2d(ranked).shape[1]
    for budget in range(0, 7):
        for depth in range(0, 5):
            opt = an.optimal_tree(ranked, budget, depth)
            assert opt.num_nodes <= budget and opt.max_depth <= depth
            e_opt = an.expected_tokens_tree(opt, ranked)
            best = max(
                an.expected_tokens_tree(Tree.from_paths(paths), ranked)
                for n in range(budget + 1)
                for paths in forests(n, depth, width + 1)
            )
            assert e_opt == pytest.approx(best, abs=1e-12), (budget, depth)
            values = an.optimal_expected_tokens(ranked, budget, depth)
            assert values[-1] == pytest.approx(e_opt, abs=1e-12)


def test_optimal_tree_is_chain_when_only_top_candidate_accepts():
    for budget, depth in [(5, 8), (8, 5), (1, 1), (16, 16)]:
        t = an.optimal_tree([0.7, 0.0, 0.0], budget, depth)
        assert t == Tree.chain(min(budget, depth))


def test_optimal_tree_known_shape():
    # q = [0.8, 0.1]: the best 3-node tree of depth <= 2 is [0], [0,0], [1] (0.8+0.64+0.1)
    # not [0], [0,0], [0,1] (0.8 + 0.64 + 0.08).
    t = an.optimal_tree([0.8, 0.5], 3, 2)
    assert t.paths() == [[0], [1], [0, 0]]


@given(st.lists(prob, min_size=1, max_size=4), st.integers(0, 12), st.integers(0, 6))
@settings(max_examples=40, deadline=None)
def test_optimal_values_monotone(ranked, budget, depth):
    v = an.optimal_expected_tokens(ranked, budget, depth)
    assert v[0] == 1.0
    assert np.all(np.diff(v) >= -1e-12)  # more budget never hurts
    assert v[-1] <= 1 + min(budget, depth) + 1e-12
    deeper = an.optimal_expected_tokens(ranked, budget, depth + 1)
    assert np.all(deeper >= v - 1e-12)


def test_optimal_tree_fast_enough():
    # Guard only (the machine is shared); measured ~1 ms for this size.
    ranked = np.linspace(0.8, 0.1, 8)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        an.optimal_tree(ranked, 64, 8)
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.25


# ------------------------------------------------------------------ costs


def test_speedup_forms():
    e = an.expected_tokens_iid(0.8, 4)
    assert an.speedup(e, 4 * 0.05 + 1) == pytest.approx(e / 1.2)
    assert an.speedup(e, draft_cost=4 * 2.0, verify_cost=40.0, base_cost=40.0) == pytest.approx(
        e / 1.2
    )
    np.testing.assert_allclose(an.speedup([2.0, 3.0], [1.0, 1.5]), [2.0, 2.0])
    with pytest.raises(InputError):
        an.speedup(2.0, 0.0)
    with pytest.raises(InputError):
        an.speedup(2.0)


def test_best_k_matches_scan():
    a = [0.9, 0.85, 0.8, 0.75, 0.7]
    k, s = an.best_k(a, 0.05, k_max=16)
    e = [an.expected_tokens_chain(a, j) / (j * 0.05 + 1) for j in range(17)]
    assert k == int(np.argmax(e)) and s == pytest.approx(max(e))


def test_best_k_edges():
    assert an.best_k([0.5], 2.0) == (0, 1.0)  # drafting costs more than it saves
    assert an.best_k([1.0], 0.0, k_max=9)[0] == 9
    ks, _ = an.best_k([[0.9], [0.1]], 0.1)
    assert ks.shape == (2,) and ks[0] > ks[1] == 0


def test_best_k_shrinks_as_verify_cost_grows():
    a = [0.85]
    ks = [
        an.best_k(a, 0.02, verify_cost=lambda n, s=slope: 1 + s * n)[0]
        for slope in (0.0, 0.02, 0.05, 0.1, 0.3, 1.0)
    ]
    assert ks == sorted(ks, reverse=True) and ks[0] > ks[-1]
    # Array form equals the callable form.
    v = 1 + 0.05 * np.arange(17)
    assert an.best_k(a, 0.02, verify_cost=v) == an.best_k(a, 0.02, verify_cost=lambda n: v[n])


def test_tree_step_cost():
    t = Tree.from_paths([[0], [1], [0, 0]])
    assert an.tree_step_cost(t, 0.1) == pytest.approx(2 * 0.1 + 1)
    assert an.tree_step_cost(t, 0.1, lambda n: 1 + 0.5 * n) == pytest.approx(0.2 + 2.5)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("bad", [[1.2], [-0.1], [float("nan")], ["x"], [0.5, 2]])
def test_bad_acceptance(bad):
    with pytest.raises(InputError, match="acceptance"):
        an.expected_tokens_chain(bad, 3)


@pytest.mark.parametrize("bad_k", [-1, 1.5, "a"])
def test_bad_k(bad_k):
    with pytest.raises(InputError, match="k"):
        an.expected_tokens_chain([0.5], bad_k)


def test_bad_cost_and_ranked_and_budget():
    with pytest.raises(InputError, match="cost_ratio"):
        an.best_k([0.5], -0.1)
    with pytest.raises(InputError, match="ranked"):
        an.optimal_tree([0.5, 1.5], 4, 2)
    with pytest.raises(InputError, match="ranked"):
        an.optimal_tree([], 4, 2)
    with pytest.raises(InputError, match=r"tree\.budget"):
        an.optimal_tree([0.5], -1, 2)
    with pytest.raises(InputError, match="verify_cost"):
        an.best_k([0.5], 0.1, k_max=8, verify_cost=[1.0, 1.1])
    with pytest.raises(InputError, match="acceptance"):
        an.expected_tokens_chain([], 2)
