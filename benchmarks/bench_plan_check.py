"""Does a capacity plan's rate hold? Simulate a scenario at a given rate and config over a
long Poisson run and judge it as `spectune plan` does, at several seeds.

For each seed: the whole run as `spectune simulate` reports it (completed req/s and its
share of the offered rate, the SLO percentile of TTFT and TPOT, SLO attainment) and the
steady-state verdict (departures / arrivals in the window, waiting queue start -> end).
Used for the before/after figures of `plan` (a rate printed by an older version is
checked here with the same long runs as the current one's).

    .venv/bin/python benchmarks/bench_plan_check.py examples/azure-conv-h100.yaml \\
        --rate 24.5 --config "eagle k=3" [--requests 5000] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import re

from spectune.simulator import load_scenario
from spectune.tuner.plan import Planner
from spectune.tuner.space import Config


def parse_config(label: str) -> Config:
    """``none``, ``DRAFTER k=K`` or ``DRAFTER tree B nodes/depth D`` (plan's labels)."""
    label, _, cap = label.strip().partition(", max_num_seqs=")
    mns = int(cap) if cap else None
    if label.startswith("none"):
        return Config(max_num_seqs=mns)
    m = re.fullmatch(r"(\S+) k=(\d+)", label)
    if m:
        return Config(drafter=m.group(1), num_spec_tokens=int(m.group(2)), max_num_seqs=mns)
    m = re.fullmatch(r"(\S+) tree (\d+)(?: nodes)?/(?:depth )?(\d+)", label)
    if m:
        return Config(
            drafter=m.group(1),
            tree_budget=int(m.group(2)),
            tree_depth=int(m.group(3)),
            max_num_seqs=mns,
        )
    raise SystemExit(f"cannot read config label {label!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    rs = load_scenario(args.scenario, args.overrides)
    cfg = parse_config(args.config)
    pl = Planner(rs, requests=args.requests, workers=1)
    pct = pl.percentile
    for seed in (int(s) for s in args.seeds.split(",")):
        p = pl.probe(args.rate, cfg, seed=seed)
        run, st = p.run, p.steady
        print(
            json.dumps(
                {
                    "rate_per_s": args.rate,
                    "config": cfg.label(),
                    "seed": seed,
                    "requests": run.get("num_requests"),
                    "completed_req_per_s": run.get("requests_per_s"),
                    "of_offered": st.offered_completion,
                    f"p{pct}_ttft_s": (run.get("ttft_s") or {}).get(f"p{pct}"),
                    f"p{pct}_tpot_s": (run.get("tpot_s") or {}).get(f"p{pct}"),
                    "slo_attainment": run.get("slo_attainment"),
                    "steady_departures_per_arrival": st.completion_ratio,
                    "waiting_queue": list(st.waiting),
                    "sustains": p.sustains,
                },
                default=float,
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
