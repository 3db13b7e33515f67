"""The price of a forward's work on a device: seconds from bytes, FLOPs and collectives.

Each linear-layer type and each attention type is one kernel (summed over layers), bound by
memory or by compute:

    t_op = smoothmax(bytes / (W·bw_eff), flops_exec / (F·eff); p),  (attention: kv_eff)
    smoothmax(a, c; p) = (a^p + c^p)^(1/p)

— the per-kernel roofline when ``p = ∞`` (the pure roofline prices ``flops`` instead of the
tile-padded ``flops_exec``), and with finite ``p`` the soft transition real kernels show
around the ridge (a GEMM near its ridge neither streams weights at full bandwidth nor keeps
the tensor cores busy). ``eff`` is ``gemm_eff`` for linear layers, ``attn_eff`` for
attention. Then

    total = Σ t_op + other_bytes / (W·bw_eff) + layers·layer_us + forward_us + B·seq_us
            [+ layers·eager_layer_us without CUDA graphs]
            + collectives·allreduce_us + comm_bytes / (link·link_eff)

W, F: the device's peak memory bandwidth and dense tensor-core throughput of the GEMMs'
compute type (attention runs in bf16). :class:`CostParams` holds the efficiencies: fixed
for the roofline (:data:`ROOFLINE_PARAMS`), fitted per GPU generation for the calibrated
model (:mod:`.fit`).

Units: seconds inside, milliseconds in :class:`ForwardBreakdown`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..hardware import DeviceSpec
from .work import ForwardWork


@dataclass(frozen=True)
class CostParams:
    """Efficiencies and fixed costs of one GPU generation.

    Attributes:
        bw_eff: achieved / peak memory bandwidth of streaming kernels (weights, KV,
            activations).
        gemm_eff: achieved / peak tensor-core throughput of large GEMMs.
        attn_eff: the same for attention kernels.
        sharpness: p of the smooth max between the memory and compute time of a kernel
            (``inf``: the hard max of the roofline).
        layer_us: fixed µs per decoder layer per forward with CUDA graphs (kernel gaps,
            ramp-up and tail of the ~10 kernels of a layer).
        forward_us: fixed µs per forward (embedding, final norm, sampling, host sync).
        allreduce_us: fixed µs per collective (None: the device's link latency).
        link_eff: achieved / peak link bandwidth of collectives.
        eager_layer_us: extra µs per layer when the engine launches kernels eagerly.
        lowp_gemm_rel: efficiency of fp8/fp4 GEMMs relative to ``gemm_eff`` (their peak
            is 2-4x bf16's, but activation quantisation and scaling epilogues keep them
            further from it).
        kv_eff: achieved / peak memory bandwidth of attention kernels streaming the KV
            cache (None: ``bw_eff``).
        seq_us: fixed µs per sequence per forward (per-sequence work outside the
            kernels' bytes and FLOPs: sampling, input preparation, attention metadata).
    """

    bw_eff: float
    gemm_eff: float
    attn_eff: float
    sharpness: float
    layer_us: float
    forward_us: float
    allreduce_us: float | None
    link_eff: float
    eager_layer_us: float = 0.0
    lowp_gemm_rel: float = 1.0
    seq_us: float = 0.0
    kv_eff: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


# The pure roofline's factors (chosen once, not fitted; hwprofiles/README.md says why):
# 1.5 µs per kernel × (9 kernels per layer + 4 per forward).
ROOFLINE_PARAMS = CostParams(
    bw_eff=0.80,
    gemm_eff=0.70,
    attn_eff=0.50,
    sharpness=math.inf,
    layer_us=9 * 1.5,
    forward_us=4 * 1.5,
    allreduce_us=None,
    link_eff=0.70,
)


@dataclass(frozen=True)
class ForwardBreakdown:
    """Components of one forward's time, in ms (``total_ms`` is their sum)."""

    gemm_ms: float
    gemm_bound: str  # "compute" or "memory"
    attention_ms: float
    attention_bound: str
    other_memory_ms: float
    overhead_ms: float
    allreduce_ms: float
    total_ms: float


def smoothmax(a: np.ndarray | float, c: np.ndarray | float, p: np.ndarray | float) -> np.ndarray:
    """``(a^p + c^p)^(1/p)`` computed stably (``p = inf``: ``max(a, c)``); ``p`` may be an
    array broadcasting against ``a`` and ``c``."""
    a, c = np.asarray(a, dtype=float), np.asarray(c, dtype=float)
    hi, lo = np.maximum(a, c), np.minimum(a, c)
    if np.all(np.isinf(p)):
        return hi
    ratio = np.divide(lo, hi, out=np.zeros_like(hi), where=hi > 0)
    return hi * (1.0 + ratio**p) ** (1.0 / p)


@dataclass(frozen=True)
class WorkArrays:
    """Forwards stacked for vectorised pricing: [F] per forward, [F, ops] per kernel."""

    gemm_bytes: np.ndarray
    gemm_flops: np.ndarray
    attn_bytes: np.ndarray
    attn_flops: np.ndarray
    other_bytes: np.ndarray
    layers: np.ndarray
    sequences: np.ndarray
    allreduces: np.ndarray
    comm_bytes: np.ndarray
    bw: np.ndarray  # peak memory bandwidth, bytes/s
    gemm_peak: np.ndarray  # peak FLOP/s of the GEMMs' compute type
    attn_peak: np.ndarray  # peak bf16 FLOP/s
    link_bw: np.ndarray  # bytes/s
    link_latency_us: np.ndarray
    lowp: np.ndarray  # [F] GEMMs run in fp8/fp4


def stack(works: list[ForwardWork], devices: list[DeviceSpec], *, padded: bool) -> WorkArrays:
    """Stack forwards (each on its device) into :class:`WorkArrays` (``padded``: executed
    FLOPs, else useful FLOPs)."""
    g = max(len(w.gemms) for w in works)
    a = max(max(len(w.attention) for w in works), 1)

    def mat(rows: list[list[float]], width: int) -> np.ndarray:
        out = np.zeros((len(rows), width))
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def vec(values: list[float]) -> np.ndarray:
        return np.asarray(values, dtype=float)

    return WorkArrays(
        gemm_bytes=mat([[x.weight_bytes for x in w.gemms] for w in works], g),
        gemm_flops=mat([[x.flops_exec if padded else x.flops for x in w.gemms] for w in works], g),
        attn_bytes=mat([[x.kv_bytes for x in w.attention] for w in works], a),
        attn_flops=mat(
            [[x.flops_exec if padded else x.flops for x in w.attention] for w in works], a
        ),
        other_bytes=vec([w.other_bytes for w in works]),
        layers=vec([w.layers for w in works]),
        sequences=vec([w.sequences for w in works]),
        allreduces=vec([w.allreduces for w in works]),
        comm_bytes=vec([w.comm_bytes for w in works]),
        bw=vec([d.memory_bw_gb_s * 1e9 for d in devices]),
        gemm_peak=vec(
            [d.peak_tflops(w.compute) * 1e12 for w, d in zip(works, devices, strict=True)]
        ),
        attn_peak=vec([d.bf16_tflops * 1e12 for d in devices]),
        link_bw=vec([d.link_bw_gb_s * 1e9 for d in devices]),
        link_latency_us=vec([d.link_latency_us for d in devices]),
        lowp=np.array([w.compute != "bf16" for w in works]),
    )


def _field(params: CostParams | list[CostParams], name: str) -> np.ndarray | float | None:
    """One parameter: a scalar, or [F] when ``params`` holds one CostParams per forward."""
    if isinstance(params, CostParams):
        return getattr(params, name)
    values = [getattr(p, name) for p in params]
    return None if values[0] is None else np.array(values, dtype=float)


def seconds(
    wa: WorkArrays,
    params: CostParams | list[CostParams],
    eager: np.ndarray | bool = False,
) -> dict[str, np.ndarray]:
    """Seconds of each component of each stacked forward (the module docstring's formula).

    Args:
        wa: the stacked forwards.
        params: one CostParams for all, or one per forward (e.g. each one's generation).
        eager: add ``eager_layer_us`` per layer (per forward, or for all).

    Returns:
        ``gemm``, ``attention``, ``other``, ``overhead``, ``comm`` and ``total`` arrays [F],
        plus the summed memory and compute times of the GEMMs and attention (``*_mem``,
        ``*_cmp``) for labelling bounds.
    """
    f = {name: _field(params, name) for name in CostParams.__dataclass_fields__}
    bw_eff, gemm_eff, attn_eff, kv_eff = f["bw_eff"], f["gemm_eff"], f["attn_eff"], f["kv_eff"]
    sharpness = np.asarray(f["sharpness"], dtype=float)
    if sharpness.ndim:
        sharpness = sharpness[:, None]
    layer_us = f["layer_us"] + np.where(eager, f["eager_layer_us"], 0.0)
    forward_us, seq_us, allreduce_us = f["forward_us"], f["seq_us"], f["allreduce_us"]
    link_eff, lowp_gemm_rel = f["link_eff"], f["lowp_gemm_rel"]
    bw = wa.bw * bw_eff
    g_mem = wa.gemm_bytes / bw[:, None]
    g_eff = np.where(wa.lowp, lowp_gemm_rel, 1.0) * gemm_eff
    g_cmp = wa.gemm_flops / (wa.gemm_peak * g_eff)[:, None]
    kv_bw = bw if kv_eff is None else wa.bw * kv_eff
    a_mem = wa.attn_bytes / kv_bw[:, None]
    a_cmp = wa.attn_flops / (wa.attn_peak * attn_eff)[:, None]
    out = {
        "gemm": smoothmax(g_mem, g_cmp, sharpness).sum(axis=1),
        "attention": smoothmax(a_mem, a_cmp, sharpness).sum(axis=1),
        "other": wa.other_bytes / bw,
        "overhead": (wa.layers * layer_us + forward_us + wa.sequences * seq_us) * 1e-6,
        "gemm_mem": g_mem.sum(axis=1),
        "gemm_cmp": g_cmp.sum(axis=1),
        "attn_mem": a_mem.sum(axis=1),
        "attn_cmp": a_cmp.sum(axis=1),
    }
    lat = wa.link_latency_us if allreduce_us is None else allreduce_us
    out["comm"] = wa.allreduces * lat * 1e-6 + wa.comm_bytes / (wa.link_bw * link_eff)
    out["total"] = out["gemm"] + out["attention"] + out["other"] + out["overhead"] + out["comm"]
    return out


def price(
    work: ForwardWork,
    device: DeviceSpec,
    params: CostParams,
    *,
    padded: bool = True,
    eager: bool = False,
) -> ForwardBreakdown:
    """Milliseconds of one forward's work on ``device``.

    Args:
        work: what the forward does (:func:`~.work.forward_work`).
        device: the GPU.
        params: efficiencies and fixed costs.
        padded: price the tensor cores' executed FLOPs (tile and wave quantisation);
            False prices the useful FLOPs (the pure roofline).
        eager: add ``eager_layer_us`` per layer (no CUDA graphs).

    Returns:
        The breakdown.
    """
    s = seconds(stack([work], [device], padded=padded), params, eager)
    v = {k: float(x[0]) for k, x in s.items()}
    return ForwardBreakdown(
        gemm_ms=v["gemm"] * 1e3,
        gemm_bound="compute" if v["gemm_cmp"] > v["gemm_mem"] else "memory",
        attention_ms=v["attention"] * 1e3,
        attention_bound="compute" if v["attn_cmp"] > v["attn_mem"] else "memory",
        other_memory_ms=v["other"] * 1e3,
        overhead_ms=v["overhead"] * 1e3,
        allreduce_ms=v["comm"] * 1e3,
        total_ms=v["total"] * 1e3,
    )
