"""Roofline latency of one forward pass, and roofline latency profiles for hardware we lack.

One forward of ``batch`` (B) sequences × ``query_tokens`` (q) new tokens each, with
``context_tokens`` (ctx) tokens already cached per sequence, on a replica of ``tp``
GPUs (tensor parallel: weights, heads and KV heads split evenly; per-GPU numbers below).
With T = B·q tokens and D = 2 bytes (bf16):

- GEMMs (every linear layer, incl. the lm_head; logits for all q tokens, as in verify):
  ``max(2·P·T / (F·e_gemm), P·D / (W·e_mem))`` where P = weights read per forward / tp
  (the embedding table is only gathered, not read; a tied or shared lm_head is read).
- Attention: ``max(4·L·H·d·B·q·(ctx + (q+1)/2) / (F·e_attn),
  B·(ctx + q)·kv_bytes_per_token / (W·e_mem))`` (QKᵀ and PV; causal within the query).
- Other memory traffic (norms, activations, residuals, logits; memory-bound kernels):
  ``T·L·(8·hidden + (2·(heads+2·kv_heads)·d + 2·heads·d + 6·intermediate)/tp)·D
  + T·vocab/tp·4`` bytes at ``W·e_mem``.
- Fixed per forward: ``(9·L + 4)`` kernels × 1.5 µs (launch gaps and ramp/tail of each
  kernel that the roofline terms do not see, with CUDA graphs).
- Tensor parallel (tp > 1): 2 all-reduces per layer of ``T·hidden·D`` bytes and one
  all-gather of the logits, each ``link_latency + 2·(tp−1)/tp·bytes / (link_bw·e_link)``.

F, W: the device's peak dense bf16 FLOP/s and memory bandwidth (:mod:`.hardware`).
Summing the GEMM and attention rooflines (instead of one max over the whole forward) is
the per-kernel roofline: the kernels run one after the other, and at large batch the
GEMMs turn compute-bound while attention stays memory-bound.

Efficiency factors (:class:`Efficiency`, the same for every device — chosen once, not
fitted to any measurement):

- ``e_mem = 0.80``: achieved/peak memory bandwidth of well-tuned decode kernels
  (STREAM-like copies reach ~90% of HBM peak; GEMV and paged attention a bit less).
- ``e_gemm = 0.70``: large bf16 GEMMs in cuBLAS reach ~70% of dense peak on H100/A100.
- ``e_attn = 0.50``: FlashAttention-2/3 forward reaches ~40-75% of peak depending on the
  GPU and shapes; 0.5 is a middle value.
- ``e_link = 0.70``: NCCL bus bandwidth vs link peak for mid-size messages.
- 1.5 µs per kernel, 9 kernels per layer (2 norms, QKV, RoPE, attention, O, gate-up,
  activation, down) + 4 per forward (embedding, final norm, lm_head, sampling prep).

Units: ms for latencies unless a name says otherwise; bytes, FLOPs, seconds inside.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from spectune import __version__

from .errors import InputError
from .hardware import ARCHS, DEVICES, ArchSpec, DeviceSpec, get_arch, get_device
from .latency import FIT_KIND, LatencyModel
from .schema import (
    DeviceInfo,
    LatencyFit,
    LatencyPoint,
    LatencyProfile,
    LatencyStats,
    ModelArch,
    Provenance,
)

GIB = 1024**3

# The profile grid. Decode/verify at any batch, chunked prefill at small batch; points
# with batch × query above MAX_GRID_TOKENS are pruned (no engine batches that many tokens).
GRID_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
GRID_QUERY = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
GRID_CONTEXT = (0, 128, 512, 2048, 8192, 32768, 131072)
MAX_GRID_TOKENS = 16384

# What we ship: (device, model slug in the file name, architecture, tensor-parallel degree).
SHIPPED_MODELS = (
    ("llama-3.1-8b", "llama-3.1-8b", 1),
    ("llama-3.2-1b", "llama-3.2-1b", 1),
    ("llama-3.1-70b-tp4", "llama-3.1-70b", 4),
    ("llama-3.1-70b-tp8", "llama-3.1-70b", 8),
    ("eagle-llama-3.1-8b", "eagle-llama-3.1-8b", 1),
    ("llama-2-7b", "llama-2-7b", 1),
)


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of peak and fixed costs (see the module docstring for why)."""

    memory_bw: float = 0.80
    gemm_compute: float = 0.70
    attention_compute: float = 0.50
    link_bw: float = 0.70
    kernel_overhead_us: float = 1.5
    kernels_per_layer: int = 9
    kernels_per_forward: int = 4
    dtype_bytes: float = 2.0
    logits_bytes: float = 4.0

    def describe(self) -> str:
        return (
            f"memory bandwidth x{self.memory_bw}, GEMM compute x{self.gemm_compute}, "
            f"attention compute x{self.attention_compute}, interconnect x{self.link_bw}; "
            f"{self.kernel_overhead_us} us per kernel x ({self.kernels_per_layer} per layer + "
            f"{self.kernels_per_forward} per forward); weights/KV {self.dtype_bytes} bytes, "
            f"logits {self.logits_bytes} bytes"
        )


DEFAULT_EFFICIENCY = Efficiency()


@dataclass(frozen=True)
class ForwardBreakdown:
    """Components of one forward's roofline time, in ms (``total_ms`` is their sum)."""

    gemm_ms: float
    gemm_bound: str  # "compute" or "memory"
    attention_ms: float
    attention_bound: str
    other_memory_ms: float
    overhead_ms: float
    allreduce_ms: float
    total_ms: float


def forward_breakdown(
    device: DeviceSpec,
    arch: ArchSpec,
    tp: int,
    batch: int,
    query_tokens: int,
    context_tokens: float,
    eff: Efficiency = DEFAULT_EFFICIENCY,
) -> ForwardBreakdown:
    """Roofline time of one forward pass, by component.

    Args:
        device: spec-sheet numbers.
        arch: model architecture.
        tp: tensor-parallel degree (GPUs in the replica).
        batch: sequences in the forward.
        query_tokens: new tokens per sequence.
        context_tokens: tokens already in each sequence's KV cache.
        eff: efficiency factors.

    Returns:
        The breakdown; ``total_ms`` is the forward latency.

    Raises:
        InputError: non-positive batch, query or tp, or negative context.
    """
    if batch < 1 or query_tokens < 1 or tp < 1 or context_tokens < 0:
        raise InputError(
            f"need batch, query_tokens, tp >= 1 and context_tokens >= 0, got "
            f"{batch}, {query_tokens}, {tp}, {context_tokens}"
        )
    d = eff.dtype_bytes
    flops_s = device.bf16_tflops * 1e12
    bw_b_s = device.memory_bw_gb_s * 1e9 * eff.memory_bw
    tokens = batch * query_tokens
    heads_gpu = arch.heads / tp
    kv_heads_gpu = max(1.0, arch.kv_heads / tp)  # KV heads are replicated when tp > kv_heads

    weight_params = arch.weights_read_params() / tp
    gemm_c = 2.0 * weight_params * tokens / (flops_s * eff.gemm_compute)
    gemm_m = weight_params * d / bw_b_s

    attended = context_tokens + (query_tokens + 1) / 2.0
    attn_flops = 4.0 * arch.layers * heads_gpu * arch.head_dim * tokens * attended
    attn_c = attn_flops / (flops_s * eff.attention_compute)
    kv_bytes = 2.0 * arch.layers * kv_heads_gpu * arch.head_dim * d
    attn_m = batch * (context_tokens + query_tokens) * kv_bytes / bw_b_s

    per_layer_elems = (
        8 * arch.hidden
        + (
            2 * (arch.heads + 2 * arch.kv_heads) * arch.head_dim
            + 2 * arch.heads * arch.head_dim
            + 6 * arch.intermediate
        )
        / tp
    )
    other_bytes = (
        tokens * arch.layers * per_layer_elems * d + tokens * arch.vocab / tp * eff.logits_bytes
    )
    if arch.fc_inputs:
        other_bytes += tokens * arch.fc_inputs * arch.hidden * d
    other_s = other_bytes / bw_b_s

    kernels = arch.layers * eff.kernels_per_layer + eff.kernels_per_forward
    overhead_s = kernels * eff.kernel_overhead_us * 1e-6

    ar_s = 0.0
    if tp > 1:
        link_b_s = device.link_bw_gb_s * 1e9 * eff.link_bw
        ring = 2.0 * (tp - 1) / tp
        act_bytes = tokens * arch.hidden * d
        logits_bytes = tokens * arch.vocab * eff.logits_bytes
        lat_s = device.link_latency_us * 1e-6
        ar_s = 2 * arch.layers * (lat_s + ring * act_bytes / link_b_s)
        ar_s += lat_s + (tp - 1) / tp * logits_bytes / link_b_s

    gemm_s = max(gemm_c, gemm_m)
    attn_s = max(attn_c, attn_m)
    total_s = gemm_s + attn_s + other_s + overhead_s + ar_s
    return ForwardBreakdown(
        gemm_ms=gemm_s * 1e3,
        gemm_bound="compute" if gemm_c > gemm_m else "memory",
        attention_ms=attn_s * 1e3,
        attention_bound="compute" if attn_c > attn_m else "memory",
        other_memory_ms=other_s * 1e3,
        overhead_ms=overhead_s * 1e3,
        allreduce_ms=ar_s * 1e3,
        total_ms=total_s * 1e3,
    )


def forward_ms(
    device: DeviceSpec,
    arch: ArchSpec,
    tp: int,
    batch: int,
    query_tokens: int,
    context_tokens: float,
    eff: Efficiency = DEFAULT_EFFICIENCY,
) -> float:
    """Roofline milliseconds of one forward (see :func:`forward_breakdown`)."""
    return forward_breakdown(device, arch, tp, batch, query_tokens, context_tokens, eff).total_ms


def check_fits(device: DeviceSpec, arch: ArchSpec, tp: int, utilization: float = 0.9) -> None:
    """Raise if the weights alone do not fit in ``utilization`` of the replica's memory.

    Raises:
        InputError: naming the weight size, the memory and a tp that would fit.
    """
    weights_gib = arch.params() * 2.0 / GIB
    per_gpu = weights_gib / tp
    budget = device.memory_gib * utilization
    if per_gpu > budget:
        need = next((t for t in (2, 4, 8, 16) if weights_gib / t <= budget), None)
        hint = f"; try --tp {need}" if need else ""
        raise InputError(
            f"{arch.name} weights ({weights_gib:.1f} GiB, {per_gpu:.1f} GiB per GPU at tp {tp}) "
            f"do not fit in {budget:.1f} GiB ({utilization:.0%} of {device.memory_gib} GiB){hint}",
            field="--tp",
        )


def provenance_how(device: DeviceSpec, tp: int, eff: Efficiency) -> str:
    return (
        f"spectune {__version__} roofline (simulator/roofline.py): per forward, "
        "max(GEMM FLOPs / achievable FLOP/s, weight bytes / achievable bandwidth) "
        "+ max(attention FLOPs / achievable FLOP/s, KV bytes / achievable bandwidth) "
        "+ activation and logits bytes / achievable bandwidth + per-kernel overhead"
        + (" + 2 all-reduces per layer and a logits all-gather" if tp > 1 else "")
        + f". Device: {device.name}, {device.memory_bw_gb_s:g} GB/s, "
        f"{device.bf16_tflops:g} dense bf16 TFLOP/s ({device.source})"
        + (
            f", {device.link} {device.link_bw_gb_s:g} GB/s per direction, "
            f"{device.link_latency_us:g} us per collective"
            if tp > 1
            else ""
        )
        + f". Efficiency factors: {eff.describe()}. context_tokens = tokens already cached "
        "per sequence; logits computed for every query token."
    )


def roofline_profile(
    device_slug: str,
    model_slug: str,
    tp: int = 1,
    eff: Efficiency = DEFAULT_EFFICIENCY,
    *,
    with_fit: bool = True,
) -> LatencyProfile:
    """A latency profile with ``provenance.kind: roofline`` over the standard grid.

    Args:
        device_slug: a key of :data:`~spectune.simulator.hardware.DEVICES`.
        model_slug: a key of :data:`~spectune.simulator.hardware.ARCHS`.
        tp: tensor-parallel degree; ``device.count`` and ``model.tensor_parallel``.
        eff: efficiency factors.
        with_fit: compute the LatencyModel's cross-validated error into ``fit``.

    Returns:
        The validated profile.

    Raises:
        InputError: unknown device or model, or weights that do not fit.
    """
    device = get_device(device_slug)
    arch = get_arch(model_slug)
    if tp < 1:
        raise InputError(f"tp must be >= 1, got {tp}", field="--tp")
    check_fits(device, arch, tp)
    points = []
    for b in GRID_BATCH:
        for q in GRID_QUERY:
            if b * q > MAX_GRID_TOKENS:
                continue
            for c in GRID_CONTEXT:
                ms = round(forward_ms(device, arch, tp, b, q, c, eff), 4)
                stats = LatencyStats(min=ms, p50=ms, p90=ms, n=1)
                points.append(
                    LatencyPoint(batch=b, query_tokens=q, context_tokens=c, latency_ms=stats)
                )
    profile = LatencyProfile(
        schema="spectune/latency/v1",
        device=DeviceInfo(
            name=device.name,
            kind="gpu",
            dtype="bfloat16",
            memory_gib=device.memory_gib,
            count=tp,
            software={"spectune": __version__, "model": "roofline"},
        ),
        model=ModelArch(
            name=arch.name,
            params=arch.params(),
            layers=arch.layers,
            hidden=arch.hidden,
            heads=arch.heads,
            kv_heads=arch.kv_heads,
            vocab=arch.vocab,
            intermediate=arch.intermediate,
            head_dim=arch.head_dim,
            tensor_parallel=tp,
        ),
        provenance=Provenance(kind="roofline", how=provenance_how(device, tp, eff)),
        points=points,
        notes=_notes(device, arch, tp, eff),
    )
    if with_fit:
        lm = LatencyModel.from_profile(profile)
        fit = LatencyFit(
            kind=FIT_KIND, cv_error_pct=round(lm.cv_error_pct, 3), params=lm.fit_params()
        )
        profile = profile.model_copy(update={"fit": fit})
    return profile


def _notes(device: DeviceSpec, arch: ArchSpec, tp: int, eff: Efficiency) -> str:
    bd = forward_breakdown(device, arch, tp, 1, 1, 2048, eff)
    extra = ""
    if arch.shared_lm_head:
        extra = (
            " The head shares the target's embedding and lm_head: they are read every forward "
            "but not counted in model.params (no extra memory)."
        )
    return (
        f"Decode at batch 1, context 2048: {bd.total_ms:.3f} ms per token "
        f"({1000 / bd.total_ms:.0f} tok/s). Grid: batch {GRID_BATCH[0]}..{GRID_BATCH[-1]}, "
        f"query {GRID_QUERY[0]}..{GRID_QUERY[-1]}, context {GRID_CONTEXT[0]}..{GRID_CONTEXT[-1]}, "
        f"points with batch x query > {MAX_GRID_TOKENS} pruned. Efficiency parameters: "
        f"{asdict(eff)}.{extra}"
    )


def shipped_profiles() -> list[tuple[str, str, str, int]]:
    """Every (device slug, file model slug, architecture slug, tp) we ship, skipping
    combinations whose weights do not fit the replica's memory."""
    out = []
    for dev in DEVICES:
        for file_slug, arch_slug, tp in SHIPPED_MODELS:
            try:
                check_fits(DEVICES[dev], ARCHS[arch_slug], tp)
            except InputError:
                continue
            out.append((dev, file_slug, arch_slug, tp))
    return out


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
