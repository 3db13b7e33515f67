"""Named acceptance conventions and the conversions between them (docs/acceptance.md).

- conditional per-position a_i = P(draft i accepted | drafts 1..i-1 accepted): spectune's
  ``per_position``;
- unconditional per-position u_i = P(drafts 1..i all accepted) = a_1···a_i: vLLM's
  per-position counters divided by its number of drafts;
- mean acceptance length AL = 1 + Σ_i u_i (bonus included: vLLM, SGLang, spectune);
- vLLM's acceptance rate r = accepted / drafted = (AL − 1) / k (``vllm bench serve``
  prints it in percent);
- ranked, conditional p_r = P(rank r accepted | ranks before it rejected): spectune's
  ``ranked``; Sequoia's s_r = P(the accepted child is the rank-r one) = p_r Π_{l<r}(1 − p_l).

Pure functions on 1-D sequences; every input is checked (InputError naming ``field``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from .chain import expected_tokens_chain
from .checks import nonneg_ints, probs
from .tree import sibling_accept_probs

CONDITIONAL = "conditional"  # a_i, spectune's per_position
UNCONDITIONAL = "unconditional"  # u_i, vLLM's per-position rates
SEQUOIA = "sequoia"  # s_r, P(rank r is the accepted one)


def _vector(x: Any, field: str) -> np.ndarray:
    a = probs(x, field)
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"must be a non-empty list of probabilities, got {x!r}", field=field)
    return a


def unconditional_from_conditional(per_position: Any) -> list[float]:
    """u_i = Π_{j≤i} a_j."""
    return np.cumprod(_vector(per_position, "per_position")).tolist()


def conditional_from_unconditional(unconditional: Any, field: str = "unconditional") -> list[float]:
    """a_i = u_i / u_{i−1} (u_0 = 1); a position after u reaches 0 keeps the last a.

    Raises:
        InputError: u is not non-increasing (it is a survival function).
    """
    u = _vector(unconditional, field)
    rising = np.flatnonzero(np.diff(u) > 1e-9)
    if rising.size:
        i = int(rising[0]) + 1
        raise InputError(
            f"unconditional rates P(drafts 1..i accepted) cannot rise: position {i + 1} "
            f"has {u[i]:g} > {u[i - 1]:g} at position {i}",
            field=field,
        )
    out: list[float] = []
    prev = 1.0
    for x in u.tolist():
        out.append(min(1.0, x / prev) if prev > 0 else (out[-1] if out else 0.0))
        prev = x
    return out


def acceptance_length(per_position: Any, k: int) -> float:
    """AL = 1 + Σ_{i≤k} u_i of a k-chain (bonus included; the last a repeats)."""
    return float(expected_tokens_chain(_vector(per_position, "per_position"), int(k)))


def vllm_acceptance_rate(length: float, k: int) -> float:
    """r = (AL − 1) / k: vLLM's accepted / drafted (a fraction, not percent)."""
    _check_length(length, k)
    return (float(length) - 1.0) / int(k)


def length_from_rate(rate: float, k: int) -> float:
    """AL = 1 + r·k."""
    k = _check_k(k)
    if not 0.0 <= float(rate) <= 1.0:
        raise InputError(f"must be in [0, 1] (a fraction, not percent), got {rate:g}", field="rate")
    return 1.0 + float(rate) * k


def fit_iid_from_length(length: float, k: int) -> float:
    """The iid rate a whose k-chain has mean acceptance length AL:
    (1 − a^(k+1)) / (1 − a) = AL (unique: AL rises with a). Bisection to 1e-12.

    Raises:
        InputError: AL outside [1, k + 1].
    """
    k = _check_length(length, k)
    target = float(length)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if expected_tokens_chain([mid], k) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def sequoia_from_ranked(ranked: Any) -> list[float]:
    """s_r = p_r Π_{l<r}(1 − p_l): P(the accepted child is the rank-r one)."""
    return sibling_accept_probs(_vector(ranked, "ranked"), 1)[0].tolist()


def ranked_from_sequoia(sequoia: Any, field: str = "ranked") -> list[float]:
    """p_r = s_r / (1 − Σ_{l<r} s_l); a rank no draft reaches (Σ = 1 before it) gets 0.

    Raises:
        InputError: the s_r sum to more than 1 (they are exclusive outcomes).
    """
    s = _vector(sequoia, field)
    if s.sum() > 1.0 + 1e-9:
        raise InputError(
            f"P(rank r is the accepted one) are exclusive and must sum to <= 1, got {s.sum():.4g}",
            field=field,
        )
    left = 1.0 - np.concatenate(([0.0], np.cumsum(s)[:-1]))
    return [float(min(1.0, x / y)) if y > 1e-12 else 0.0 for x, y in zip(s, left, strict=True)]


def conditional_from_counts(
    accepted_per_position: Sequence[int],
    num_drafts: int,
    drafted_per_position: Sequence[int] | None = None,
) -> list[float]:
    """a_i from an engine's counters: accepted_i over the drafts that reached position i
    with a token there, min(accepted_{i−1}, drafted_i) (accepted_0 = num_drafts); without
    per-position drafted counts every draft is taken to have had k tokens, so
    a_i = accepted_i / accepted_{i−1}. A position no draft reached keeps the last a."""
    acc = nonneg_ints(list(accepted_per_position), "accepted_per_position").tolist()
    drafted = None
    if drafted_per_position is not None:
        drafted = nonneg_ints(list(drafted_per_position), "drafted_per_position").tolist()
    out: list[float] = []
    reached = int(num_drafts)
    for i, a in enumerate(acc):
        base = reached if drafted is None else min(reached, drafted[i])
        if a > base:
            raise InputError(
                f"position {i + 1}: {a} accepted but only {base} drafts reached it",
                field="accepted_per_position",
            )
        out.append(a / base if base else (out[-1] if out else 0.0))
        reached = a
    return out


def _check_k(k: Any) -> int:
    k = int(nonneg_ints(k, "k"))
    if k < 1:
        raise InputError("must be >= 1", field="k")
    return k


def _check_length(length: float, k: int) -> int:
    k = _check_k(k)
    x = float(length)
    if not np.isfinite(x) or not 1.0 <= x <= k + 1.0:
        raise InputError(
            f"mean acceptance length (bonus included) must be in [1, k + 1 = {k + 1}], got {x:g}",
            field="acceptance_length",
        )
    return k
