"""``spectune plan --grid GRID.yaml``: capacity studies over devices, models, drafters and
workloads, compared per GPU (method: :mod:`spectune.tuner.capacity`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spectune.output import print_json, table
from spectune.simulator.errors import InputError
from spectune.tuner.capacity import GridOutcome, GridSettings, load_grid, run_grid_study, sized
from spectune.tuner.storage import redact
from spectune.tuner.worker import local_helpers


def run_grid(args: argparse.Namespace) -> int:
    if args.scenario is not None or args.overrides:
        raise InputError("a grid names its base scenario itself", source="--grid")
    for flag in ("requests", "seed", "objective"):
        if getattr(args, flag) is not None:
            raise InputError(f"set '{flag}' in the grid file", source="--" + flag)
    if args.workers < 1:
        raise InputError(f"must be >= 1, got {args.workers}", source="--workers")
    grid = load_grid(args.grid)
    settings = GridSettings(
        storage=args.storage,
        study_name=args.study_name,
        helpers=local_helpers(args.workers - 1) if args.workers > 1 else None,
    )
    if not args.json:
        print(
            f"capacity grid {args.grid}: {len(grid.points)} points, {args.workers} worker "
            f"process{'es' if args.workers > 1 else ''} here",
            file=sys.stderr,
            flush=True,
        )
    out = run_grid_study(grid, settings)
    qps = args.qps if args.qps is not None else grid.spec.qps
    rows = [_row(out.points[p.label], qps) for p in grid.points if p.label in out.points]
    if args.plot:
        from spectune.tuner.plots import plot_capacity_grid

        plot_capacity_grid(rows, args.plot)
    if args.json:
        print_json(_json(out, rows, qps))
    else:
        print(render(out, rows, qps))
    return 0


def _row(summary: dict[str, Any], qps: float | None) -> dict[str, Any]:
    return {**summary, "for_qps": sized(summary, qps) if not summary.get("error") else None}


def _json(out: GridOutcome, rows: list[dict[str, Any]], qps: float | None) -> dict[str, Any]:
    spec = out.grid.spec
    return {
        "grid": str(out.grid.path),
        "base": str(spec.base),
        "points": len(out.grid.points),
        "finished": len(out.points),
        "ran_here": out.ran,
        "requests_per_rate": spec.requests,
        "qps": qps,
        "study": out.study_name,
        "storage": redact(out.storage),
        "wall_s": out.wall_s,
        "rows": rows,
    }


def render(out: GridOutcome, rows: list[dict[str, Any]], qps: float | None) -> str:
    spec = out.grid.spec
    axes = list(spec.axes)
    ok = sorted(
        (r for r in rows if not r.get("error")),
        key=lambda r: r["sd"]["gpus_per_1k_req_per_s"] or float("inf"),
    )
    head = [
        *axes,
        "GPUs per replica",
        "plain max req/s",
        "SD max req/s",
        "SD gain x",
        "config at SD max",
        "GPUs per 1k req/s (plain)",
        "GPUs per 1k req/s (SD)",
        "out tok/s per GPU (SD)",
    ]
    if qps:
        head += [f"GPUs for {qps:g} req/s (plain)", f"GPUs for {qps:g} req/s (SD)"]
    body = []
    for r in ok:
        row = [
            *(r["coords"][a] for a in axes),
            r["gpus_per_replica"],
            r["plain"]["max_rate_per_s"],
            r["sd"]["max_rate_per_s"],
            r["sd_gain"],
            r["config_at_max"],
            r["plain"]["gpus_per_1k_req_per_s"],
            r["sd"]["gpus_per_1k_req_per_s"],
            r["sd"]["output_tok_per_gpu_s"],
        ]
        if qps:
            row += [r["for_qps"]["plain"]["gpus"], r["for_qps"]["sd"]["gpus"]]
        body.append(row)
    lines = [
        f"spectune plan --grid {out.grid.path}: {len(out.points)} of {len(out.grid.points)} "
        f"points planned ({out.ran} here, {out.wall_s:.0f} s); study '{out.study_name}' in "
        f"{redact(out.storage)} (rerun to resume)",
        f"each point: the highest Poisson rate one replica sustains in steady state under "
        f"the base scenario's SLOs ({spec.requests:,} requests per probed rate; method as "
        "`spectune plan`), best per GPU first",
        "",
        table(body, head),
    ]
    bad = [r for r in rows if r.get("error")]
    if bad:
        lines += ["", "points with no sustainable rate:"]
        lines += [f"  {r['label']}: {r['error']}" for r in bad]
    missing = [p.label for p in out.grid.points if p.label not in out.points]
    if missing:
        lines += ["", f"not planned yet ({len(missing)}): " + "; ".join(missing[:5])]
    return "\n".join(lines)
