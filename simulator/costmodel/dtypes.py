"""Weight and KV-cache data types: bytes per element and the tensor-core type they run on.

``weight_bytes`` counts the scales a format stores beside its values (int4 weight-only:
one bf16 scale and zero point per group of 128 weights, +4/128 bytes; nvfp4: one fp8 scale
per 16 values, +1/16 byte). Weight-only formats (``int8-weight``, ``int4-weight``)
dequantise to bf16 and multiply on bf16 tensor cores; ``fp8`` (W8A8) and ``fp4`` (nvfp4)
multiply in their own type, on devices that have it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..hardware import DeviceSpec


@dataclass(frozen=True)
class WeightDType:
    slug: str
    weight_bytes: float
    compute: str  # bf16 | fp8 | fp4
    profile_name: str  # what a latency profile's device.dtype says


WEIGHT_DTYPES: dict[str, WeightDType] = {
    d.slug: d
    for d in (
        WeightDType("bf16", 2.0, "bf16", "bfloat16"),
        WeightDType("fp8", 1.0, "fp8", "fp8"),
        WeightDType("int8-weight", 1.0, "bf16", "int8 weight-only"),
        WeightDType("int4-weight", 0.5 + 4.0 / 128, "bf16", "int4 weight-only (group 128)"),
        WeightDType("fp4", 0.5 + 1.0 / 16, "fp4", "nvfp4"),
    )
}
_ALIASES = {"bfloat16": "bf16", "fp16": "bf16", "float16": "bf16", "float8": "fp8"}

KV_DTYPE_BYTES: dict[str, float] = {"bf16": 2.0, "fp8": 1.0}


def get_weight_dtype(slug: str, device: DeviceSpec | None = None) -> WeightDType:
    """Look up a weight dtype, checking that ``device`` can run it.

    Raises:
        InputError: unknown dtype (lists the known ones), or the device has no tensor
            cores for its compute type.
    """
    key = _ALIASES.get(slug.lower(), slug.lower())
    dt = WEIGHT_DTYPES.get(key)
    if dt is None:
        raise InputError(
            f"unknown dtype {slug!r} (known: {', '.join(WEIGHT_DTYPES)})", field="--dtype"
        )
    if device is not None:
        device.peak_tflops(dt.compute)
    return dt


def kv_dtype_bytes(slug: str) -> float:
    """Bytes per KV-cache element.

    Raises:
        InputError: unknown KV dtype.
    """
    key = _ALIASES.get(slug.lower(), slug.lower())
    if key not in KV_DTYPE_BYTES:
        raise InputError(
            f"unknown KV-cache dtype {slug!r} (known: {', '.join(KV_DTYPE_BYTES)})",
            field="--kv-dtype",
        )
    return KV_DTYPE_BYTES[key]
