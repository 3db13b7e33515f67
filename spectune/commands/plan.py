"""``spectune plan``: capacity planning — the highest Poisson arrival rate one replica
sustains under the scenario's SLOs, with and without speculative decoding (the best config
at each rate), the replicas a target rate needs, and a plot of goodput and TPOT at the SLOs'
percentile vs rate.

Method and assumptions: :mod:`spectune.tuner.plan`.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from spectune.output import add_scenario_args, print_json, table
from spectune.simulator import load_scenario
from spectune.simulator.errors import InputError
from spectune.tuner.evaluate import percentile_key
from spectune.tuner.plan import DEFAULT_REQUESTS, KEEP_UP_TOL, PlanResult, Probe, plan

EPILOG = """\
examples:
  spectune plan examples/azure-code-h100.yaml --qps 40
  spectune plan examples/azure-conv-h100.yaml --json --plot capacity.png
  spectune plan examples/azure-code-h100.yaml --set slo.tpot_s=0.03 --requests 8000
  spectune plan --grid examples/capacity-grid.yaml --workers 2 --plot grid.png

Capacity grids (--grid): one plan per point of a grid of devices, models (with their
tensor-parallel size), drafters and workloads around a base scenario, compared per GPU
(GPUs per 1,000 req/s, output tokens per GPU-second). The grid is an Optuna study in a
journal file (default ./<grid>.plan-study.log) or a database (--storage): rerun the same
command to resume; --workers N runs N processes here, `spectune worker STUDY --storage
URL` joins from other machines. The grid file's format: docs/capacity.md.

A rate is sustained when, in steady state (the first quarter of each run is warm-up),
the SLOs' percentile (slo.percentile; p99 unless set) of every SLO-bounded metric is within
its bound AND the server keeps up: departures keep pace with arrivals (>= 97%), the
waiting queue does not grow, and the run completes >= 97% of the offered rate as
`spectune simulate` reports it. Each probed rate runs --requests Poisson arrivals (default
5,000; the check at the reported rate is printed). Times in seconds, rates in req/s.
Replicas assume an even random split of the traffic (each replica sees a Poisson stream).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="max arrival rate per replica under the SLOs, with and without SD; replicas",
        description="Capacity planning: bisection on the Poisson arrival rate for the highest\n"
        "rate one replica sustains in steady state under the SLOs, with plain decoding and\n"
        "with the best speculative config at each rate.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_args(p, optional=True)
    p.add_argument(
        "--grid",
        default=None,
        metavar="GRID.yaml",
        help="plan every point of a capacity grid (spectune/plan-grid/v1) instead of one scenario",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="--grid: journal file or sqlite:///FILE / postgresql://... URL holding the grid's "
        "study (default: ./<grid>.plan-study.log)",
    )
    p.add_argument("--study-name", default=None, help="--grid: study name in the storage")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="--grid: processes planning points at once on this machine (default 1)",
    )
    p.add_argument(
        "--qps",
        type=float,
        default=None,
        help="target arrival rate (req/s): report the replicas it needs",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=None,
        help=f"Poisson arrivals simulated per probed rate (default {DEFAULT_REQUESTS:,}, capped "
        "by the trace's rows); longer = a longer steady-state check",
    )
    p.add_argument(
        "--objective",
        default=None,
        help="how configs that meet the SLOs are ranked at a rate (default auto: TPOT at "
        "the SLOs' percentile for open-loop load)",
    )
    p.add_argument("--seed", type=int, default=None, help="simulator seed")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="plot goodput and TPOT (at the SLOs' percentile) vs arrival rate",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.grid is not None:
        from .plan_grid import run_grid

        return run_grid(args)
    for flag in ("storage", "study_name"):
        if getattr(args, flag) is not None:
            raise InputError("needs --grid", source="--" + flag.replace("_", "-"))
    if args.workers != 1:
        raise InputError("needs --grid", source="--workers")
    if args.scenario is None:
        raise InputError("give a scenario file, or --grid GRID.yaml", source="spectune plan")
    rs = load_scenario(args.scenario, args.overrides)
    res = plan(
        rs,
        qps=args.qps,
        requests=DEFAULT_REQUESTS if args.requests is None else args.requests,
        seed=args.seed,
        objective=args.objective,
    )
    if args.plot:
        from spectune.tuner.plots import plot_plan

        rows = [pt.row(res.percentile) for pt in res.points]
        plot_plan(rows, rs.scenario.slo.tpot_s, res.percentile, args.plot)
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
        "seeds": list(res.seeds),
        "slo_percentile": res.percentile,
        "keep_up_tolerance": KEEP_UP_TOL,
        "objective": res.objective,
        "simulations": res.simulations,
        "checks": {
            "plain": [p.check() for p in res.checks_plain],
            "sd": [p.check() for p in res.checks_sd],
        },
        "rates": [pt.row(res.percentile) for pt in res.points],
    }


def _check_lines(label: str, runs: list[Probe], pct: int) -> list[str]:
    """One line per seed: the steady window and the whole run as `simulate` reports it."""
    out = [f"  {label}: {runs[0].config.label()} at {runs[0].rate_per_s:.3g} req/s"]
    for p in runs:
        st, run, m = p.steady, p.run, p.evaluation.metrics
        out.append(
            f"    seed {p.seed}, {run.get('num_requests'):,} requests: steady window "
            f"p{pct} TTFT {_s(_q(m, 'ttft_s', pct))}, p{pct} TPOT {_s(_q(m, 'tpot_s', pct))}, "
            f"departures {st.completion_ratio:.1%} of arrivals, waiting queue "
            f"{st.waiting[0]:.1f} -> {st.waiting[1]:.1f}; whole run: "
            f"{run.get('requests_per_s') or math.nan:.3g} req/s completed "
            f"({st.run_completion:.1%} of its arrivals, {st.offered_completion:.1%} of the "
            f"offered rate), p{pct} TTFT "
            f"{_s(_q(run, 'ttft_s', pct))}, p{pct} TPOT {_s(_q(run, 'tpot_s', pct))}"
        )
    return out


def _q(m: dict[str, Any], key: str, pct: int) -> Any:
    return (m.get(key) or {}).get(f"p{pct}")


def _s(v: Any) -> str:
    return f"{v:.3g} s" if isinstance(v, int | float) and math.isfinite(v) else "-"


def render(rs: Any, res: PlanResult) -> str:
    slo = rs.scenario.slo
    pct = res.percentile
    bounds = ", ".join(
        f"p{pct} {name} <= {v:g} s"
        for name, v in (("TTFT", slo.ttft_s), ("TPOT", slo.tpot_s), ("E2E", slo.e2e_s))
        if v
    )
    gain = f" ({res.max_rate_sd / res.max_rate_plain:.2f}x)" if res.max_rate_plain > 0 else ""
    lines = [
        f"spectune plan: {rs.scenario.name or rs.source}",
        f"SLOs: {bounds}, in steady state, and the server keeps up (>= "
        f"{1 - KEEP_UP_TOL:.0%} of arrivals completed); Poisson arrivals, {res.requests:,} "
        f"requests per rate, {res.simulations} simulations",
        "",
        f"max sustainable rate per replica, plain decoding: {res.max_rate_plain:.3g} req/s",
        f"max sustainable rate per replica, with SD:        {res.max_rate_sd:.3g} req/s"
        f"{gain} using {res.config_at_max}",
    ]
    if res.qps is not None:
        plain = res.replicas_plain if res.replicas_plain is not None else "-"
        lines.append(f"replicas for {res.qps:g} req/s: {res.replicas_sd} with SD, {plain} without")
    seeds = ", ".join(str(s) for s in res.seeds)
    lines += ["", f"checked at those rates, each with seeds {seeds} (`spectune simulate` runs):"]
    lines += _check_lines("with SD", res.checks_sd, pct)
    if res.checks_plain:
        lines += _check_lines("plain", res.checks_plain, pct)
    lines += res.notes
    rows = []
    for pt in res.points:
        r = pt.row(pct)
        tk = percentile_key("tpot", pct)
        rows.append(
            (
                r["rate_per_s"],
                r["plain"]["goodput_req_per_s"],
                r["plain"][tk],
                r["plain"]["completion_ratio"],
                "yes" if r["plain"]["meets_slos"] else "no",
                r["sd"]["config"],
                r["sd"]["goodput_req_per_s"],
                r["sd"][tk],
                r["sd"]["completion_ratio"],
                "yes" if r["sd"]["meets_slos"] else "no",
            )
        )
    lines += [
        "",
        "steady-state figures per rate (completed = departures / arrivals in the window):",
        table(
            rows,
            [
                "rate req/s",
                "plain goodput req/s",
                f"plain p{pct} TPOT s",
                "completed",
                "ok",
                "best config",
                "goodput req/s",
                f"p{pct} TPOT s",
                "completed",
                "ok",
            ],
            digits=4,
        ),
    ]
    return "\n".join(lines)
