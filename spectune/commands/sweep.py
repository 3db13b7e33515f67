"""``spectune sweep``: plain decoding and each drafter across load; where speculation
stops paying (method: :mod:`spectune.tuner.sweep`)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from spectune.output import add_scenario_args, print_json, table
from spectune.simulator import load_scenario
from spectune.simulator.errors import InputError
from spectune.tuner.space import POLICIES
from spectune.tuner.sweep import DEFAULT_POLICIES, DEFAULT_REQUESTS, SweepResult, sweep

EPILOG = """\
examples:
  spectune sweep examples/azure-code-h100.yaml --load 0.5,1,2,4,8
  spectune sweep examples/local-cpu.yaml --concurrency 1,2,4,8,16 --plot sweep.png
  spectune sweep examples/azure-conv-h100.yaml --batch 1,8,32,128,256 --json

At each level: plain decoding, every drafter of search.drafters at every chain length
of search.num_spec_tokens, and each speculation policy of --policies at the drafter's
largest k, each simulated on the first --requests requests with the same seed. Per
drafter and metric, its best fixed k and each policy against plain decoding; the
crossover is the first level from which speculation no longer pays on that metric.
--load multiplies an open-loop workload's arrival rate (a trace's time_scale);
--concurrency runs a closed loop of N clients; --batch runs every request at once with
max_num_seqs = N. Times in seconds, throughput in output tokens per second (all requests).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="plain vs each drafter across load: where speculation stops paying",
        description="Simulate plain decoding and each drafter's chains across one load axis\n"
        "and report, per drafter, the load at which speculation stops paying.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_args(p)
    axis = p.add_mutually_exclusive_group(required=True)
    axis.add_argument("--load", metavar="X,...", help="arrival-rate multiples (open loop)")
    axis.add_argument("--concurrency", metavar="N,...", help="closed-loop client counts")
    axis.add_argument("--batch", metavar="N,...", help="offline, max_num_seqs per level")
    p.add_argument(
        "--requests",
        type=int,
        default=DEFAULT_REQUESTS,
        help=f"requests simulated per run (default {DEFAULT_REQUESTS:,}; a trace's first rows)",
    )
    p.add_argument("--seed", type=int, default=None, help="simulator seed")
    p.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        metavar="P,...",
        help="speculation policies to compare at each drafter's largest k, or none "
        f"(default {','.join(DEFAULT_POLICIES)}; choices: schedule, sglang_adaptive, goodput)",
    )
    p.add_argument("--json", action="store_true", help="print every run and the crossovers")
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="throughput and TPOT p50 vs load, one line per drafter and per policy, "
        "crossovers marked",
    )
    p.set_defaults(func=run)


def _levels(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"expected comma-separated numbers, got {text!r}", source=flag) from None


def run(args: argparse.Namespace) -> int:
    axis = next(a for a in ("load", "concurrency", "batch") if getattr(args, a) is not None)
    levels = _levels(getattr(args, axis), f"--{axis}")
    policies = _policies(args.policies)
    rs = load_scenario(args.scenario, args.overrides)
    res = sweep(rs, axis, levels, requests=args.requests, seed=args.seed, policies=policies)
    if args.plot:
        from spectune.tuner.plots import plot_sweep

        plot_sweep(res, args.plot)
    if args.json:
        print_json(to_json(res))
    else:
        print(render(rs, res))
    return 0


def _policies(text: str) -> tuple[str, ...]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if names == ["none"]:
        return ()
    allowed = [p for p in POLICIES if p not in ("fixed", "cutoff")]
    for n in names:
        if n not in allowed:
            raise InputError(
                f"unknown policy {n!r} (choices: {', '.join(allowed)}, or none)",
                source="--policies",
            )
    return tuple(dict.fromkeys(names))


def _unit(axis: str) -> str:
    return {"load": "load x", "concurrency": "clients", "batch": "max_num_seqs"}[axis]


def to_json(res: SweepResult) -> dict[str, Any]:
    def run(e: Any) -> dict[str, Any]:
        return {"config": e.config.label(), **{m.label: m.of(e) for m in res.metrics}}

    return {
        "axis": res.axis,
        "requests_per_run": res.requests,
        "simulations": res.simulations,
        "seed": res.seed,
        "levels": [
            {
                "level": lv.level,
                "plain": run(lv.plain),
                "drafters": {
                    d: {
                        m.label: {
                            "best": run(res.best(lv, d, m)),
                            "speedup": res.speedup(lv, d, m),
                        }
                        for m in res.metrics
                    }
                    for d in res.drafters
                },
                "policies": {
                    d: {
                        p: {
                            **run(res.best(lv, d, res.metrics[0], p)),
                            "speedup": {m.label: res.speedup(lv, d, m, p) for m in res.metrics},
                        }
                        for p in res.policies
                    }
                    for d in res.drafters
                },
            }
            for lv in res.levels
        ],
        "crossover": {d: {m.label: res.crossover(d, m) for m in res.metrics} for d in res.drafters},
        "policy_crossover": {
            d: {p: {m.label: res.crossover(d, m, p) for m in res.metrics} for p in res.policies}
            for d in res.drafters
        },
    }


def render(rs: Any, res: SweepResult) -> str:
    unit = _unit(res.axis)
    m0 = res.metrics[0]  # throughput
    lines = [
        f"spectune sweep: {rs.scenario.name or rs.source} — {res.axis} "
        f"{', '.join(f'{lv.level:g}' for lv in res.levels)}; {res.requests:,} requests per "
        f"run, {res.simulations} simulations, seed {res.seed}",
        "",
        "where speculation stops paying (first level at which the drafter's best fixed k, "
        "or a policy, no longer beats plain decoding):",
    ]
    rows = []
    for d, p, label in res.lines():
        row: list[Any] = [label]
        for m in res.metrics:
            c = res.crossover(d, m, p)
            row.append("pays at every level" if c is None else f"{unit} {c:g}")
        rows.append(row)
    lines.append(table(rows, ["drafter / policy", *(f"{m.label}" for m in res.metrics)]))
    lines += [
        "",
        f"per level: plain decoding, each drafter's best k on {m0.label}, and each policy:",
    ]
    body = []
    for lv in res.levels:
        body.append([lv.level, "none (plain)", *(m.of(lv.plain) for m in res.metrics), 1.0])
        for d, p, _ in res.lines():
            b = res.best(lv, d, m0, p)
            body.append(
                [
                    lv.level,
                    b.config.label(),
                    *(m.of(b) for m in res.metrics),
                    res.speedup(lv, d, m0, p),
                ]
            )
    heads = [unit, "config", *(f"{m.label}{'' if m.q is None else ' s'}" for m in res.metrics)]
    lines.append(table(body, [*heads, "speedup x"]))
    if any(not math.isfinite(m.of(lv.plain)) for lv in res.levels for m in res.metrics):
        lines.append("(- : no request finished at that level)")
    return "\n".join(lines)
