"""The work of one forward pass: bytes moved, FLOPs and collectives, per GPU — the physics
both cost models price (:mod:`.price` with calibrated efficiencies, the pure roofline with
fixed ones).

One forward of ``batch`` (B) sequences × ``query_tokens`` (q) new tokens each with
``context_tokens`` (ctx) already cached per sequence, on one GPU of a ``tp``-way tensor-
parallel replica; T = B·q tokens.

- **Linear layers** (:class:`GemmWork`, one per weight matrix type, summed over layers;
  a quantised model keeps its lm_head in bf16, as vLLM and TensorRT-LLM checkpoints do):
  weight bytes read (routed experts: only the experts the step's tokens touch,
  :mod:`.moe`), FLOPs ``2·M·K·N`` and the FLOPs the tensor cores really execute
  (``flops_exec``): M rounded up to the GEMM tile (``TILE_M`` rows) and the output tiles
  rounded up to whole waves over the device's SMs (``TILE_N`` columns per tile) — the tile
  and wave quantisation that makes extra tokens cost before the compute ridge (skinny
  problems use 16- and 32-row tiles; fewer tiles than SMs are split along K). M is T for
  every matrix but a routed expert's, which multiplies ``T·k / touched`` tokens.
- **Attention** (:class:`AttentionWork`, per layer type: full, sliding-window): KV bytes
  ``B·(ctx_eff + q)·kv_bytes_per_token_layer`` and FLOPs ``2·(d_qk + d_v)`` per (query
  row, key); query rows are packed per KV head (``q·heads/kv_heads``, MLA: ``q·heads``)
  and executed in the same tiles, so a verify pass of a few tokens costs the same
  tensor-core work as one tile until it fills it. Causal within the query:
  keys per row ``ctx_eff + (q+1)/2``.
- **Other memory traffic**: activations, norms, residuals, the embedding gather and fp32
  logits, ``T·L·(8·hidden + (2·(H + 2·KV)·d + 2·H·d + 6·mlp_width)/tp)·2 + T·V/tp·4`` bytes.
- **Collectives** (tp > 1): two all-reduces of ``T·hidden·2`` bytes per layer and one
  logits gather; ring traffic ``2·(tp−1)/tp`` times the message.
- **Layers**: the count the per-layer fixed cost applies to.

Units: bytes, FLOPs; sizes per GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError
from ..hardware import DeviceSpec
from .dtypes import WeightDType
from .moe import expected_touched_experts
from .shape import Linear, ModelShape

TILE_M = 64  # rows of a GEMM / attention tile
SMALL_TILES_M = (16, 32)  # tiles of skinny (decode-size) problems
TILE_N = 128  # output columns of a GEMM tile
ACT_BYTES = 2.0  # activations stay bf16
LOGIT_BYTES = 4.0  # fp32 logits


@dataclass(frozen=True)
class GemmWork:
    name: str
    weight_bytes: float
    flops: float
    flops_exec: float
    m: float  # rows each matrix multiplies


@dataclass(frozen=True)
class AttentionWork:
    name: str
    kv_bytes: float
    flops: float
    flops_exec: float


@dataclass(frozen=True)
class ForwardWork:
    """Everything one forward does on one GPU (see the module docstring)."""

    gemms: tuple[GemmWork, ...]
    attention: tuple[AttentionWork, ...]
    other_bytes: float
    layers: int
    sequences: int
    allreduces: int
    comm_bytes: float  # ring traffic per GPU over all collectives
    compute: str  # tensor-core type of the GEMMs (bf16 | fp8 | fp4)
    tokens: int
    touched_experts: float = 0.0
    notes: dict[str, float] = field(default_factory=dict)

    @property
    def weight_bytes(self) -> float:
        return sum(g.weight_bytes for g in self.gemms)


def _waves_factor(m_pad: float, n: int, sms: int) -> float:
    """Executed / useful tile slots when ``ceil(m/TILE_M)·ceil(n/TILE_N)`` output tiles run
    in whole waves over ``sms`` SMs (>= 1). Fewer tiles than SMs are split along K
    (split-K) into ``floor(sms / tiles)`` slices each, as GEMM libraries do for skinny
    problems, so a small GEMM still fills the GPU."""
    tiles = math.ceil(m_pad / TILE_M) * math.ceil(n / TILE_N)
    slots = tiles * max(1, sms // tiles)
    return math.ceil(slots / sms) * sms / slots


def _pad(m: float) -> float:
    """Rows a tensor-core kernel executes for ``m`` useful rows: 16- and 32-row tiles for
    skinny problems (GEMV-like decode kernels), whole ``TILE_M`` tiles above."""
    if m <= 0:
        return 0.0
    for small in SMALL_TILES_M:
        if m <= small:
            return float(small)
    return math.ceil(m / TILE_M - 1e-9) * TILE_M


def _split(lin: Linear, tp: int, kv_replicated: float = 1.0) -> tuple[float, float]:
    """Per-GPU (k, n) of a matrix under tensor parallelism."""
    if lin.split in ("col", "vocab"):
        return lin.k, lin.n / tp * (kv_replicated if lin.name == "kv_proj" else 1.0)
    if lin.split == "row":
        return lin.k / tp, lin.n
    return lin.k, lin.n


def forward_work(
    device: DeviceSpec,
    shape: ModelShape,
    tp: int,
    dtype: WeightDType,
    kv_bytes: float,
    batch: int,
    query_tokens: int,
    context_tokens: float,
) -> ForwardWork:
    """The work of one forward on one GPU of a ``tp``-way replica.

    Args:
        device: the GPU (SM count for wave quantisation).
        shape: model or head.
        tp: tensor-parallel degree.
        dtype: weight data type (bytes per weight, tensor-core type).
        kv_bytes: bytes per KV-cache element.
        batch, query_tokens, context_tokens: B, q, ctx (ctx may be fractional).

    Returns:
        The work.

    Raises:
        InputError: non-positive batch, query or tp, or negative context.
    """
    if batch < 1 or query_tokens < 1 or tp < 1 or context_tokens < 0:
        raise InputError(
            f"need batch, query_tokens, tp >= 1 and context_tokens >= 0, got "
            f"{batch}, {query_tokens}, {tp}, {context_tokens}"
        )
    tokens = batch * query_tokens
    # KV heads are replicated when tp exceeds them (each rank keeps at least one)
    kv_rep = max(1.0, tp / shape.kv_heads)
    touched = 0.0
    gemms = []
    for lin in shape.linears():
        k, n = _split(lin, tp, kv_rep)
        count, m = float(lin.count), float(tokens)
        if lin.expert and shape.moe is not None:
            moe = shape.moe
            touched = expected_touched_experts(tokens, moe.experts, moe.experts_per_token)
            count *= touched
            m = tokens * moe.experts_per_token / touched
        flops = 2.0 * m * k * n * count
        m_pad = _pad(m)
        exec_flops = 2.0 * m_pad * k * n * count * _waves_factor(m_pad, int(n), device.sms)
        wbytes = dtype.weight_bytes
        if lin.name == "lm_head" and dtype.slug != "bf16":
            # serving stacks keep the lm_head in bf16 when they quantise the rest: its bytes
            # are bf16's and its FLOPs run at the bf16 rate (scaled to the forward's peak)
            wbytes = 2.0
            rate = device.peak_tflops(dtype.compute) / device.bf16_tflops
            flops, exec_flops = flops * rate, exec_flops * rate
        gemms.append(GemmWork(lin.name, k * n * count * wbytes, flops, exec_flops, m))
    attention = _attention(shape, tp, kv_bytes, batch, query_tokens, context_tokens)
    return ForwardWork(
        gemms=tuple(gemms),
        attention=attention,
        other_bytes=_other_bytes(shape, tp, tokens),
        layers=shape.layers,
        sequences=batch,
        allreduces=(2 * shape.layers + 1) if tp > 1 else 0,
        comm_bytes=_comm_bytes(shape, tp, tokens),
        compute=dtype.compute,
        tokens=tokens,
        touched_experts=touched,
    )


def _attention(
    shape: ModelShape, tp: int, kv_bytes: float, b: int, q: int, ctx: float
) -> tuple[AttentionWork, ...]:
    heads = shape.heads / tp
    if shape.mla is not None:
        m = shape.mla
        latent = m.kv_lora_rank + m.qk_rope_head_dim
        kv_per_token_layer = latent * kv_bytes  # every rank keeps the whole latent
        groups, rows = 1.0, q * heads  # absorbed: all heads attend one latent "KV head"
        flop_per_row_key = 2.0 * latent + 2.0 * m.kv_lora_rank
    else:
        kvh = max(1.0, shape.kv_heads / tp)
        kv_per_token_layer = 2.0 * kvh * shape.head_dim * kv_bytes
        groups, rows = kvh, q * heads / kvh
        flop_per_row_key = 4.0 * shape.head_dim
    spans = []
    full = shape.layers - shape.sliding_layers
    if full:
        spans.append(("attention", full, ctx))
    if shape.sliding_layers:
        window = float(shape.sliding_window)
        spans.append(("attention_sliding", shape.sliding_layers, min(ctx, window)))
    out = []
    for name, layers, c in spans:
        keys = c + (q + 1) / 2.0
        kv = b * (c + q) * kv_per_token_layer * layers
        per = b * groups * flop_per_row_key * keys * layers
        out.append(AttentionWork(name, kv, per * rows, per * _pad(rows)))
    return tuple(out)


def _other_bytes(shape: ModelShape, tp: int, tokens: int) -> float:
    d, h = shape.head_dim, shape.hidden
    attn = (2 * (shape.heads + 2 * shape.kv_heads) * d + 2 * shape.heads * d) * shape.layers
    mlp = shape.dense_layers * shape.intermediate
    if shape.moe is not None:
        m = shape.moe
        mlp += m.layers * (m.experts_per_token * m.expert_intermediate + m.shared_intermediate)
    per_token = 8 * h * shape.layers + (attn + 6 * mlp) / tp + shape.fc_in
    return tokens * per_token * ACT_BYTES + tokens * shape.lm_head_rows / tp * LOGIT_BYTES


def _comm_bytes(shape: ModelShape, tp: int, tokens: int) -> float:
    if tp == 1:
        return 0.0
    ring = 2.0 * (tp - 1) / tp
    act = tokens * shape.hidden * ACT_BYTES
    logits = tokens * shape.lm_head_rows * LOGIT_BYTES
    return 2 * shape.layers * ring * act + (tp - 1) / tp * logits
