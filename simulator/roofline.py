"""The pure roofline: latency of one forward from spec-sheet peaks and fixed efficiency
factors, for comparison with the calibrated GPU cost model (:mod:`.costmodel`).

Both price the same work (:mod:`.costmodel.work`: any model from a Hugging Face config,
dense or MoE, with its heads); the roofline takes the per-kernel max of memory and useful
compute time with the factors below, the calibrated model adds the terms real GPUs show
and fits its efficiencies on public measurements. ``spectune roofline --model-kind
roofline`` writes profiles of this model.

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

Efficiency factors (:data:`~.costmodel.price.ROOFLINE_PARAMS`, the same for every device —
chosen once, not fitted to any measurement):

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

from .costmodel.catalog import get_model
from .costmodel.model import GpuCostModel, roofline_model
from .costmodel.price import ROOFLINE_PARAMS, CostParams, ForwardBreakdown
from .costmodel.profiles import cost_profile, write_profile
from .costmodel.shape import ModelShape
from .hardware import DeviceSpec, get_device
from .profile_schema import LatencyProfile

__all__ = [
    "ROOFLINE_PARAMS",
    "ForwardBreakdown",
    "check_fits",
    "forward_breakdown",
    "forward_ms",
    "roofline_profile",
    "write_profile",
]


def _model(device: DeviceSpec, shape: ModelShape, tp: int, params: CostParams) -> GpuCostModel:
    return roofline_model(device, shape, tp, params=params)


def forward_breakdown(
    device: DeviceSpec,
    shape: ModelShape,
    tp: int,
    batch: int,
    query_tokens: int,
    context_tokens: float,
    params: CostParams = ROOFLINE_PARAMS,
) -> ForwardBreakdown:
    """Roofline time of one forward pass, by component (bf16 weights and KV).

    Args:
        device: spec-sheet numbers.
        shape: model or head shape (:func:`~.costmodel.catalog.get_model`, or a config).
        tp: tensor-parallel degree (GPUs in the replica).
        batch: sequences in the forward.
        query_tokens: new tokens per sequence.
        context_tokens: tokens already in each sequence's KV cache.
        params: efficiency factors.

    Returns:
        The breakdown; ``total_ms`` is the forward latency.

    Raises:
        InputError: non-positive batch, query or tp, or negative context.
    """
    return _model(device, shape, tp, params).breakdown(batch, query_tokens, context_tokens)


def forward_ms(
    device: DeviceSpec,
    shape: ModelShape,
    tp: int,
    batch: int,
    query_tokens: int,
    context_tokens: float,
    params: CostParams = ROOFLINE_PARAMS,
) -> float:
    """Roofline milliseconds of one forward (see :func:`forward_breakdown`)."""
    return forward_breakdown(
        device, shape, tp, batch, query_tokens, context_tokens, params
    ).total_ms


def check_fits(device: DeviceSpec, shape: ModelShape, tp: int, utilization: float = 0.9) -> None:
    """Raise if bf16 weights alone do not fit in ``utilization`` of the replica's memory.

    Raises:
        InputError: naming the weight size, the memory and a tp that would fit.
    """
    _model(device, shape, tp, ROOFLINE_PARAMS).check_fits(utilization)


def roofline_profile(
    device_slug: str, model_slug: str, tp: int = 1, *, with_fit: bool = True
) -> LatencyProfile:
    """A latency profile with ``provenance.kind: roofline`` over the standard grid.

    Raises:
        InputError: unknown device or model, bad tp, or weights that do not fit.
    """
    model = _model(get_device(device_slug), get_model(model_slug), tp, ROOFLINE_PARAMS)
    model.check_fits()
    return cost_profile(model, with_fit=with_fit)
