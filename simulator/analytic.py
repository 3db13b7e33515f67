"""Closed forms of speculative decoding: tokens per step, optimal trees, speedup, best k.

Pure numpy functions; no state. Conventions (see DESIGN.md §2):

- *Tokens per step* always include the bonus token (the target's own token after the
  accepted run), so plain decoding gives 1 and a fully accepted chain of k gives k + 1.
  This equals vLLM's "mean accepted length".
- Chain: per-position acceptance a_i = P(draft i accepted | drafts 1..i-1 accepted);
  E[tokens/step] = 1 + Σ_{i≤k} Π_{j≤i} a_j (Leviathan et al. 2023; with iid a this is
  (1 − a^(k+1)) / (1 − a)). A per-position vector shorter than k is extended with its
  last value.
- Tree, ranked (positional) acceptance model (Sequoia, Chen et al. 2024): p_r = P(the
  drafter's rank-r candidate at a node is accepted | ranks 0..r-1 there were rejected).
  Siblings are mutually exclusive, so P(rank-r child accepted | parent accepted) =
  q_r = p_r Π_{i<r}(1 − p_i), and E = 1 + Σ_nodes P(path to node accepted). ``ranked``
  is [width] (the same at every depth) or [depth, width] (row d-1 for nodes at depth d;
  extended with its last row); ranks beyond the width have p = 0.
- Costs are unitless ratios to one plain decode step of the target (batch and context
  fixed): a step drafting k tokens costs k·c (c = draft/target cost ratio, one draft pass
  per depth level) plus the verify cost of k + 1 tokens, 1 in the classic memory-bound
  model; ``verify_cost`` lets it grow with the tokens verified, as it does under batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .tree import Tree

VerifyCost = Callable[[np.ndarray], Any] | Sequence[float] | np.ndarray | None


# ------------------------------------------------------------------ validation helpers


def _probs(x: Any, name: str, min_ndim: int = 1) -> np.ndarray:
    """A float array of probabilities in [0, 1], or InputError naming ``name``."""
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"must be numbers, got {x!r}", field=name) from None
    if a.ndim < min_ndim:
        a = a.reshape((1,) * (min_ndim - a.ndim) + a.shape)
    bad = ~np.isfinite(a) | (a < 0) | (a > 1)
    if bad.any():
        raise InputError(f"must be probabilities in [0, 1], got {a[bad].flat[0]:g}", field=name)
    return a


def _nonneg_ints(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu" and not (
        a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a))
    ):
        raise InputError(f"must be integers, got {x!r}", field=name)
    a = a.astype(np.int64)
    if (a < 0).any():
        raise InputError(f"must be >= 0, got {a[a < 0].flat[0]}", field=name)
    return a


def _extend(a: np.ndarray, n: int) -> np.ndarray:
    """Truncate or extend the last axis of ``a`` to ``n`` by repeating its last value."""
    if a.shape[-1] >= n:
        return a[..., :n]
    if a.shape[-1] == 0:
        raise InputError("acceptance must have at least one value", field="acceptance")
    pad = np.repeat(a[..., -1:], n - a.shape[-1], axis=-1)
    return np.concatenate([a, pad], axis=-1)


def _scalar_or_array(x: np.ndarray) -> float | np.ndarray:
    return float(x) if x.ndim == 0 else x


# ------------------------------------------------------------------ chain


def expected_tokens_chain(per_position: Any, k: Any) -> float | np.ndarray:
    """Expected tokens per step of a chain of k drafts, bonus token included.

    Args:
        per_position: acceptance a_1..a_K, [K] or a batch [..., K]; extended with its
            last value when K < k.
        k: draft length(s), an int or an int array of any shape S.

    Returns:
        E = 1 + Σ_{i≤k} Π_{j≤i} a_j, shape [..., *S]; a float for one vector [K] and an int k.

    Raises:
        InputError: acceptance outside [0, 1] or not numbers; k negative or not integer.
    """
    a = _probs(per_position, "acceptance")  # [..., K]
    ks = _nonneg_ints(k, "k")  # S
    k_max = int(ks.max()) if ks.size else 0
    if k_max == 0:
        return _scalar_or_array(np.ones(a.shape[:-1] + ks.shape))
    survive = np.cumprod(_extend(a, k_max), axis=-1)  # P(drafts 1..i accepted) [..., k_max]
    by_k = np.concatenate(  # E for k = 0..k_max  [..., k_max + 1]
        [np.ones((*a.shape[:-1], 1)), 1.0 + np.cumsum(survive, axis=-1)], axis=-1
    )
    return _scalar_or_array(by_k[..., ks])


def expected_tokens_iid(a: Any, k: Any) -> float | np.ndarray:
    """Expected tokens per step with iid acceptance: (1 − a^(k+1)) / (1 − a); k + 1 at a = 1.

    Args:
        a: acceptance rate(s); broadcast against k.
        k: draft length(s) >= 0.

    Returns:
        Broadcast shape of ``a`` and ``k``; a float for scalars.
    """
    aa = _probs(a, "acceptance", min_ndim=0)
    ks = _nonneg_ints(k, "k").astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # expm1/log1p keep full precision for a close to 1, where 1 − a^(k+1) cancels.
        num = -np.expm1((ks + 1.0) * np.log1p(aa - 1.0))
        out = np.where(aa < 1.0, num / (1.0 - aa), ks + 1.0)
    return _scalar_or_array(np.asarray(out))


def accepted_dist_chain(per_position: Any, k: int) -> np.ndarray:
    """Distribution of the number of accepted drafts n = 0..k in one chain step.

    Args:
        per_position: acceptance [K] or [..., K] (extended with its last value).
        k: draft length >= 0.

    Returns:
        P(n accepted) [..., k + 1]; tokens emitted = n + 1 (bonus). Rows sum to 1.
    """
    a = _probs(per_position, "acceptance")  # [..., K]
    k = int(_nonneg_ints(k, "k"))
    ones = np.ones((*a.shape[:-1], 1))
    if k == 0:
        return ones
    survive = np.cumprod(_extend(a, k), axis=-1)  # P(n >= i), i = 1..k
    tail = np.concatenate([ones, survive, np.zeros_like(ones)], axis=-1)  # P(n >= i), i=0..k+1
    return tail[..., :-1] - tail[..., 1:]


# ------------------------------------------------------------------ tree


def sibling_accept_probs(ranked: Any, depth: int = 1) -> np.ndarray:
    """q[d, r] = P(rank-r child at depth d+1 accepted | parent accepted) = p_r Π_{i<r}(1 − p_i).

    Args:
        ranked: p [W] (all depths) or [D', W] (per depth, extended with its last row).
        depth: number of depth rows to return.

    Returns:
        q [depth, W]; each row sums to <= 1.
    """
    p = _probs(ranked, "ranked")
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
    budget = int(_nonneg_ints(budget, "tree.budget"))
    max_depth = int(_nonneg_ints(max_depth, "tree.depth"))
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


# ------------------------------------------------------------------ costs


def _verify_costs(verify_cost: VerifyCost, n_max: int) -> np.ndarray:
    """Verify cost of n = 0..n_max drafted tokens (n + 1 verified), relative to one decode step."""
    if verify_cost is None:
        return np.ones(n_max + 1)
    n = np.arange(n_max + 1)
    raw = verify_cost(n) if callable(verify_cost) else verify_cost
    try:
        v = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"must be numbers, got {raw!r}", field="verify_cost") from None
    if v.ndim == 0:
        v = np.full(n_max + 1, float(v))
    elif v.ndim == 1 and v.shape[0] >= n_max + 1:
        v = v[: n_max + 1]
    else:
        raise InputError(
            f"needs one value per drafted-token count 0..{n_max}, got shape {v.shape}",
            field="verify_cost",
        )
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise InputError("must be finite and > 0", field="verify_cost")
    return v


def speedup(
    expected_tokens: Any,
    step_cost_ratio: Any = None,
    *,
    draft_cost: Any = None,
    verify_cost: Any = None,
    base_cost: Any = 1.0,
) -> float | np.ndarray:
    """Speedup over plain decoding: tokens per step divided by the step's relative cost.

    Either ``speedup(E, step_cost_ratio)`` (ratio = SD step cost / plain decode step, e.g.
    k·c + 1 in the classic model), or the general form ``speedup(E, draft_cost=..,
    verify_cost=.., base_cost=..)`` = E · base / (draft + verify), any consistent unit.

    Raises:
        InputError: a non-positive cost, or neither form given.
    """
    e = np.asarray(expected_tokens, dtype=float)
    if step_cost_ratio is None:
        if draft_cost is None or verify_cost is None:
            raise InputError("give step_cost_ratio, or draft_cost and verify_cost", field="cost")
        base = np.asarray(base_cost, dtype=float)
        if np.any(base <= 0):
            raise InputError(f"must be > 0, got {base_cost}", field="base_cost")
        step_cost_ratio = (np.asarray(draft_cost, float) + np.asarray(verify_cost, float)) / base
    ratio = np.asarray(step_cost_ratio, dtype=float)
    if np.any(~np.isfinite(ratio) | (ratio <= 0)):
        raise InputError(f"must be finite and > 0, got {step_cost_ratio}", field="step_cost_ratio")
    return _scalar_or_array(e / ratio)


def _check_cost_ratio(cost_ratio: Any) -> float:
    try:
        c = float(cost_ratio)
    except (TypeError, ValueError):
        raise InputError(f"must be a number, got {cost_ratio!r}", field="cost_ratio") from None
    if not np.isfinite(c) or c < 0:
        raise InputError(f"must be >= 0, got {cost_ratio}", field="cost_ratio")
    return c


def chain_step_cost(k: Any, cost_ratio: float, verify_cost: VerifyCost = None) -> np.ndarray:
    """Relative cost of a chain step: k·c + verify_cost(k) (classic: k·c + 1).

    Args:
        k: draft length(s) (int array of any shape).
        cost_ratio: c = one draft pass / one target decode step.
        verify_cost: None (1 for any k), an array [k_max + 1] indexed by k, or a callable
            on an int array of k.
    """
    ks = _nonneg_ints(k, "k")
    c = _check_cost_ratio(cost_ratio)
    v = _verify_costs(verify_cost, int(ks.max()) if ks.size else 0)
    return ks * c + v[ks]


def tree_step_cost(tree: Tree, cost_ratio: float, verify_cost: VerifyCost = None) -> float:
    """Relative cost of a tree step: max_depth·c (one draft pass per level) + verify(nodes)."""
    c = _check_cost_ratio(cost_ratio)
    v = _verify_costs(verify_cost, tree.num_nodes)
    return float(tree.max_depth * c + v[tree.num_nodes])


def speedup_by_k(
    per_position: Any, cost_ratio: float, k_max: int = 16, *, verify_cost: VerifyCost = None
) -> tuple[np.ndarray, np.ndarray]:
    """Expected tokens and speedup for every k = 0..k_max.

    Returns:
        (expected tokens [..., k_max + 1], speedup [..., k_max + 1]); k = 0 is plain
        decoding (speedup 1 / verify_cost(0)).
    """
    ks = np.arange(int(_nonneg_ints(k_max, "k_max")) + 1)
    e = np.asarray(expected_tokens_chain(per_position, ks))
    return e, e / chain_step_cost(ks, cost_ratio, verify_cost)


def best_k(
    per_position: Any, cost_ratio: float, k_max: int = 16, *, verify_cost: VerifyCost = None
) -> tuple[Any, Any]:
    """The draft length maximising speedup (0 = do not speculate), and that speedup.

    Args:
        per_position: acceptance [K] or a batch [..., K].
        cost_ratio: c = one draft pass / one target decode step.
        k_max: largest k considered.
        verify_cost: see :func:`chain_step_cost`; pass a cost growing with k to model
            batching, where the best k shrinks. Ties go to the smaller k.

    Returns:
        (k, speedup): ints/floats for one vector, arrays [...] for a batch.
    """
    _, s = speedup_by_k(per_position, cost_ratio, k_max, verify_cost=verify_cost)
    k = np.argmax(s, axis=-1)
    best = np.take_along_axis(s, k[..., None], axis=-1)[..., 0]
    if k.ndim == 0:
        return int(k), float(best)
    return k, best
