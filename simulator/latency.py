"""Forward-pass latency of a model on a device: the cost model the simulator calls.

A :class:`LatencyModel` is built from a latency profile's points over three axes: ``batch``
(sequences in the forward), ``query_tokens`` (tokens per sequence: 1 for decode, nodes + 1
for verify, the chunk for prefill) and ``context_tokens`` (tokens already in each
sequence's KV cache). It answers ``forward_ms(batch, query_tokens, context_tokens)`` in
milliseconds; ``context_tokens`` may be fractional (a batch's mean context).

How it is built (all steps deterministic):

1. Values: each point's ``latency_ms.p50`` (the median of repeats; ``stat`` can choose
   ``min`` instead) on the grid ``batches × queries × contexts`` made of every distinct
   value of each axis.
2. Missing cells (scattered points, or grids pruned at large batch × query) are filled:
   by linear interpolation along every axis on which measured cells bracket the hole
   (averaged over those axes), else by a small parametric model
   ``a + b·B + c·B·q + d·B·ctx + e·B·q·ctx`` (non-negative coefficients, fitted in
   relative error) times the measured/model ratio of the nearest measured cells. Queries
   that touch a filled cell are counted as extrapolation, like queries off the grid.
3. Monotonicity: latency must not decrease when any axis grows, but measured points are
   noisy. The grid is replaced by ``(U + L) / 2`` where ``U`` is the cumulative maximum
   taken along each axis in turn (an upper monotone envelope) and ``L`` the reverse
   cumulative minimum (a lower one); both are monotone in every axis, so their mean is,
   and a grid that was already monotone is left unchanged (exact on grid points).
4. Queries: multilinear interpolation in the raw axis values (not log2): each roofline
   term (weights, KV reads ``B·ctx``, FLOPs ``B·q``, attention ``B·q·ctx``) is multilinear
   in (B, q, ctx), so the interpolation is exact inside each regime and errs only at
   regime kinks. Multilinear interpolation of a monotone grid is monotone.
5. Beyond the grid: linear extrapolation, never flat. Each axis gets a virtual far node
   (and, if the grid starts above batch 1 / query 1 / context 0, a node there) valued by
   the edge segment's slope, after a monotone envelope of those slopes over the other
   axes; extrapolation is then interpolation on a still-monotone grid, so monotonicity
   holds off the grid too. Below the grid values are floored at a small positive value.
   Every query off the measured grid increments :attr:`LatencyModel.extrapolated` and the
   worst one is kept; ``strict=True`` raises :class:`ExtrapolationError` instead.

Cross-validated error (:attr:`LatencyModel.cv_error_pct`): leave-one-out over the interior
grid points. Each measured point that has measured neighbours on both sides along at least
one axis is held out and predicted by linear interpolation from those neighbours (the
mean over such axes) — i.e. at twice the grid spacing, so it is typically larger than
the error of interpolating between neighbouring grid points (a pessimistic estimate).
Reported as the mean absolute percentage error; :attr:`cv_max_error_pct` and
:attr:`cv_points` go with it.

Speed: ``forward_ms`` caches, per (batch, query_tokens), the interpolated curve over the
context axis, and then costs one ``bisect`` plus a multiply-add (benchmarks/
bench_latency_model.py measures it).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from .errors import ExtrapolationError, InputError
from .latency_grid import (
    augment,
    axis_weights,
    bracket_interp,
    fill_missing,
    make_monotone,
)
from .schema import LatencyProfile, load_latency_profile

_MAX_CACHED_SLICES = 200_000  # (batch, query) curves kept; each is a few small lists


class ForwardLatency(Protocol):
    """Anything that prices one forward pass. The simulator calls ``forward_ms`` once per
    forward (draft passes and the verify pass of every iteration)."""

    def forward_ms(self, batch: int, query_tokens: int, context_tokens: float) -> float:
        """Milliseconds for one forward of ``batch`` sequences × ``query_tokens`` new tokens
        each, with ``context_tokens`` tokens already cached per sequence."""
        ...


class ConstantLatency:
    """An exact, grid-free cost for tests:
    ``base_ms + per_token_ms·batch·query_tokens + per_context_token_ms·batch·context_tokens``.

    It never extrapolates, so :attr:`extrapolated` stays 0 and :attr:`cv_error_pct` is 0.

    Raises:
        InputError: a negative coefficient, or a zero cost.
    """

    extrapolated: int = 0
    cv_error_pct: float = 0.0

    def __init__(
        self, base_ms: float, per_token_ms: float = 0.0, per_context_token_ms: float = 0.0
    ):
        for name, v in (
            ("base_ms", base_ms),
            ("per_token_ms", per_token_ms),
            ("per_context_token_ms", per_context_token_ms),
        ):
            if not (math.isfinite(v) and v >= 0):
                raise InputError(f"{name} must be a finite number >= 0, got {v}")
        if base_ms == 0 and per_token_ms == 0:
            raise InputError("a forward must cost something: base_ms or per_token_ms must be > 0")
        self.base_ms = float(base_ms)
        self.per_token_ms = float(per_token_ms)
        self.per_context_token_ms = float(per_context_token_ms)

    def forward_ms(self, batch: int, query_tokens: int, context_tokens: float) -> float:
        return (
            self.base_ms
            + self.per_token_ms * batch * query_tokens
            + self.per_context_token_ms * batch * context_tokens
        )

    def __repr__(self) -> str:
        return (
            f"ConstantLatency(base_ms={self.base_ms}, per_token_ms={self.per_token_ms}, "
            f"per_context_token_ms={self.per_context_token_ms})"
        )


# --------------------------------------------------------------------------- the model


class LatencyModel:
    """Monotone interpolating latency model over batch × query_tokens × context_tokens.

    Build with :meth:`from_profile` or :meth:`from_path`. Attributes:

    - ``extrapolated``: how many ``forward_ms`` calls fell off the measured grid so far.
    - ``worst_extrapolation``: the (batch, query_tokens, context_tokens) of the call farthest
      off the grid (largest ratio beyond an axis range), or None.
    - ``cv_error_pct``, ``cv_max_error_pct``, ``cv_points``: leave-one-out error of the
      interpolation (module docstring).
    - ``monotone_adjust_pct``: largest relative change the monotone step made to a measured
      value (0 for a clean profile; large values mean a noisy profile).
    """

    def __init__(
        self,
        batches: np.ndarray,
        queries: np.ndarray,
        contexts: np.ndarray,
        raw: np.ndarray,
        measured: np.ndarray,
        *,
        source: str | None = None,
        strict: bool = False,
    ):
        # raw / measured: [batches, queries, contexts]; raw is NaN where not measured
        self.axes = [
            np.asarray(batches, float),
            np.asarray(queries, float),
            np.asarray(contexts, float),
        ]
        self.measured = measured
        self._raw = raw
        filled = fill_missing(self.axes, np.where(measured, raw, 0.0), measured)
        self.grid = make_monotone(filled)
        self.source = source
        self.strict = strict
        self.extrapolated = 0
        self.worst_extrapolation: tuple[int, int, float] | None = None
        self._worst_score = -1.0
        adj = np.abs(self.grid - filled)[measured] / filled[measured]
        self.monotone_adjust_pct = float(adj.max() * 100.0) if adj.size else 0.0
        self._floor_ms = float(self.grid.min()) * 0.05
        self._lo = [float(a[0]) for a in self.axes]
        self._hi = [float(a[-1]) for a in self.axes]
        grid, measured_ = self.grid, measured
        if len(self.axes[2]) == 1:
            # One context value: a flat two-point axis; every other context is flagged.
            grid = np.concatenate([grid, grid], axis=2)
            measured_ = np.concatenate([measured, measured], axis=2)
            ctx_axes = [self.axes[0], self.axes[1], np.array([self._lo[2], self._lo[2] + 1.0])]
        else:
            ctx_axes = self.axes
        self._aug_axes, self._aug_grid = augment(ctx_axes, grid, self._floor_ms)
        # measured mask on the augmented grid (virtual nodes count as measured: queries that
        # reach them are off the real range and flagged by the range checks)
        pad = []
        for k in range(3):
            below = int(self._aug_axes[k][0] < ctx_axes[k][0])
            pad.append((below, len(self._aug_axes[k]) - len(ctx_axes[k]) - below))
        self._aug_measured = np.pad(measured_, pad, constant_values=True)
        ctx = self._aug_axes[2]
        self._ctx = ctx.tolist()
        self._ctx_dx = np.diff(ctx)
        self._ctx_inner = self._ctx[1:-1]  # bisect here gives the segment index directly
        self._ctx_lo, self._ctx_hi = self._lo[2], self._hi[2]
        self._cache: dict[tuple[int, int], tuple] = {}

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_profile(
        cls,
        profile: LatencyProfile,
        source: str | None = None,
        *,
        strict: bool = False,
        stat: Literal["p50", "min"] = "p50",
    ) -> LatencyModel:
        """Build the model from a validated profile.

        Args:
            profile: the latency profile (its ``points``).
            source: the file it came from, named in extrapolation errors.
            strict: raise :class:`ExtrapolationError` on any off-grid query.
            stat: which statistic of each point to interpolate.

        Returns:
            The model.
        """
        axes = [sorted({getattr(p, k) for p in profile.points}) for k in _AXES]
        index = [{v: i for i, v in enumerate(a)} for a in axes]
        shape = tuple(len(a) for a in axes)
        raw = np.full(shape, np.nan)
        for p in profile.points:
            raw[tuple(index[k][getattr(p, name)] for k, name in enumerate(_AXES))] = getattr(
                p.latency_ms, stat
            )
        measured = ~np.isnan(raw)
        return cls(*(np.array(a) for a in axes), raw, measured, source=source, strict=strict)

    @classmethod
    def from_path(cls, path: str | Path, *, strict: bool = False) -> LatencyModel:
        """Load a latency profile YAML and build the model.

        Raises:
            InputError: the file is missing or not a valid latency profile.
        """
        return cls.from_profile(load_latency_profile(path), source=str(path), strict=strict)

    # ----------------------------------------------------------------- queries

    def forward_ms(self, batch: int, query_tokens: int, context_tokens: float) -> float:
        """Milliseconds for one forward (see the module docstring for the rules)."""
        sl = self._cache.get((batch, query_tokens))
        if sl is None:
            sl = self._slice(batch, query_tokens)
        ys, slopes, bad = sl
        c = context_tokens
        i = bisect_right(self._ctx_inner, c)
        v = ys[i] + slopes[i] * (c - self._ctx[i])
        if (bad is not None and bad[i]) or c < self._ctx_lo or c > self._ctx_hi:
            self._flag(batch, query_tokens, c)
            if v < self._floor_ms:
                v = self._floor_ms
        return v

    def _slice(self, batch: int, query: int) -> tuple:
        """The curve over contexts for one (batch, query): values, segment slopes, and a
        per-segment off-grid flag (None when every segment is on measured cells)."""
        if batch < 1 or query < 1:
            raise InputError(f"batch and query_tokens must be >= 1, got {batch} and {query}")
        bx, qx = self._aug_axes[0], self._aug_axes[1]
        b_eff, q_eff = float(batch), float(query)
        # A one-value batch (query) axis cannot give a slope: trade batch for query tokens
        # at equal total tokens, so the query (batch) axis carries the extrapolation.
        if len(bx) == 1 and len(qx) > 1:
            b_eff, q_eff = bx[0], q_eff * b_eff / bx[0]
        elif len(qx) == 1 and len(bx) > 1:
            b_eff, q_eff = b_eff * q_eff / qx[0], qx[0]
        b0, b1, tb, _ = axis_weights(bx, b_eff)
        q0, q1, tq, _ = axis_weights(qx, q_eff)
        off = not (self._lo[0] <= batch <= self._hi[0] and self._lo[1] <= query <= self._hi[1])
        g = self._aug_grid
        m = self._aug_measured
        curve = (
            (1 - tb) * (1 - tq) * g[b0, q0]
            + tb * (1 - tq) * g[b1, q0]
            + (1 - tb) * tq * g[b0, q1]
            + tb * tq * g[b1, q1]
        )
        if len(bx) == 1 and len(qx) == 1:  # both single: proportional in tokens above
            curve = g[0, 0] * max(1.0, batch * query / (bx[0] * qx[0]))
        # Safety net: weights outside [0, 1] (beyond the far nodes) must not bend it down.
        curve = np.maximum.accumulate(curve)
        # Corners that carry weight must be measured at both ends of a context segment.
        ok = np.ones(len(self._ctx), bool)
        for bi, qi, w in (
            (b0, q0, (1 - tb) * (1 - tq)),
            (b1, q0, tb * (1 - tq)),
            (b0, q1, (1 - tb) * tq),
            (b1, q1, tb * tq),
        ):
            if abs(w) > 1e-12:
                ok &= m[bi, qi]
        seg_ok = ok[:-1] & ok[1:]
        bad = None if (seg_ok.all() and not off) else [off or not s for s in seg_ok.tolist()]
        ys = curve.tolist()
        slopes = (np.diff(curve) / self._ctx_dx).tolist()
        sl = (ys, slopes, bad if bad is None or any(bad) else None)
        if len(self._cache) >= _MAX_CACHED_SLICES:
            self._cache.clear()
        self._cache[(batch, query)] = sl
        return sl

    def _flag(self, batch: int, query: int, context: float) -> None:
        """Count an off-grid query, keep the worst, or raise in strict mode."""
        score = 1.0
        for x, axis in zip((batch, query, context), self.axes, strict=True):
            lo, hi = float(axis[0]), float(axis[-1])
            if x > hi:
                score = max(score, (x + 1.0) / (hi + 1.0))
            elif x < lo:
                score = max(score, (lo + 1.0) / (x + 1.0))
        if self.strict:
            raise ExtrapolationError(
                f"{self.source or 'latency profile'}: query batch={batch} query_tokens={query} "
                f"context_tokens={context:g} is off the measured grid ({self.grid_summary()})"
            )
        self.extrapolated += 1
        if score > self._worst_score:
            self._worst_score = score
            self.worst_extrapolation = (batch, query, context)

    # ----------------------------------------------------------------- reporting

    def grid_summary(self) -> str:
        """The grid's ranges, e.g. ``batch 1..256, query_tokens 1..8192, ...``."""
        return (
            ", ".join(
                f"{name} {a[0]:g}..{a[-1]:g}" for name, a in zip(_AXES, self.axes, strict=True)
            )
            + f", {int(self.measured.sum())} measured points"
        )

    def extrapolation_report(self) -> dict:
        """Counter and worst off-grid query, for the simulator's result."""
        return {
            "extrapolated_calls": self.extrapolated,
            "worst": None
            if self.worst_extrapolation is None
            else dict(zip(_AXES, self.worst_extrapolation, strict=True)),
            "grid": self.grid_summary(),
        }

    @cached_property
    def _cv(self) -> tuple[float, float, int]:
        vals = np.where(self.measured, self._raw, 0.0)
        errs = []
        for idx in map(tuple, np.argwhere(self.measured)):
            est = [
                v
                for ax in range(3)
                if (v := bracket_interp(self.axes, vals, self.measured, idx, ax)) is not None
            ]
            if est:
                y = vals[idx]
                errs.append(abs(float(np.mean(est)) - y) / y)
        if not errs:
            return math.nan, math.nan, 0
        return float(np.mean(errs) * 100.0), float(np.max(errs) * 100.0), len(errs)

    @property
    def cv_error_pct(self) -> float:
        """Leave-one-out mean absolute % error over interior grid points (NaN if none)."""
        return self._cv[0]

    @property
    def cv_max_error_pct(self) -> float:
        return self._cv[1]

    @property
    def cv_points(self) -> int:
        return self._cv[2]

    def fit_params(self) -> dict:
        """What a profile's ``fit.params`` records about this model."""
        return {
            "cv_method": "leave-one-out over interior grid points, linear interpolation "
            "from bracketing measured neighbours (2x grid spacing)",
            "cv_points": self.cv_points,
            "cv_max_error_pct": round(self.cv_max_error_pct, 3),
            "monotone_adjust_pct": round(self.monotone_adjust_pct, 3),
            "interpolation": "multilinear in raw batch, query_tokens, context_tokens",
        }

    def __repr__(self) -> str:
        return f"LatencyModel({self.source or '?'}: {self.grid_summary()})"


_AXES = ("batch", "query_tokens", "context_tokens")

FIT_KIND = "monotone-multilinear-grid"
