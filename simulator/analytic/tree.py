"""Trees under the ranked (positional) acceptance model: node reach, expected tokens, the
accepted-depth distribution and the optimal tree for a node budget (Sequoia-style DP)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..tree import Tree
from .checks import nonneg_ints, probs


def sibling_accept_probs(ranked: Any, depth: int = 1) -> np.ndarray:
    """q[d, r] = P(rank-r child at depth d+1 accepted | parent accepted) = p_r Π_{i<r}(1 − p_i).

    Args:
        ranked: p [W] (all depths) or [D', W] (per depth, extended with its last row).
        depth: number of depth rows to return.

    Returns:
        q [depth, W]; each row sums to <= 1.
    """
    p = probs(ranked, "ranked")
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] == 0 or p.shape[0] == 0:
        raise InputError(f"must be [width] or [depth, width], got shape {p.shape}", field="ranked")
    rows = np.arange(depth)
    p = p[np.minimum(rows, p.shape[0] - 1)]  # [depth, W]
    reject_before = np.cumprod(np.concatenate([np.ones((depth, 1)), 1 - p[:, :-1]], 1), 1)
    return p * reject_before


def node_accept_probs(tree: Tree, ranked: Any) -> np.ndarray:
    """P(the path from the root to each node is accepted), under the ranked model.

    Args:
        tree: the draft tree.
        ranked: p [W] or [D', W] (see module docstring).

    Returns:
        [num_nodes] in node order.
    """
    q = sibling_accept_probs(ranked, max(tree.max_depth, 1))  # [D, W]
    q = np.pad(q, ((0, 0), (0, max(0, max(tree.ranks, default=0) + 1 - q.shape[1]))))
    depths = np.asarray(tree.depths, dtype=np.int64)
    ranks = np.asarray(tree.ranks, dtype=np.int64)
    parents = np.asarray(tree.parents, dtype=np.int64)
    out = np.ones(tree.num_nodes + 1)  # index 0 = root, node i at i + 1
    edge = q[depths - 1, ranks] if tree.num_nodes else np.zeros(0)  # [nodes]
    # Level by level: a whole depth only needs its parents' (shallower) values.
    for d in range(1, tree.max_depth + 1):
        idx = np.nonzero(depths == d)[0]
        out[idx + 1] = out[parents[idx] + 1] * edge[idx]
    return out[1:]


def expected_tokens_tree(tree: Tree, ranked: Any) -> float:
    """Expected tokens per step of a tree: 1 + Σ_nodes P(path accepted) (bonus included)."""
    return float(1.0 + node_accept_probs(tree, ranked).sum())


def accepted_dist_tree(tree: Tree, ranked: Any) -> np.ndarray:
    """Distribution of the accepted depth n = 0..max_depth of one tree step.

    Nodes at one depth are mutually exclusive, so P(n >= d) = Σ_{nodes at depth d} P(path).

    Returns:
        P(n accepted) [max_depth + 1]; sums to 1.
    """
    probs = node_accept_probs(tree, ranked)
    tail = np.ones(tree.max_depth + 2)
    tail[-1] = 0.0
    tail[1:-1] = np.bincount(np.asarray(tree.depths, dtype=np.int64) - 1, probs, tree.max_depth)
    return tail[:-1] - tail[1:]


# ------------------------------------------------------------------ optimal tree


def _tree_dp(ranked: Any, budget: int, max_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact DP over trees with <= budget nodes and depth <= max_depth.

    F_t[n] = best Σ P(path | node accepted) over subtrees of n nodes hanging off a node at
    depth t; G_{t,r}[n] = best over the children of rank >= r, where taking rank r (with
    a subtree of s nodes) is allowed only if rank r-1 was taken (contiguous ranks), or
    stopping (value 0):  G_{t,r}[n] = max(0, max_{1≤s≤n} q_r (1 + F_{t+1}[s-1]) +
    G_{t,r+1}[n-s]),  F_t = G_{t,0},  F_D = 0. Exact for any q (not only decreasing).

    Time O(D·W·N²) as D·W vectorised [N+1, N+1] max-plus products; memory O(D·W·N).

    Returns:
        (F_0 [budget + 1], choice [D, W, budget + 1]: subtree size s taken for rank r
        given n nodes left, 0 = stop).
    """
    n_max, depth = budget, max_depth
    q = sibling_accept_probs(ranked, max(depth, 1))  # [D, W]
    width = q.shape[1]
    choice = np.zeros((depth, width, n_max + 1), dtype=np.int64)
    n_idx = np.arange(n_max + 1)
    rest = n_idx[:, None] - n_idx[None, :]  # nodes left after taking s  [n, s]
    valid = (n_idx[None, :] >= 1) & (rest >= 0)
    rest = np.clip(rest, 0, None)
    f_next = np.zeros(n_max + 1)  # F_{t+1}
    for t in range(depth - 1, -1, -1):
        g = np.zeros(n_max + 1)  # G_{t,W} = 0: no ranks left
        for r in range(width - 1, -1, -1):
            take = np.empty(n_max + 1)  # value of a rank-r child with a subtree of s nodes
            take[0] = -np.inf
            take[1:] = q[t, r] * (1.0 + f_next[:-1])
            total = np.where(valid, take[None, :] + g[rest], -np.inf)  # [n, s]
            total[:, 0] = 0.0  # stop; first on ties, so zero-value nodes are left out
            best = np.argmax(total, axis=1)
            choice[t, r] = best
            g = total[n_idx, best]
        f_next = g
    return f_next, choice


def optimal_expected_tokens(ranked: Any, budget: int, max_depth: int) -> np.ndarray:
    """Best expected tokens per step for every node budget 0..budget (one DP run).

    Returns:
        [budget + 1]; entry n = E of the optimal tree with <= n nodes (1 at n = 0).
    """
    budget, max_depth = _check_budget(budget, max_depth)
    f0, _ = _tree_dp(ranked, budget, max_depth)
    return 1.0 + f0


def _check_budget(budget: Any, max_depth: Any) -> tuple[int, int]:
    budget = int(nonneg_ints(budget, "tree.budget"))
    max_depth = int(nonneg_ints(max_depth, "tree.depth"))
    return budget, min(max_depth, budget)  # deeper than the budget is unreachable


def optimal_tree(ranked: Any, budget: int, max_depth: int) -> Tree:
    """The tree with <= budget nodes and depth <= max_depth maximising expected tokens.

    Sequoia-style dynamic programming (see :func:`_tree_dp`), exact under the ranked
    model for any p (the q_r need not decrease). Nodes that add nothing (q = 0) are left
    out, so ``ranked = [a, 0, ...]`` gives the chain of min(budget, max_depth). Ties go to
    the smaller subtree. Time O(max_depth · width · budget²).

    Args:
        ranked: p [W] or [D', W].
        budget: maximum number of drafted nodes (verify tokens = nodes + 1).
        max_depth: maximum depth (= draft passes for a level-by-level drafter).

    Returns:
        The optimal :class:`Tree`.
    """
    budget, max_depth = _check_budget(budget, max_depth)
    _, choice = _tree_dp(ranked, budget, max_depth)
    width = choice.shape[1]
    paths: list[list[int]] = []

    def build(t: int, n: int, prefix: list[int]) -> None:
        for r in range(width):
            s = int(choice[t, r, n]) if n > 0 else 0
            if s == 0:
                return
            paths.append([*prefix, r])
            build(t + 1, s - 1, [*prefix, r])
            n -= s

    if max_depth > 0:
        build(0, budget, [])
    return Tree.from_paths(paths)
