"""Argument checks shared by the closed forms: probabilities, counts, extension."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError


def probs(x: Any, name: str, min_ndim: int = 1) -> np.ndarray:
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


def nonneg_ints(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu" and not (
        a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a))
    ):
        raise InputError(f"must be integers, got {x!r}", field=name)
    a = a.astype(np.int64)
    if (a < 0).any():
        raise InputError(f"must be >= 0, got {a[a < 0].flat[0]}", field=name)
    return a


def extend(a: np.ndarray, n: int) -> np.ndarray:
    """Truncate or extend the last axis of ``a`` to ``n`` by repeating its last value."""
    if a.shape[-1] >= n:
        return a[..., :n]
    if a.shape[-1] == 0:
        raise InputError("acceptance must have at least one value", field="acceptance")
    pad = np.repeat(a[..., -1:], n - a.shape[-1], axis=-1)
    return np.concatenate([a, pad], axis=-1)


def scalar_or_array(x: np.ndarray) -> float | np.ndarray:
    return float(x) if x.ndim == 0 else x
