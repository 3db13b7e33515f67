"""``spectune validate``: check the simulator's predictions against live runs on this device.

For a matrix of configurations (chain k 0..8, tree shapes, a model drafter and n-grams,
batch caps 1..16) under several workloads (offline, closed loop, Poisson at two loads, a
time-scaled Azure trace slice), each config runs live on the real models
(``spectune.profiler.native.serve``) and is simulated on the same requests; repeats are
interleaved to tame noise. Prints predicted vs measured throughput per config and the
summary (median / max absolute % error, Spearman rank correlation), then runs the tuner's
pick live against the best live config. ``--report DIR`` writes report.md, a PNG and the
raw JSON; completed live runs are kept in DIR/runs.jsonl and skipped on restart.
torch is imported inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spectune.output import add_scenario_args, print_json, table
from spectune.simulator.errors import InputError

EPILOG = """\
examples:
  spectune validate examples/local-cpu.yaml --quick --report validation-report
  spectune validate examples/local-cpu.yaml --json
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "validate",
        help="run configs live on this device and compare with the simulator (needs torch)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_args(p)
    p.add_argument("--quick", action="store_true", help="10 configs, short runs (a few minutes)")
    p.add_argument("--json", action="store_true", help="print the summary and per-config rows")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="write report.md, predicted_vs_measured.png, validation.json; resume from "
        "DIR/runs.jsonl (default folder for runs.jsonl: validation-report)",
    )
    p.add_argument("--repeats", type=int, help="live repeats per config (default 2 quick / 3)")
    p.add_argument("--models", help="folder of checkpoint directories (default: models/)")
    p.add_argument(
        "--prompts", help="prompt text for byte models (default examples/prompts/stdlib.txt)"
    )
    p.add_argument("--trace", help="Azure-style trace CSV to slice (default traces/…conv.csv)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the configs whose id (workload/drafter/shape/mnsN) contains TEXT; "
        "repeatable",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for live runs and latency profiles (default 1: robust to other "
        "processes on a shared machine; 0 = torch's default)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tuner", action="store_true", help="skip the tuner's-pick live check")
    p.add_argument(
        "--no-profile",
        action="store_true",
        help="use the scenario's latency profiles even if they were not measured here",
    )
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip the host-overhead calibration runs (predict with the scenario as given)",
    )
    p.add_argument("--tuner-trials", type=int, help="trials of the tuner's search")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectune.validation.pipeline import ValidateSettings, run_validation
    from spectune.validation.report import target_status, write_report

    if args.repeats is not None and args.repeats < 1:
        raise InputError(f"must be >= 1, got {args.repeats}", field="--repeats")
    settings = ValidateSettings(
        scenario=args.scenario,
        overrides=tuple(args.overrides),
        quick=args.quick,
        repeats=args.repeats,
        report_dir=args.report,
        models_dir=args.models,
        prompts=args.prompts,
        seed=args.seed,
        tuner=not args.no_tuner,
        tuner_trials=args.tuner_trials,
        trace=args.trace,
        only=tuple(args.only),
        calibrate=not args.no_calibrate,
        profiles=not args.no_profile,
        threads=args.threads or None,
    )
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(desc="validate", unit="run", file=sys.stderr, leave=False, disable=None)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        result = run_validation(settings, progress if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if args.report:
        write_report(result, args.report)
    if args.json:
        out = dict(result["summary"])
        out["targets_met"] = target_status(result["summary"])
        out["configs"] = result["configs"]
        out["tuner"] = result["tuner"]
        out["environment"] = result["environment"]
        print_json(out)
        return 0
    print(render(result))
    return 0


def render(result: dict[str, Any]) -> str:
    """Per-config table, then the summary."""
    rows = [
        [
            r["label"],
            r["predicted"]["throughput_tok_per_s"],
            r["measured"]["throughput_tok_per_s"],
            r["error_pct"]["throughput_tok_per_s"],
            r["predicted"]["mean_accepted_len"],
            r["measured"]["mean_accepted_len"],
        ]
        for r in result["configs"]
    ]
    out = [
        table(
            rows,
            ["config", "pred tok/s", "meas tok/s", "err %", "pred acc.len", "meas acc.len"],
            digits=1,
        ),
        "",
    ]
    s = result["summary"]
    summary = [
        ["configs", s["num_configs"]],
        ["median |throughput error| %", s["median_abs_pct_error"]],
        ["max |throughput error| %", s["max_abs_pct_error"]],
        ["Spearman rank correlation", s["rank_correlation"]],
    ]
    t = result.get("tuner")
    if t:
        summary.append([f"tuner's pick ({t['pick']}) / best live", t["ratio"]])
    out.append(table(summary, ["summary", "value"]))
    return "\n".join(out)
