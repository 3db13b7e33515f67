"""Step costs relative to one plain decode step, speedup, and the best chain length."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..tree import Tree
from .chain import expected_tokens_chain
from .checks import nonneg_ints, scalar_or_array

VerifyCost = Callable[[np.ndarray], Any] | Sequence[float] | np.ndarray | None


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
    return scalar_or_array(e / ratio)


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
    ks = nonneg_ints(k, "k")
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
    ks = np.arange(int(nonneg_ints(k_max, "k_max")) + 1)
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
