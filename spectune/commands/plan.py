"""``spectune plan``: capacity planning — the highest Poisson arrival rate one replica
sustains under the scenario's SLOs, with and without speculative decoding (the best config
at each rate), the replicas a target rate needs, and a plot of goodput and p99 TPOT vs rate.

Method and assumptions: :mod:`spectune.tuner.plan`.
"""

from __future__ import annotations

import argparse
from typing import Any

from spectune.output import add_scenario_args, print_json, table
from spectune.simulator import load_scenario
from spectune.tuner.plan import PlanResult, plan

EPILOG = """\
examples:
  spectune plan examples/azure-code-h100.yaml --qps 40
  spectune plan examples/azure-conv-h100.yaml --json --plot capacity.png
  spectune plan examples/azure-code-h100.yaml --set slo.tpot_s=0.03 --requests 1000

A rate is sustained when the slo.percentile (p99 by default) of every SLO-bounded metric is
within its bound, with requests arriving as a Poisson process (lengths from the scenario).
Replicas assume an even random split of the traffic (each replica sees a Poisson stream).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="max arrival rate per replica under the SLOs, with and without SD; replicas",
        description="Capacity planning: bisection on the Poisson arrival rate for the highest\n"
        "rate one replica sustains under the SLOs, with plain decoding and with the best\n"
        "speculative config at each rate.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_args(p)
    p.add_argument(
        "--qps",
        type=float,
        default=None,
        help="target arrival rate (req/s): report the replicas it needs",
    )
    p.add_argument(
        "--requests", type=int, default=500, help="requests simulated per rate (default 500)"
    )
    p.add_argument(
        "--objective",
        default=None,
        help="how configs that meet the SLOs are ranked at a rate (default auto)",
    )
    p.add_argument("--seed", type=int, default=None, help="simulator seed")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--plot", default=None, metavar="FILE.png", help="plot goodput and p99 TPOT vs arrival rate"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rs = load_scenario(args.scenario, args.overrides)
    res = plan(rs, qps=args.qps, requests=args.requests, seed=args.seed, objective=args.objective)
    if args.plot:
        from spectune.tuner.plots import plot_plan

        plot_plan([pt.row(res.objective) for pt in res.points], rs.scenario.slo.tpot_s, args.plot)
    if args.json:
        print_json(to_json(res))
    else:
        print(render(rs, res))
    return 0


def to_json(res: PlanResult) -> dict[str, Any]:
    return {
        "max_rate_per_s": {"plain": res.max_rate_plain, "sd": res.max_rate_sd},
        "sd_gain": (res.max_rate_sd / res.max_rate_plain) if res.max_rate_plain else None,
        "config_at_max_rate": res.config_at_max,
        "qps": res.qps,
        "replicas": {"plain": res.replicas_plain, "sd": res.replicas_sd}
        if res.qps is not None
        else None,
        "requests_per_rate": res.requests,
        "objective": res.objective,
        "simulations": res.simulations,
        "rates": [pt.row(res.objective) for pt in res.points],
    }


def render(rs: Any, res: PlanResult) -> str:
    slo = rs.scenario.slo
    bounds = ", ".join(
        f"p{slo.percentile} {name} <= {v:g} s"
        for name, v in (("TTFT", slo.ttft_s), ("TPOT", slo.tpot_s), ("E2E", slo.e2e_s))
        if v
    )
    gain = f" ({res.max_rate_sd / res.max_rate_plain:.2f}x)" if res.max_rate_plain > 0 else ""
    lines = [
        f"spectune plan: {rs.scenario.name or rs.source}",
        f"SLOs: {bounds}; Poisson arrivals, {res.requests} requests per rate, "
        f"{res.simulations} simulations",
        "",
        f"max sustainable rate per replica, plain decoding: {res.max_rate_plain:.3g} req/s",
        f"max sustainable rate per replica, with SD:        {res.max_rate_sd:.3g} req/s"
        f"{gain} using {res.config_at_max}",
    ]
    if res.qps is not None:
        plain = res.replicas_plain if res.replicas_plain is not None else "-"
        lines.append(f"replicas for {res.qps:g} req/s: {res.replicas_sd} with SD, {plain} without")
    rows = []
    for pt in res.points:
        r = pt.row(res.objective)
        rows.append(
            (
                r["rate_per_s"],
                r["plain"]["goodput_req_per_s"],
                r["plain"]["tpot_p99_s"],
                "yes" if r["plain"]["meets_slos"] else "no",
                r["sd"]["config"],
                r["sd"]["goodput_req_per_s"],
                r["sd"]["tpot_p99_s"],
                "yes" if r["sd"]["meets_slos"] else "no",
            )
        )
    lines += [
        "",
        table(
            rows,
            [
                "rate req/s",
                "plain goodput",
                "plain p99 TPOT",
                "ok",
                "best config",
                "goodput",
                "p99 TPOT",
                "ok",
            ],
            digits=4,
        ),
    ]
    return "\n".join(lines)
