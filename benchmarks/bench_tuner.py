"""Benchmark of the tuner: sample efficiency vs an exhaustive grid, and recommend's wall time.

Part 1 (optimality). For each case the whole discrete grid is simulated (``--exhaustive``
search stage) and its best config is the reference. Then a TPE study (the default
``recommend`` search: closed-form warm start, memo, screen) with a trial budget of 15% of
the grid runs once per sampler seed, at the same simulator seed and fidelity. Reported:
evaluations (simulations actually run; memo hits and pruned trials cost none), best
values, and the gap to the exhaustive optimum. Ranking is the tuner's own: configs that
meet the SLOs first by objective, then by smallest SLO violation, so the gap is measured
on the objective when the optimum meets the SLOs, else on the violation.

Part 2 (speed). ``spectune recommend examples/azure-code-h100.yaml`` end to end in a fresh
process, interleaved with ``spectune simulate`` of the same file (one config, full trace)
so machine noise hits both alike; medians reported.

Run: ``.venv/bin/python benchmarks/bench_tuner.py [--seeds 5] [--runs 5] [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spectune.simulator import load_scenario  # noqa: E402
from spectune.tuner.objective import DIRECTIONS, Evaluation, rank  # noqa: E402
from spectune.tuner.search import SearchSettings, search_stage  # noqa: E402

CASES = [
    ("azure-code (as shipped)", "examples/azure-code-h100.yaml", [], None),
    ("azure-conv (as shipped)", "examples/azure-conv-h100.yaml", [], None),
    (
        "azure-code offline, throughput, no SLO",
        "examples/azure-code-h100.yaml",
        ["workload.mode=offline", "workload.num_requests=600", "slo={}"],
        "throughput",
    ),
]


def gap(e: Evaluation, ref: Evaluation, objective: str) -> float:
    """How much worse ``e`` is than ``ref`` (0 = as good), relative."""
    if ref.feasible:
        if not e.feasible:
            return math.inf
        a, b = e.value(objective), ref.value(objective)
        if DIRECTIONS[objective] == "maximize":
            return (b - a) / abs(b) if b else 0.0
        return (a - b) / abs(b) if b else 0.0
    # nothing meets the SLOs: compare how far each misses them
    return (e.violation - ref.violation) / abs(ref.violation) if ref.violation else 0.0


def optimality(seeds: int, quick: bool) -> None:
    print("Part 1: TPE (15% of the grid's trials) vs exhaustive grid, same fidelity/seed")
    header = (
        f"{'case':40s} {'grid':>5s} {'exh sims':>8s} {'tpe trials':>10s} "
        f"{'tpe sims med/max':>16s} {'exh best':>10s} {'tpe best med':>12s} "
        f"{'gap med/max':>14s} {'within 1%':>9s}"
    )
    print(header)
    print("-" * len(header))
    cases = CASES[:1] if quick else CASES
    for name, path, over, objective in cases:
        rs = load_scenario(REPO / path, over)
        t0 = time.perf_counter()
        ex = search_stage(rs, SearchSettings(exhaustive=True, objective=objective))
        t_ex = time.perf_counter() - t0
        obj = ex.objective
        ref = rank(ex.evals, obj)[0]
        budget = math.floor(0.15 * len(ex.configs))
        sims, gaps, vals, picks = [], [], [], []
        t1 = time.perf_counter()
        for seed in range(seeds):
            st = search_stage(
                rs, SearchSettings(trials=budget, sampler_seed=seed, objective=objective)
            )
            best = rank(st.evals, obj)[0]
            sims.append(st.evaluator.n_simulations)
            gaps.append(gap(best, ref, obj))
            vals.append(best.value(obj) if ref.feasible else best.violation)
            picks.append(best.config.label())
        t_tpe = (time.perf_counter() - t1) / seeds
        ref_v = ref.value(obj) if ref.feasible else ref.violation
        within = sum(g <= 0.01 for g in gaps)
        print(
            f"{name:40s} {len(ex.configs):5d} {ex.evaluator.n_simulations:8d} {budget:10d} "
            f"{statistics.median(sims):7.0f}/{max(sims):<8d} {ref_v:10.4g} "
            f"{statistics.median(vals):12.4g} "
            f"{statistics.median(gaps) * 100:6.2f}%/{max(gaps) * 100:5.2f}% "
            f"{within:4d}/{seeds}"
        )
        what = obj if ref.feasible else f"SLO violation ({obj} objective, nothing meets SLOs)"
        print(
            f"    compared on: {what}; exhaustive best: {ref.config.label()}; "
            f"TPE sims/exhaustive sims = {statistics.median(sims) / ex.evaluator.n_simulations:.1%}"
            f"; wall: exhaustive {t_ex:.1f} s, TPE {t_tpe:.1f} s per study"
        )
        print(f"    TPE picks: {', '.join(sorted(set(picks)))}")


def wall_time(runs: int) -> None:
    exe = str(REPO / ".venv" / "bin" / "spectune")
    scen = str(REPO / "examples" / "azure-code-h100.yaml")
    cmds = {
        "recommend": [exe, "recommend", scen],
        "simulate (1 config, full trace)": [exe, "simulate", scen],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    codes: dict[str, set[int]] = {k: set() for k in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():  # interleaved: noise hits both alike
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            times[name].append(time.perf_counter() - t0)
            codes[name].add(p.returncode)
    print(f"\nPart 2: wall time, {runs} interleaved runs each (fresh processes)")
    for name, ts in times.items():
        print(
            f"  spectune {name:34s} median {statistics.median(ts):5.2f} s  "
            f"min {min(ts):5.2f}  max {max(ts):5.2f}  exit codes {sorted(codes[name])}"
        )
    ratio = statistics.median(times["recommend"]) / statistics.median(
        times["simulate (1 config, full trace)"]
    )
    print(f"  recommend / simulate: {ratio:.2f}x   (target: recommend <= 10 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="TPE sampler seeds per case")
    ap.add_argument("--runs", type=int, default=5, help="wall-time runs")
    ap.add_argument("--quick", action="store_true", help="first case only, 2 seeds, 2 runs")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.runs = 2, 2
    optimality(args.seeds, args.quick)
    wall_time(args.runs)


if __name__ == "__main__":
    main()
