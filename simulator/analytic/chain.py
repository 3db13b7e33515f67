"""Chains: expected tokens per step and the accepted-length distribution (per-position a_i)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import extend, nonneg_ints, probs, scalar_or_array


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
    a = probs(per_position, "acceptance")  # [..., K]
    ks = nonneg_ints(k, "k")  # S
    k_max = int(ks.max()) if ks.size else 0
    if k_max == 0:
        return scalar_or_array(np.ones(a.shape[:-1] + ks.shape))
    survive = np.cumprod(extend(a, k_max), axis=-1)  # P(drafts 1..i accepted) [..., k_max]
    by_k = np.concatenate(  # E for k = 0..k_max  [..., k_max + 1]
        [np.ones((*a.shape[:-1], 1)), 1.0 + np.cumsum(survive, axis=-1)], axis=-1
    )
    return scalar_or_array(by_k[..., ks])


def expected_tokens_iid(a: Any, k: Any) -> float | np.ndarray:
    """Expected tokens per step with iid acceptance: (1 − a^(k+1)) / (1 − a); k + 1 at a = 1.

    Args:
        a: acceptance rate(s); broadcast against k.
        k: draft length(s) >= 0.

    Returns:
        Broadcast shape of ``a`` and ``k``; a float for scalars.
    """
    aa = probs(a, "acceptance", min_ndim=0)
    ks = nonneg_ints(k, "k").astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # expm1/log1p keep full precision for a close to 1, where 1 − a^(k+1) cancels.
        num = -np.expm1((ks + 1.0) * np.log1p(aa - 1.0))
        out = np.where(aa < 1.0, num / (1.0 - aa), ks + 1.0)
    return scalar_or_array(np.asarray(out))


def accepted_dist_chain(per_position: Any, k: int) -> np.ndarray:
    """Distribution of the number of accepted drafts n = 0..k in one chain step.

    Args:
        per_position: acceptance [K] or [..., K] (extended with its last value).
        k: draft length >= 0.

    Returns:
        P(n accepted) [..., k + 1]; tokens emitted = n + 1 (bonus). Rows sum to 1.
    """
    a = probs(per_position, "acceptance")  # [..., K]
    k = int(nonneg_ints(k, "k"))
    ones = np.ones((*a.shape[:-1], 1))
    if k == 0:
        return ones
    survive = np.cumprod(extend(a, k), axis=-1)  # P(n >= i), i = 1..k
    tail = np.concatenate([ones, survive, np.zeros_like(ones)], axis=-1)  # P(n >= i), i=0..k+1
    return tail[..., :-1] - tail[..., 1:]
