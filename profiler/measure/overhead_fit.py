"""Host-overhead lines: least-squares fits of per-step host time against batch and draft
shape, every coefficient kept >= 0.

The host part of an engine step (what its forwards do not explain) is fitted as
``base_ms + (per_seq_ms + per_pass_seq_ms x passes + per_node_seq_ms x nodes) x batch``
over the medians of each (batch, passes, nodes) group of steps. Shared by the engine
latency profiler (:mod:`.engine_latency`) and the validation's calibration
(:mod:`spectune.validation.overhead`). Units: milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LineFit:
    """``base_ms + (per_seq_ms + per_pass_seq_ms × passes + per_node_seq_ms × nodes) ×
    batch`` with its fit quality."""

    base_ms: float
    per_seq_ms: float
    steps: int
    rmse_ms: float
    per_pass_seq_ms: float = 0.0
    per_node_seq_ms: float = 0.0

    def at(
        self,
        batch: np.ndarray | float,
        passes: np.ndarray | float = 0,
        nodes: np.ndarray | float = 0,
    ) -> np.ndarray | float:
        per_seq = self.per_seq_ms + self.per_pass_seq_ms * passes + self.per_node_seq_ms * nodes
        return self.base_ms + per_seq * batch


def fit_shapes(batch: np.ndarray, passes: np.ndarray, nodes: np.ndarray, ms: np.ndarray) -> LineFit:
    """Least squares of ``ms`` on (1, batch, batch × passes, batch × nodes) over the
    medians of each (batch, passes, nodes) group, every coefficient >= 0 (the best fit over
    the subsets of terms whose unconstrained fit is non-negative). One draft shape only:
    :func:`fit_line`."""
    keys = list(zip(batch.tolist(), passes.tolist(), nodes.tolist(), strict=True))
    groups = sorted(set(keys))
    if len({g[1:] for g in groups}) < 2:
        return fit_line(batch, ms)
    g_arr = np.array(groups, dtype=float)
    key_arr = np.array(keys, dtype=float)
    med = np.array([np.median(ms[(key_arr == g).all(1)]) for g in g_arr])
    b, q, n = g_arr.T
    cols = np.stack([np.ones_like(b), b, b * q, b * n], axis=1)
    best, best_rss = np.zeros(4), float(np.sum(med**2))
    for mask in range(1, 16):
        use = [i for i in range(4) if mask >> i & 1]
        if len(use) > len(groups):
            continue
        coef, *_ = np.linalg.lstsq(cols[:, use], med, rcond=None)
        if np.any(coef < 0):
            continue
        full = np.zeros(4)
        full[use] = coef
        rss = float(np.sum((med - cols @ full) ** 2))
        if rss < best_rss - 1e-15:
            best, best_rss = full, rss
    rmse = float(np.sqrt(best_rss / len(groups)))
    c = [float(x) for x in best]
    return LineFit(c[0], c[1], int(batch.size), rmse, c[2], c[3])


def fit_line(batch: np.ndarray, ms: np.ndarray) -> LineFit:
    """Least squares over per-batch medians (one batch size: a constant), clipped at 0."""
    sizes = np.unique(batch)
    med = np.array([np.median(ms[batch == b]) for b in sizes])
    if sizes.size >= 2:
        slope, icpt = np.polyfit(sizes.astype(float), med, 1)
    else:
        slope, icpt = 0.0, float(med[0]) if med.size else 0.0
    slope = max(float(slope), 0.0)
    if slope == 0.0 and sizes.size:
        icpt = float(np.mean(med))
    icpt = max(float(icpt), 0.0)
    resid = med - (icpt + slope * sizes) if sizes.size else np.zeros(0)
    rmse = float(np.sqrt(np.mean(resid**2))) if resid.size else 0.0
    return LineFit(icpt, slope, int(batch.size), rmse)
