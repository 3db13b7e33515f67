"""Small output helpers shared by the CLI commands: JSON, aligned tables, scenario flags."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any


def add_scenario_args(p: argparse.ArgumentParser) -> None:
    """The arguments every command that reads a scenario takes."""
    p.add_argument("scenario", help="scenario YAML (schema spectune/scenario/v1)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario field, validated like the file "
        "(e.g. --set spec.num_spec_tokens=0 --set workload.num_requests=500); repeatable",
    )


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return obj


def print_json(obj: Any) -> None:
    """Print strict JSON (NaN/inf become null) to stdout."""
    json.dump(_clean(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "-"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** (-digits)):
            return f"{x:.{digits}g}"
        return f"{x:,.{digits}f}" if abs(x) < 1000 else f"{x:,.1f}"
    return str(x)


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], digits: int = 3) -> str:
    """An aligned plain-text table; numbers right-aligned."""
    raw_rows = [list(r) for r in rows]
    body = [[fmt(c, digits) for c in r] for r in raw_rows]
    cols = list(zip(list(headers), *body, strict=True)) if body else [[h] for h in headers]
    widths = [max(len(s) for s in col) for col in cols]

    def line(cells: Sequence[str], raw: Sequence[Any] | None) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            num = raw is not None and isinstance(raw[i], int | float)
            out.append(c.rjust(w) if num else c.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(list(headers), None), "  ".join("-" * w for w in widths)]
    lines += [line(b, r) for b, r in zip(body, raw_rows, strict=True)]
    return "\n".join(lines)
