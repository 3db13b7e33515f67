"""How fast does the simulator replay a real trace? (a program, not a test)

Times ``spectune simulate examples/azure-code-h100.yaml`` end to end in a subprocess (the
full 8,819-request Azure code trace, one config: interpreter start, imports, scenario and
profile loading, trace parsing, simulation, output) and ``simulate()`` in-process, with
several interleaved repeats, and prints medians plus DES events per second
(events = engine iterations + arrivals). Target: <= 5 s wall for the CLI run.

    .venv/bin/python benchmarks/bench_simulate.py [--repeats 5] [--conv]

``--conv`` adds the 19,366-request conversation trace. The machine is shared and noisy
(±20-30%): compare medians, not single runs.
"""

from __future__ import annotations

import argparse
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
CONV_CASES = {
    "conv eagle k=3": ("examples/azure-conv-h100.yaml", []),
    "conv plain": ("examples/azure-conv-h100.yaml", ["spec.drafter=none"]),
}


def cli_seconds(scenario: str, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "spectune.tuner.cli", "simulate", scenario, "--json"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--conv", action="store_true", help="also the conversation trace")
    args = ap.parse_args()
    cases = {**CASES, **(CONV_CASES if args.conv else {})}

    from spectune.simulator import load_scenario, simulate

    loaded = {name: load_scenario(REPO / path, ov) for name, (path, ov) in cases.items()}
    cli: dict[str, list[float]] = {name: [] for name in cases}
    lib: dict[str, list[float]] = {name: [] for name in cases}
    events: dict[str, int] = {}
    for _ in range(args.repeats):  # interleaved: every case once per round
        for name, (path, ov) in cases.items():
            cli[name].append(cli_seconds(path, ov))
            t0 = time.perf_counter()
            m = simulate(loaded[name]).metrics
            lib[name].append(time.perf_counter() - t0)
            events[name] = m["des_events"]

    print(f"median of {args.repeats} interleaved runs (seconds of wall time)")
    header = f"{'case':<22} {'CLI e2e':>8} {'simulate()':>11} {'DES events':>11} {'events/s':>10}"
    print(header)
    print("-" * len(header))
    for name in cases:
        c, s = statistics.median(cli[name]), statistics.median(lib[name])
        print(f"{name:<22} {c:8.2f} {s:11.2f} {events[name]:11,} {events[name] / s:10,.0f}")
    worst = max(statistics.median(v) for v in cli.values())
    print(f"\ntarget <= 5 s for the CLI run; slowest case median {worst:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
