"""Latency profiles (``spectune/latency/v1``) from the GPU cost model, and the set shipped in
hwprofiles/.

:func:`cost_profile` prices the standard grid with a :class:`~.model.GpuCostModel` and
fills the profile's header: device (dtype, KV dtype, memory, TP), model (architecture
numbers, weight bytes, KV elements per token, experts), provenance (``calibrated`` with
the fitted parameters and the held-out error, or ``roofline`` with its fixed factors).
The simulator reads these profiles like measured ones (``simulator/latency.py``).

Shipped (:data:`SHIPPED`): every catalogue model on every device at the smallest
tensor-parallel degree whose weights take at most ``TP_HEADROOM`` of a GPU's memory (the
rest is KV cache), Llama-3.1-70B at tp 4 and 8 as before; heads at their target's degree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from spectune import __version__

from ..errors import InputError
from ..hardware import DEVICES, DeviceSpec
from ..latency import FIT_KIND, LatencyModel
from ..profile_schema import (
    DeviceInfo,
    LatencyFit,
    LatencyPoint,
    LatencyProfile,
    LatencyStats,
    ModelArch,
    Provenance,
)
from .calibration import ShippedCalibration, shipped
from .catalog import get_model
from .model import GIB, GpuCostModel, calibrated_model

# The profile grid. Decode/verify at any batch, chunked prefill at small batch; points
# with batch × query above MAX_GRID_TOKENS are pruned (no engine batches that many tokens).
GRID_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GRID_QUERY = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
GRID_CONTEXT = (0, 128, 512, 2048, 8192, 32768, 131072)
MAX_GRID_TOKENS = 16384
TP_HEADROOM = 0.65  # weights may take this share of a GPU's memory in shipped profiles


@dataclass(frozen=True)
class Shipped:
    """One shipped profile: file ``<device>/<file_slug>.yaml`` of catalogue ``model`` at
    ``tp`` (0 = the smallest degree within ``TP_HEADROOM``; heads take their target's)."""

    model: str
    tp: int = 0
    target: str | None = None


SHIPPED = (
    Shipped("llama-3.1-8b"),
    Shipped("llama-3.2-1b"),
    Shipped("llama-3.1-70b", tp=4),
    Shipped("llama-3.1-70b", tp=8),
    Shipped("qwen3-8b"),
    Shipped("qwen3-32b"),
    Shipped("qwen3-30b-a3b"),
    Shipped("glm-4.5-air"),
    Shipped("eagle-llama-3.1-8b", target="llama-3.1-8b"),
    Shipped("eagle3-llama-3.1-8b", target="llama-3.1-8b"),
    Shipped("eagle3-llama-3.1-70b", tp=4, target="llama-3.1-70b"),
    Shipped("eagle3-llama-3.1-70b", tp=8, target="llama-3.1-70b"),
    Shipped("mtp-glm-4.5-air", target="glm-4.5-air"),
)


def auto_tp(device: DeviceSpec, model: str, dtype: str = "bf16") -> int:
    """Smallest tp in 1, 2, 4, 8 whose weights per GPU fit ``TP_HEADROOM`` of memory.

    Raises:
        InputError: not even tp 8 fits.
    """
    shape = get_model(model)
    for tp in (1, 2, 4, 8):
        if shape.heads % tp:
            continue
        m = calibrated_model(device, shape, tp, dtype)
        if m.weight_bytes() / GIB / tp <= device.memory_gib * TP_HEADROOM:
            return tp
    raise InputError(f"{shape.name} does not fit 8 x {device.name}", field="--tp")


def shipped_profiles() -> list[tuple[str, str, str, int]]:
    """Every (device slug, file slug, catalogue model, tp) shipped, skipping combinations
    whose weights do not fit (``check_fits`` at 90% of memory)."""
    out = []
    for dev_slug, dev in DEVICES.items():
        for s in SHIPPED:
            tp = s.tp or auto_tp(dev, s.target or s.model)
            m = calibrated_model(dev, get_model(s.target or s.model), tp)
            try:
                m.check_fits()
            except InputError:
                continue
            file_slug = s.model + (f"-tp{tp}" if tp > 1 else "")
            out.append((dev_slug, file_slug, s.model, tp))
    return out


def grid_points() -> list[tuple[int, int, int]]:
    return [
        (b, q, c)
        for b in GRID_BATCH
        for q in GRID_QUERY
        if b * q <= MAX_GRID_TOKENS
        for c in GRID_CONTEXT
    ]


def _how(model: GpuCostModel, cal: ShippedCalibration | None) -> str:
    d = model.device
    base = (
        f"spectune {__version__} GPU cost model (simulator/costmodel): per forward and GPU, "
        "weight, KV and activation bytes, GEMM and attention FLOPs"
    )
    if model.kind == "calibrated":
        assert cal is not None
        c = cal.calibration
        return (
            f"{base} with tile/wave-padded tensor-core work, a smooth max between memory and "
            "compute time per kernel, per-layer and per-sequence fixed costs and tensor-"
            f"parallel collectives; efficiencies of the {d.generation} generation fitted on "
            f"{c.points} public decode/prefill measurements from {len(c.groups)} independent "
            f"source groups ({', '.join(c.groups)}; hwprofiles/calibration/). Device: "
            f"{d.name}, {d.memory_bw_gb_s:g} GB/s, {d.bf16_tflops:g} dense bf16 TFLOP/s "
            f"({d.source}). Speculative-decoding measurements were not fitted."
        )
    return (
        f"{base}, priced as the pure per-kernel roofline max(bytes / (bandwidth x "
        f"{model.params.bw_eff}), FLOPs / (peak x {model.params.gemm_eff})) + fixed costs; "
        f"factors chosen once, not fitted. Device: {d.name}, {d.memory_bw_gb_s:g} GB/s, "
        f"{d.bf16_tflops:g} dense bf16 TFLOP/s ({d.source})."
    )


def cost_profile(
    model: GpuCostModel,
    *,
    name: str | None = None,
    with_fit: bool = True,
    calibration: ShippedCalibration | None = None,
) -> LatencyProfile:
    """The latency profile of ``model`` over the standard grid.

    Args:
        model: the priced model (calibrated or roofline).
        name: display name (default: the shape's).
        with_fit: compute the grid interpolator's cross-validated error into ``fit``.
        calibration: the calibration a calibrated model came from (default: shipped).

    Returns:
        The validated profile.
    """
    pts = grid_points()
    ms = model.grid_ms([(b, q, float(c)) for b, q, c in pts])
    points = [
        LatencyPoint(
            batch=b,
            query_tokens=q,
            context_tokens=c,
            latency_ms=LatencyStats(min=v, p50=v, p90=v, n=1),
        )
        for (b, q, c), v in zip(pts, (round(float(x), 4) for x in ms), strict=True)
    ]
    shape, dev = model.shape, model.device
    cal = (calibration or shipped()) if model.kind == "calibrated" else None
    params = {k: (str(v) if v == float("inf") else v) for k, v in asdict(model.params).items()}
    profile = LatencyProfile(
        schema="spectune/latency/v1",
        device=DeviceInfo(
            name=dev.name,
            kind="gpu",
            dtype=model.dtype.profile_name,
            memory_gib=dev.memory_gib,
            count=model.tp,
            software={"spectune": __version__, "model": f"gpu-{model.kind}"},
            kv_dtype=model.kv_dtype,
        ),
        model=ModelArch(
            name=name or shape.name,
            params=shape.params(),
            layers=shape.layers,
            hidden=shape.hidden,
            heads=shape.heads,
            kv_heads=shape.kv_heads,
            vocab=shape.vocab,
            intermediate=shape.intermediate or None,
            head_dim=shape.head_dim,
            tensor_parallel=model.tp,
            kind=shape.head_kind,
            weight_bytes=round(model.weight_bytes()),
            kv_elements_per_token=shape.kv_bytes_per_token(1.0, model.tp),
            experts=shape.moe.experts if shape.moe else None,
            experts_per_token=shape.moe.experts_per_token if shape.moe else None,
            active_params=shape.active_params(),
        ),
        provenance=Provenance(
            kind=model.kind,  # type: ignore[arg-type]
            how=_how(model, cal),
            parameters=params,
            error={k: round(float(v), 3) for k, v in cal.error_summary().items()} if cal else None,
        ),
        points=points,
        notes=_notes(model),
    )
    if with_fit:
        lm = LatencyModel.from_profile(profile)
        fit = LatencyFit(
            kind=FIT_KIND, cv_error_pct=round(lm.cv_error_pct, 3), params=lm.fit_params()
        )
        profile = profile.model_copy(update={"fit": fit})
    return profile


def _notes(model: GpuCostModel) -> str:
    bd = model.breakdown(1, 1, 2048)
    shape = model.shape
    extra = ""
    if shape.shares_lm_head:
        extra = (
            " The head reads its target's lm_head every forward but does not hold it "
            "(model.params excludes it)."
        )
    if shape.moe is not None:
        extra += (
            f" MoE: {shape.moe.experts} routed experts, {shape.moe.experts_per_token} per "
            "token; a forward reads the experts its tokens touch (uniform routing)."
        )
    return (
        f"Decode at batch 1, context 2048: {bd.total_ms:.3f} ms per token "
        f"({1000 / bd.total_ms:.0f} tok/s). Grid: batch {GRID_BATCH[0]}..{GRID_BATCH[-1]}, "
        f"query {GRID_QUERY[0]}..{GRID_QUERY[-1]}, context {GRID_CONTEXT[0]}..{GRID_CONTEXT[-1]}, "
        f"points with batch x query > {MAX_GRID_TOKENS} pruned.{extra}"
    )


def write_profile(profile: LatencyProfile, path: str | Path) -> None:
    """Write a latency profile as YAML with one flow-style line per point (compact and
    diffable), header fields first; atomically, creating parent folders."""
    data = profile.model_dump(mode="json", by_alias=True, exclude_none=True)
    points = data.pop("points")
    head = yaml.safe_dump(data, sort_keys=False, width=100)
    lines = [
        f"- {{batch: {p['batch']}, query_tokens: {p['query_tokens']}, "
        f"context_tokens: {p['context_tokens']}, latency_ms: {{min: {p['latency_ms']['min']!r}, "
        f"p50: {p['latency_ms']['p50']!r}, p90: {p['latency_ms']['p90']!r}, "
        f"n: {p['latency_ms']['n']}}}}}"
        for p in points
    ]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(head + "points:\n" + "\n".join(lines) + "\n")
    tmp.replace(out)
