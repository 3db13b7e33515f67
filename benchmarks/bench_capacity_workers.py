"""Wall time of a capacity grid with 1 vs N local workers (``spectune plan --grid``).

Each round plans the same grid from an empty study once per worker count, in alternating
order (1, 2, 2, 1, 1, 2, ...: interleaved, so drifting machine load hits both alike), and
prints the simulations each run made, its wall time, the medians and their ratio. The grid
is built in a temporary folder around ``examples/azure-conv-h100.yaml``: devices x load
levels, a reduced search space and ``--requests`` arrivals per probed rate, sized so that
one run is about 200 simulations.

    .venv/bin/python benchmarks/bench_capacity_workers.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from spectune.tuner.capacity import GridSettings, load_grid, run_grid_study
from spectune.tuner.worker import local_helpers

REPO = Path(__file__).resolve().parents[1]


def write_grid(folder: Path, requests: int, devices: list[str], loads: list[float]) -> Path:
    grid = {
        "schema": "spectune/plan-grid/v1",
        "base": str(REPO / "examples" / "azure-conv-h100.yaml"),
        "requests": requests,
        "qps": 100,
        "axes": {
            "search": {
                "chains": {
                    "search.drafters": ["none", "eagle"],
                    "search.num_spec_tokens": [0, 2, 3, 4],
                    "search.tree_budgets": [],
                    "search.max_num_seqs": [256],
                }
            },
            "device": devices,
            "load": {f"ts{x:g}": {"workload.time_scale": x} for x in loads},
        },
    }
    path = folder / "bench-grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def one_run(grid_path: Path, workers: int, folder: Path, tag: str) -> dict[str, float]:
    store = str(folder / f"{tag}.log")
    grid = load_grid(grid_path)
    t0 = time.perf_counter()
    out = run_grid_study(
        grid,
        GridSettings(
            storage=store,
            progress=False,
            helpers=local_helpers(workers - 1) if workers > 1 else None,
        ),
    )
    wall = time.perf_counter() - t0
    sims = sum(int(p.get("simulations") or 0) for p in out.points.values())
    assert len(out.points) == len(grid.points), "a point was lost"
    return {"workers": workers, "wall_s": wall, "simulations": sims, "points": len(out.points)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--devices", default="h100-sxm,a100-80gb,l40s,h200")
    ap.add_argument("--loads", default="1,2")
    args = ap.parse_args()
    devices = args.devices.split(",")
    loads = [float(x) for x in args.loads.split(",")]
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grid_path = write_grid(folder, args.requests, devices, loads)
        for r in range(args.rounds):
            order = [1, args.workers] if r % 2 == 0 else [args.workers, 1]
            for w in order:
                res = one_run(grid_path, w, folder, f"r{r}w{w}")
                res["load1"] = os.getloadavg()[0]
                runs.append(res)
                print(json.dumps({"round": r, **res}), flush=True)
    med = {
        w: statistics.median(x["wall_s"] for x in runs if x["workers"] == w)
        for w in (1, args.workers)
    }
    sims = sorted({int(x["simulations"]) for x in runs})
    print(
        json.dumps(
            {
                "points": runs[0]["points"],
                "simulations_per_run": sims,
                "median_wall_s": med,
                "speedup": med[1] / med[args.workers],
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
