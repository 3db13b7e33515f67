"""One model on one device, priced: the object ``spectune roofline`` and the profile
writers use.

``GpuCostModel.forward_ms(batch, query_tokens, context_tokens)`` prices one forward
(:mod:`.work` then :mod:`.price`); ``grid_ms`` prices many at once (vectorised). Built by
:func:`calibrated_model` (fitted efficiencies of the device's generation) or
:func:`roofline_model` (the pure roofline's fixed factors, useful FLOPs, hard max).

Also :func:`verify_ratio`: the cost of verifying ``B × (k+1)`` tokens over decoding
``B × 1`` — the curve that decides how long drafts may be at a given load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..hardware import DeviceSpec
from .calibration import ShippedCalibration, shipped
from .dtypes import WeightDType, get_weight_dtype, kv_dtype_bytes
from .price import ROOFLINE_PARAMS, CostParams, ForwardBreakdown, price, seconds, stack
from .shape import ModelShape
from .work import forward_work

GIB = 1024**3


@dataclass(frozen=True)
class GpuCostModel:
    """Prices forwards of ``shape`` on ``tp`` × ``device`` (see the module docstring)."""

    device: DeviceSpec
    shape: ModelShape
    tp: int
    dtype: WeightDType
    kv_dtype: str
    params: CostParams
    kind: str  # "calibrated" | "roofline"
    eager: bool = False

    @property
    def padded(self) -> bool:
        return self.kind == "calibrated"

    @property
    def kv_bytes(self) -> float:
        return kv_dtype_bytes(self.kv_dtype)

    def work(self, batch: int, query_tokens: int, context_tokens: float):
        return forward_work(
            self.device,
            self.shape,
            self.tp,
            self.dtype,
            self.kv_bytes,
            batch,
            query_tokens,
            context_tokens,
        )

    def breakdown(self, batch: int, query_tokens: int, context_tokens: float) -> ForwardBreakdown:
        return price(
            self.work(batch, query_tokens, context_tokens),
            self.device,
            self.params,
            padded=self.padded,
            eager=self.eager,
        )

    def forward_ms(self, batch: int, query_tokens: int, context_tokens: float) -> float:
        return self.breakdown(batch, query_tokens, context_tokens).total_ms

    def grid_ms(self, points: list[tuple[int, int, float]]) -> np.ndarray:
        """Milliseconds of many (batch, query, context) forwards in one vectorised pass."""
        works = [self.work(b, q, c) for b, q, c in points]
        wa = stack(works, [self.device] * len(works), padded=self.padded)
        s = seconds(wa, self.params, self.eager)
        return s["total"] * 1e3

    def weight_bytes(self) -> float:
        """Bytes of weights the replica holds (a quantised model's embedding and lm_head stay
        bf16)."""
        s = self.shape
        embedding = 0 if s.is_head else s.vocab * s.hidden
        lm_head = 0 if (s.shares_lm_head or s.tied_embeddings) else s.lm_head_rows * s.hidden
        bf16 = embedding + lm_head  # never quantised
        return (s.params() - bf16) * self.dtype.weight_bytes + bf16 * 2.0

    def kv_bytes_per_token(self) -> float:
        return self.shape.kv_bytes_per_token(self.kv_bytes, self.tp)

    def check_fits(self, utilization: float = 0.9) -> None:
        """Raise if the weights alone do not fit in ``utilization`` of the replica's memory.

        Raises:
            InputError: naming the weight size, the memory and a tp that would fit.
        """
        total = self.weight_bytes() / GIB
        budget = self.device.memory_gib * utilization
        if total / self.tp > budget:
            need = next((t for t in (2, 4, 8, 16) if total / t <= budget), None)
            hint = f"; try --tp {need}" if need else ""
            raise InputError(
                f"{self.shape.name} weights ({total:.1f} GiB, {total / self.tp:.1f} GiB per "
                f"GPU at tp {self.tp}) do not fit in {budget:.1f} GiB "
                f"({utilization:.0%} of {self.device.memory_gib} GiB){hint}",
                field="--tp",
            )


def _checked(
    device: DeviceSpec, shape: ModelShape, tp: int, dtype: str, kv_dtype: str
) -> WeightDType:
    """The weight dtype, after checking tp, the dtype against the device and the KV dtype.

    Raises:
        InputError: tp < 1 or not dividing the heads; unknown or unsupported dtypes.
    """
    if tp < 1:
        raise InputError(f"must be >= 1, got {tp}", field="--tp")
    if shape.heads % tp:
        raise InputError(
            f"{shape.name} has {shape.heads} attention heads, not divisible by tp {tp}",
            field="--tp",
        )
    kv_dtype_bytes(kv_dtype)
    return get_weight_dtype(dtype, device)


def calibrated_model(
    device: DeviceSpec,
    shape: ModelShape,
    tp: int = 1,
    dtype: str = "bf16",
    kv_dtype: str = "bf16",
    *,
    eager: bool = False,
    calibration: ShippedCalibration | None = None,
) -> GpuCostModel:
    """The calibrated model of ``shape`` on ``device`` (the generation's fitted parameters).

    Raises:
        InputError: bad tp, unknown dtype or one the device cannot run.
    """
    wd = _checked(device, shape, tp, dtype, kv_dtype)
    params = (calibration or shipped()).params(device.generation)
    return GpuCostModel(device, shape, tp, wd, kv_dtype, params, "calibrated", eager)


def roofline_model(
    device: DeviceSpec,
    shape: ModelShape,
    tp: int = 1,
    dtype: str = "bf16",
    kv_dtype: str = "bf16",
    params: CostParams = ROOFLINE_PARAMS,
) -> GpuCostModel:
    """The pure roofline of ``shape`` on ``device`` (fixed factors, not fitted).

    Raises:
        InputError: bad tp, unknown dtype or one the device cannot run.
    """
    wd = _checked(device, shape, tp, dtype, kv_dtype)
    return GpuCostModel(device, shape, tp, wd, kv_dtype, params, "roofline")


def verify_ratio(model: GpuCostModel, batch: int, k: int, context_tokens: float) -> float:
    """Cost of one verify forward of ``batch × (k+1)`` tokens over a plain decode forward
    of ``batch × 1`` at the same context."""
    return model.forward_ms(batch, k + 1, context_tokens) / model.forward_ms(
        batch, 1, context_tokens
    )
