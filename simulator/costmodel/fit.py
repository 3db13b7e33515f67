"""Fit the calibrated cost model's efficiencies on public measurements, and measure its
leave-one-source-out error.

Parameters (:class:`~.price.CostParams`): 4 per GPU generation (tied to their means) and 7
shared:

- per generation (ampere, ada, hopper, blackwell): ``bw_eff``, ``gemm_eff``,
  ``sharpness`` (GEMM efficiency as a function of M, with the tile padding of
  :mod:`.work`) and ``layer_us``;
- shared: ``attn_eff``, ``kv_eff``, ``allreduce_us``, ``link_eff``, ``lowp_gemm_rel``,
  ``seq_us``, and ``ttft_ms`` — the engine/client overhead in a time to first token, which
  is not part of a forward and not in the profiles.

``forward_us`` is 0: a fixed cost per forward is not identifiable beside ``layer_us`` (a
free fit drove it to its bound). ``eager_layer_us`` is set from one source, not fitted.
The per-generation values are tied to shared means by a prior (a residual
``LOSS_SCALE · (θ_gen − θ_mean) / prior_sd`` in logit or log units — one standard
deviation costs what one point off by the loss scale costs): a generation with few points
stays near the mean, and one with none (Blackwell; Ada when its only source is held out)
takes the mean — its spec sheet does the rest. ``prior_sd`` is chosen among
:data:`PRIOR_SD_CANDIDATES` by leave-one-source-out on the data being fitted
(:func:`select_prior_sd`).

Objective: log(predicted / measured) of every fitted observation (categories ``decode``,
``prefill`` and single-GPU ``static`` batches, :mod:`.observations`), each weighted by
``1/sqrt(n)`` for the ``n`` points its source has in that category (a 60-point sweep
counts like ~8 single figures, not 60), with a soft-L1 loss (scale 5%) against outliers.

Leave-one-source-out: for each independence group of sources (:mod:`.observations`), fit
on the other groups — choosing ``prior_sd`` by an inner leave-one-source-out on those
groups only — and predict the group's points; the errors reported are those held-out
predictions. Speculative-decoding measurements are never fitted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from ..hardware import DEVICES
from .catalog import get_model
from .dtypes import KV_DTYPE_BYTES, get_weight_dtype
from .observations import FITTED, Observation
from .price import ROOFLINE_PARAMS, CostParams, WorkArrays, seconds, stack
from .work import forward_work

GENERATIONS = ("ampere", "ada", "hopper", "blackwell")
PER_GEN = ("bw_eff", "gemm_eff", "layer_us", "sharpness")
SHARED = (
    "attn_eff",
    "kv_eff",
    "allreduce_us",
    "link_eff",
    "lowp_gemm_rel",
    "seq_us",
    "ttft_ms",
)
# Prior standard deviation of a generation's parameters around their mean (logit / log
# units), chosen among these by leave-one-source-out on the training data (nested when the
# error is measured): small values tie the generations together, large ones free them.
PRIOR_SD_CANDIDATES = (0.05, 0.15, 0.5, 1.5)
LOSS_SCALE = 0.05  # soft-L1 scale: residuals (weighted log errors) beyond ~5% count linearly
# Per layer without CUDA graphs, for serving engines: SGLang PR 1401's eager-minus-graph
# step time of Llama-3-8B (2.22 ms triton, 0.88 ms flashinfer) / 32 layers, the mean.
EAGER_LAYER_US = 48.0
# (low, start, high) of each parameter; efficiencies are fitted as logits, the rest as logs
_BOUNDS = {
    "bw_eff": (0.3, 0.8, 0.95),
    "gemm_eff": (0.2, 0.6, 0.95),
    "attn_eff": (0.1, 0.4, 0.9),
    "kv_eff": (0.3, 0.8, 0.95),
    "sharpness": (1.0, 3.0, 12.0),
    "layer_us": (0.5, 10.0, 200.0),
    "allreduce_us": (1.0, 15.0, 200.0),
    "lowp_gemm_rel": (0.3, 0.8, 1.0 - 1e-6),
    "link_eff": (0.05, 0.5, 0.95),
    "seq_us": (0.01, 1.0, 100.0),
    "ttft_ms": (0.01, 2.0, 50.0),
}
_LOGIT = ("bw_eff", "gemm_eff", "attn_eff", "kv_eff", "lowp_gemm_rel", "link_eff")


def _to_x(name: str, v: float) -> float:
    return math.log(v / (1 - v)) if name in _LOGIT else math.log(v)


def _from_x(name: str, x: np.ndarray | float) -> np.ndarray | float:
    return 1 / (1 + np.exp(-x)) if name in _LOGIT else np.exp(x)


@dataclass(frozen=True)
class Prediction:
    """How an observation's value follows from forward times (ms): ``time = Σ c_i·f_i``;
    measured times compare directly, throughputs as ``numerator / time``."""

    forwards: tuple[tuple[float, int], ...]  # (coefficient, index into the stacked forwards)
    numerator: float | None  # tokens for a throughput; None for a time
    ttft: bool = False  # a time to first token: + the engine/client overhead


@dataclass
class Problem:
    observations: list[Observation]
    predictions: list[Prediction]
    arrays: WorkArrays
    gen_index: np.ndarray  # [F] generation of each forward
    eager: np.ndarray  # [F] bool


def build_problem(obs: list[Observation], *, padded: bool = True) -> Problem:
    """Work of every forward the observations need, stacked once."""
    keys: dict[tuple, int] = {}
    works, devices, eager = [], [], []

    def fwd(o: Observation, b: int, q: int, ctx: float) -> int:
        key = (o.device, o.model, o.tp, o.dtype, b, q, round(ctx, 3), o.eager)
        if key not in keys:
            dev = DEVICES[o.device]
            works.append(
                forward_work(
                    dev,
                    get_model(o.model),
                    o.tp,
                    get_weight_dtype(o.dtype, dev),
                    KV_DTYPE_BYTES[o.kv_dtype],
                    b,
                    q,
                    ctx,
                )
            )
            devices.append(dev)
            eager.append(o.eager)
            keys[key] = len(works) - 1
        return keys[key]

    preds = []
    for o in obs:
        if o.category == "prefill":
            preds.append(Prediction(((1.0, fwd(o, 1, o.input_len, 0.0)),), None, ttft=True))
        elif o.category.startswith("static"):
            steps = max(o.output_len - 1, 0)
            parts = [(1.0, fwd(o, o.batch, o.input_len, 0.0))]
            if steps:
                parts.append((float(steps), fwd(o, o.batch, 1, o.context)))
            tokens = o.batch * o.output_len / (o.tp if o.per_gpu else 1)
            preds.append(Prediction(tuple(parts), tokens * 1e3))  # tokens per ms -> per s
        else:
            parts = [(1.0, fwd(o, o.batch, 1, o.context))]
            if o.others_prefill:
                parts.append((o.others_prefill, fwd(o, 1, o.input_len, 0.0)))
                parts.append((-o.others_prefill, fwd(o, 1, 1, 0.0)))
            preds.append(Prediction(tuple(parts), None))
    arrays = stack(works, devices, padded=padded)
    gens = np.array([GENERATIONS.index(d.generation) for d in devices])
    return Problem(obs, preds, arrays, gens, np.array(eager, dtype=bool))


@dataclass(frozen=True)
class Calibration:
    """Fitted parameters per generation (and what they were fitted on)."""

    params: dict[str, CostParams]  # generation -> parameters
    ttft_overhead_ms: float  # engine/client overhead in a time to first token (not a forward)
    groups: tuple[str, ...]  # independence groups fitted
    points: int
    prior_sd: float = 0.0  # width of the per-generation prior the fit used


class _Layout:
    """Maps the optimiser's vector to per-generation and shared parameters."""

    def __init__(self) -> None:
        self.names: list[tuple[str, str]] = []  # (parameter, "mean" | generation | "shared")
        for p in PER_GEN:
            self.names += [(p, "mean")] + [(p, g) for g in GENERATIONS]
        self.names += [(p, "shared") for p in SHARED]

    def x0(self) -> np.ndarray:
        return np.array([_to_x(p, _BOUNDS[p][1]) for p, _ in self.names])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = [_to_x(p, _BOUNDS[p][0]) for p, _ in self.names]
        hi = [_to_x(p, _BOUNDS[p][2]) for p, _ in self.names]
        return np.array(lo), np.array(hi)

    def values(self, x: np.ndarray) -> dict[tuple[str, str], float]:
        return {k: float(_from_x(k[0], v)) for k, v in zip(self.names, x, strict=True)}

    def prior_residuals(self, x: np.ndarray, prior_sd: float) -> np.ndarray:
        idx = {k: i for i, k in enumerate(self.names)}
        return np.array(
            [
                LOSS_SCALE * (x[idx[(p, g)]] - x[idx[(p, "mean")]]) / prior_sd
                for p in PER_GEN
                for g in GENERATIONS
            ]
        )


def _forward_ms(problem: Problem, params: dict[str, CostParams]) -> np.ndarray:
    """Milliseconds of every stacked forward, each with its generation's parameters."""
    rows = [params[GENERATIONS[g]] for g in problem.gen_index]
    return seconds(problem.arrays, rows, problem.eager)["total"] * 1e3


def predict(problem: Problem, fwd_ms: np.ndarray, ttft_ms: float) -> np.ndarray:
    """Predicted values (ms or tokens/s) of the problem's observations."""
    out = np.empty(len(problem.predictions))
    for i, pr in enumerate(problem.predictions):
        t = sum(c * fwd_ms[j] for c, j in pr.forwards) + (ttft_ms if pr.ttft else 0.0)
        out[i] = t if pr.numerator is None else pr.numerator / t
    return out


def _weights(obs: list[Observation]) -> np.ndarray:
    n = Counter((o.source_id, o.category) for o in obs)
    return np.array([1.0 / math.sqrt(n[(o.source_id, o.category)]) for o in obs])


def _params(v: dict[tuple[str, str], float]) -> dict[str, CostParams]:
    return {
        g: CostParams(
            bw_eff=v[("bw_eff", g)],
            gemm_eff=v[("gemm_eff", g)],
            attn_eff=v[("attn_eff", "shared")],
            sharpness=v[("sharpness", g)],
            layer_us=v[("layer_us", g)],
            forward_us=0.0,
            allreduce_us=v[("allreduce_us", "shared")],
            link_eff=v[("link_eff", "shared")],
            eager_layer_us=EAGER_LAYER_US,
            lowp_gemm_rel=v[("lowp_gemm_rel", "shared")],
            seq_us=v[("seq_us", "shared")],
            kv_eff=v[("kv_eff", "shared")],
        )
        for g in GENERATIONS
    }


def fit(obs: list[Observation], prior_sd: float = 0.15) -> Calibration:
    """Fit on the fitted categories of ``obs`` (module docstring) with a given prior width."""
    problem = build_problem([o for o in obs if o.category in FITTED])
    measured = np.array([o.measured for o in problem.observations])
    w = _weights(problem.observations)
    layout = _Layout()

    def residuals(x: np.ndarray) -> np.ndarray:
        v = layout.values(x)
        pred = predict(problem, _forward_ms(problem, _params(v)), v[("ttft_ms", "shared")])
        return np.concatenate([w * np.log(pred / measured), layout.prior_residuals(x, prior_sd)])

    lo, hi = layout.bounds()
    res = least_squares(
        residuals,
        layout.x0(),
        bounds=(lo, hi),
        loss="soft_l1",
        f_scale=LOSS_SCALE,
        x_scale="jac",
        ftol=1e-12,
        xtol=1e-12,
        gtol=1e-12,
        max_nfev=2000,
    )
    groups = tuple(sorted({o.group for o in problem.observations}))
    v = layout.values(res.x)
    ttft = v[("ttft_ms", "shared")]
    return Calibration(_params(v), ttft, groups, len(problem.observations), prior_sd)


def predict_with(cal: Calibration, obs: list[Observation], *, padded: bool = True) -> np.ndarray:
    """Predictions of ``obs`` (any category) with a calibration (``padded``: price executed
    FLOPs; False for the pure roofline)."""
    problem = build_problem(obs, padded=padded)
    return predict(problem, _forward_ms(problem, cal.params), cal.ttft_overhead_ms)


def roofline_predictions(obs: list[Observation]) -> np.ndarray:
    """The pure roofline's predictions of the same observations (for comparison; eager
    observations priced as if graphed, as the roofline knows no eager mode)."""
    flat = [replace(o, eager=False) for o in obs]
    roof = Calibration({g: ROOFLINE_PARAMS for g in GENERATIONS}, 0.0, (), 0)
    return predict_with(roof, flat, padded=False)


def _loso_predictions(obs: list[Observation], prior_sd: float) -> np.ndarray:
    preds = np.full(len(obs), np.nan)
    for group in sorted({o.group for o in obs}):
        cal = fit([o for o in obs if o.group != group], prior_sd)
        idx = [i for i, o in enumerate(obs) if o.group == group]
        preds[idx] = predict_with(cal, [obs[i] for i in idx])
    return preds


def select_prior_sd(
    obs: list[Observation], candidates: tuple[float, ...] = PRIOR_SD_CANDIDATES
) -> float:
    """The prior width whose leave-one-source-out predictions of ``obs`` (fitted
    categories) have the smallest weighted mean |log error| (weights as in the fit)."""
    use = [o for o in obs if o.category in FITTED]
    if len(candidates) == 1 or len({o.group for o in use}) < 3:
        return candidates[0] if len(candidates) == 1 else sorted(candidates)[len(candidates) // 2]
    measured = np.array([o.measured for o in use])
    w2 = _weights(use) ** 2
    scores = [
        float(np.sum(w2 * np.abs(np.log(_loso_predictions(use, sd) / measured))) / w2.sum())
        for sd in candidates
    ]
    return candidates[int(np.argmin(scores))]


def leave_one_group_out(
    obs: list[Observation],
    progress: Callable[[str], None] | None = None,
    candidates: tuple[float, ...] = PRIOR_SD_CANDIDATES,
) -> tuple[np.ndarray, dict[str, Calibration]]:
    """Held-out predictions of every observation: each group's points predicted by a fit on
    the other groups' fitted categories, with the prior width selected on those groups
    alone (nested). Returns (predictions aligned with ``obs``, the fit used per group)."""
    preds = np.full(len(obs), np.nan)
    fits = {}
    for group in sorted({o.group for o in obs}):
        if progress:
            progress(group)
        train = [o for o in obs if o.group != group]
        cal = fit(train, select_prior_sd(train, candidates))
        idx = [i for i, o in enumerate(obs) if o.group == group]
        preds[idx] = predict_with(cal, [obs[i] for i in idx])
        fits[group] = cal
    return preds, fits
