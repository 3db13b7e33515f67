"""The shipped calibration (hwprofiles/calibration/fitted.yaml): fitted parameters per GPU
generation and the leave-one-source-out errors measured when they were fitted.

``benchmarks/calibrate_gpu.py --write`` produces the file (fit on every public point,
then leave-one-source-out); the calibrated profiles and ``spectune roofline`` read it.
``tests/simulator/test_costmodel_fit.py`` fails if the file differs from a fresh fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from .fit import GENERATIONS, Calibration
from .observations import DATA_DIR, FITTED

__all__ = ["DATA_DIR", "DEFAULT_PATH", "ShippedCalibration", "dump", "load", "shipped"]
from .price import CostParams

SCHEMA = "spectune/gpu-calibration/v1"
DEFAULT_PATH = DATA_DIR / "fitted.yaml"


@dataclass(frozen=True)
class ShippedCalibration:
    """A calibration plus how well it predicts points it did not see."""

    calibration: Calibration
    errors: dict[str, dict[str, float]] = field(default_factory=dict)  # category -> stats
    sources: tuple[str, ...] = ()

    def params(self, generation: str) -> CostParams:
        return self.calibration.params[generation]

    def error_summary(self) -> dict[str, float]:
        """Flat held-out error figures for a profile's provenance."""
        out: dict[str, float] = {}
        for cat, stats in self.errors.items():
            for k in ("median_pct", "max_pct", "points"):
                if k in stats:
                    out[f"{cat}_loso_{k}"] = stats[k]
        return out


def _round(v: float) -> float:
    return float(f"{v:.6g}")


def dump(cal: Calibration, errors: dict[str, dict[str, float]], sources: list[str]) -> str:
    """YAML text of a calibration (stable: 6 significant digits, sorted keys)."""
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_by": "benchmarks/calibrate_gpu.py --write",
        "fitted_on": {
            "points": cal.points,
            "groups": list(cal.groups),
            "categories": list(FITTED),
            "prior_sd": cal.prior_sd,
            "data": "hwprofiles/calibration/forward_points.yaml",
        },
        "ttft_overhead_ms": _round(cal.ttft_overhead_ms),
        "params": {
            g: {
                k: (None if v is None else "inf" if math.isinf(v) else _round(v))
                for k, v in cal.params[g].as_dict().items()
            }
            for g in GENERATIONS
        },
        "loso_errors": {c: {k: _round(v) for k, v in s.items()} for c, s in errors.items()},
        "sources": sorted(sources),
    }
    return yaml.safe_dump(data, sort_keys=False, width=100)


def load(path: str | Path = DEFAULT_PATH) -> ShippedCalibration:
    """Read a calibration file.

    Raises:
        InputError: missing file or a field that does not parse.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise InputError(
            "no GPU calibration (run benchmarks/calibrate_gpu.py --write)", source=p
        ) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(f"schema must be {SCHEMA}", source=p, field="schema")
    try:
        params = {
            g: CostParams(
                **{k: math.inf if v == "inf" else v for k, v in data["params"][g].items()}
            )
            for g in GENERATIONS
        }
        fitted = data["fitted_on"]
        cal = Calibration(
            params,
            float(data["ttft_overhead_ms"]),
            tuple(fitted["groups"]),
            int(fitted["points"]),
            float(fitted["prior_sd"]),
        )
    except (KeyError, TypeError) as e:
        raise InputError(f"malformed calibration: {e}", source=p, field="params") from None
    return ShippedCalibration(cal, data.get("loso_errors") or {}, tuple(data.get("sources") or ()))


@lru_cache(maxsize=4)
def shipped(path: str = str(DEFAULT_PATH)) -> ShippedCalibration:
    """The shipped calibration, read once."""
    return load(path)
