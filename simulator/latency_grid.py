"""Grid construction for :class:`~spectune.simulator.latency.LatencyModel`.

Pure numpy functions over a 3-axis grid ``[batch, query_tokens, context_tokens]``: filling
unmeasured cells, making the grid monotone, adding virtual nodes for extrapolation, and
locating a value on an axis. The rules are described in :mod:`.latency`'s docstring.
Latencies are in ms; axis values in sequences / tokens.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np


def _param_basis(b: np.ndarray, q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Columns of the parametric model; each is non-decreasing in every axis."""
    return np.stack([np.ones_like(b), b, b * q, b * c, b * q * c], axis=-1)


def fit_parametric(b: np.ndarray, q: np.ndarray, c: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares in relative error for ``a + b·B + c·B·q + d·B·ctx + e·B·q·ctx``.

    Active-set by elimination: solve, drop the most negative coefficient, repeat. With five
    columns this is exact enough for a fill-in model and needs no scipy at load time.

    Returns:
        The five coefficients, all >= 0.
    """
    x = _param_basis(b, q, c) / y[:, None]
    target = np.ones_like(y)
    scale = np.maximum(np.abs(x).max(axis=0), 1e-300)  # column scaling for conditioning
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(x[:, active] / scale[active], target, rcond=None)
        sol = sol / scale[active]
        if (sol >= 0).all():
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef


def fill_missing(axes: list[np.ndarray], vals: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Fill unmeasured cells (see the module docstring, step 2). Returns a full grid."""
    out = vals.copy()
    missing = np.argwhere(~measured)
    if len(missing) == 0:
        return out
    need_param: list[tuple[int, ...]] = []
    for idx in map(tuple, missing):
        est = [
            v for ax in range(3) if (v := bracket_interp(axes, vals, measured, idx, ax)) is not None
        ]
        if est:
            out[idx] = float(np.mean(est))
        else:
            need_param.append(idx)
    if need_param:
        pts = np.argwhere(measured)
        b, q, c = (axes[k][pts[:, k]] for k in range(3))
        y = vals[measured]
        coef = fit_parametric(b, q, c, y)

        def model_at(i: tuple[int, ...]) -> float:
            x = _param_basis(*(np.array([axes[k][i[k]]]) for k in range(3)))[0]
            return max(float(x @ coef), 1e-12)

        ratio = y / np.maximum(_param_basis(b, q, c) @ coef, 1e-12)
        for idx in need_param:
            dist = np.abs(pts - np.array(idx)).sum(axis=1)
            near = dist == dist.min()
            out[idx] = model_at(idx) * float(ratio[near].mean())
    return out


def bracket_interp(axes, vals, measured, idx, ax) -> float | None:
    """Linear interpolation at cell ``idx`` from the nearest measured cells on both sides
    along axis ``ax`` (excluding ``idx`` itself), or None if one side has none."""
    line = [slice(None) if k == ax else idx[k] for k in range(3)]
    m = measured[tuple(line)]
    i = idx[ax]
    lo = next((j for j in range(i - 1, -1, -1) if m[j]), None)
    hi = next((j for j in range(i + 1, len(m)) if m[j]), None)
    if lo is None or hi is None:
        return None
    x = axes[ax]
    v = vals[tuple(line)]
    t = (x[i] - x[lo]) / (x[hi] - x[lo])
    return float(v[lo] + t * (v[hi] - v[lo]))


def make_monotone(grid: np.ndarray) -> np.ndarray:
    """Mean of the upper (cumulative max) and lower (reverse cumulative min) monotone
    envelopes along every axis: non-decreasing in each axis; identity on monotone input."""
    up = grid
    low = grid
    for ax in range(grid.ndim):
        up = np.maximum.accumulate(up, axis=ax)
        low = np.flip(np.minimum.accumulate(np.flip(low, axis=ax), axis=ax), axis=ax)
    return (up + low) / 2.0


_FAR = 1e6  # virtual far node of each axis at (max(hi, 1) * _FAR); beyond it, same slope


def augment(
    axes: list[np.ndarray], grid: np.ndarray, floor: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Add virtual nodes so extrapolation is plain interpolation on a monotone grid.

    For each axis with >= 2 values, in turn: a far node above the grid, valued by the last
    segment's slope after a monotone envelope (cumulative max) over the other axes, and,
    when the axis starts above its natural minimum (1 for batch and query, 0 for
    context), a node at that minimum, valued by the first segment's slope clipped to
    [floor, first value] and made monotone the same way. The envelopes make the edge
    slopes non-decreasing in the other axes, so the augmented grid stays monotone in every
    axis and so does every interpolation and linear extrapolation from it.

    Returns:
        The augmented axes and grid (real nodes keep their values).
    """
    axes = [a.copy() for a in axes]
    natural_min = (1.0, 1.0, 0.0)
    for ax in range(3):
        x = axes[ax]
        if len(x) < 2:
            continue
        g = np.moveaxis(grid, ax, 0)  # [n, other, other]
        s_top = np.maximum((g[-1] - g[-2]) / (x[-1] - x[-2]), 0.0)
        for other in (0, 1):
            s_top = np.maximum.accumulate(s_top, axis=other)
        x_far = max(x[-1], 1.0) * _FAR
        parts = [g, (g[-1] + s_top * (x_far - x[-1]))[None]]
        new_x = [x, [x_far]]
        if x[0] > natural_min[ax]:
            s_bot = np.maximum((g[1] - g[0]) / (x[1] - x[0]), 0.0)
            low = np.clip(g[0] - s_bot * (x[0] - natural_min[ax]), min(floor, g[0].min()), g[0])
            for other in (0, 1):
                low = np.maximum.accumulate(low, axis=other)
            parts.insert(0, low[None])
            new_x.insert(0, [natural_min[ax]])
        grid = np.moveaxis(np.concatenate(parts, axis=0), 0, ax)
        axes[ax] = np.concatenate([np.asarray(v, float) for v in new_x])
    return axes, grid


def axis_weights(x: np.ndarray, v: float) -> tuple[int, int, float, bool]:
    """Segment (i, i+1) and weight t of ``v`` on axis ``x`` (t outside [0, 1] = linear
    extrapolation), and whether ``v`` is outside the axis range. One-point axes: (0, 0, 0)."""
    n = len(x)
    if n == 1:
        return 0, 0, 0.0, v != x[0]
    i = min(max(bisect_right(x.tolist(), v) - 1, 0), n - 2)
    t = (v - x[i]) / (x[i + 1] - x[i])
    return i, i + 1, float(t), bool(v < x[0] or v > x[-1])
