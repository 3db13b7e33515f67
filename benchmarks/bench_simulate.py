"""How fast does the simulator replay a real trace? (a program, not a test)

Times ``spectune simulate examples/azure-code-h100.yaml`` end to end in a subprocess (the
full 8,819-request Azure code trace, one config: interpreter start, imports, scenario and
profile loading, trace parsing, simulation, output) and ``simulate()`` in-process, with
several interleaved repeats, and prints medians of wall and CPU seconds plus DES events per
second of wall time (events = engine iterations + arrivals). Target: <= 5 s wall for the
CLI run. CPU seconds (the child's user + system time; ``time.process_time`` in-process) are
what the run costs when the machine's cores are shared.

    .venv/bin/python benchmarks/bench_simulate.py [--repeats 5] [--conv]

``--conv`` adds the 19,366-request conversation trace. A fourth case replays per-request
acceptance trajectories with an n-gram drafter (steps without a match draft nothing). The
machine is shared and noisy (±20-30%): compare medians, not single runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = {
    "code eagle k=4": ("examples/azure-code-h100.yaml", []),
    "code plain": ("examples/azure-code-h100.yaml", ["spec.drafter=none"]),
    "code draft-model k=6": (
        "examples/azure-code-h100.yaml",
        ["spec.drafter=llama-3.2-1b", "spec.num_spec_tokens=6"],
    ),
}
# Per-request trajectory replay and n-gram steps without a match (drafts vary per step):
# the shipped n-gram profile's 32 recorded requests, replayed over the trace.
TRAJECTORY_CASES = {
    "code ngram k=4 traj.": (
        "examples/azure-code-h100.yaml",
        [
            "spec.drafter=ngram",
            "spec.num_spec_tokens=4",
            "drafters.2.acceptance="
            "{profile: ../acceptance/stdlib-byte-target__ngram__stdlib__t0.yaml}",
        ],
    ),
}
CONV_CASES = {
    "conv eagle k=3": ("examples/azure-conv-h100.yaml", []),
    "conv plain": ("examples/azure-conv-h100.yaml", ["spec.drafter=none"]),
}


def cli_seconds(scenario: str, overrides: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``spectune simulate`` subprocess."""
    cmd = [sys.executable, "-m", "spectune.cli", "simulate", scenario, "--json"]
    for o in overrides:
        cmd += ["--set", o]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--conv", action="store_true", help="also the conversation trace")
    ap.add_argument(
        "--no-trajectories", action="store_true", help="leave out the trajectory-replay case"
    )
    args = ap.parse_args()
    cases = {**CASES, **(CONV_CASES if args.conv else {})}
    if not args.no_trajectories:
        cases.update(TRAJECTORY_CASES)

    from spectune.simulator import load_scenario, simulate

    loaded = {name: load_scenario(REPO / path, ov) for name, (path, ov) in cases.items()}
    cli: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    lib: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    events: dict[str, int] = {}
    for _ in range(args.repeats):  # interleaved: every case once per round
        for name, (path, ov) in cases.items():
            cli[name].append(cli_seconds(path, ov))
            w0, c0 = time.perf_counter(), time.process_time()
            m = simulate(loaded[name]).metrics
            lib[name].append((time.perf_counter() - w0, time.process_time() - c0))
            events[name] = m["des_events"]

    def med(xs: list[tuple[float, float]], i: int) -> float:
        return statistics.median(x[i] for x in xs)

    print(f"median of {args.repeats} interleaved runs, seconds (wall / CPU)")
    header = (
        f"{'case':<22} {'CLI wall':>8} {'CLI CPU':>8} {'sim wall':>9} {'sim CPU':>8} "
        f"{'DES events':>11} {'events/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in cases:
        c, s = cli[name], lib[name]
        print(
            f"{name:<22} {med(c, 0):8.2f} {med(c, 1):8.2f} {med(s, 0):9.2f} {med(s, 1):8.2f} "
            f"{events[name]:11,} {events[name] / med(s, 0):9,.0f}"
        )
    worst = max(med(v, 0) for v in cli.values())
    print(f"\ntarget <= 5 s wall for the CLI run; slowest case median {worst:.2f} s")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
