"""``spectune validate``: the simulator's predictions checked against live runs on this
device (the pipeline is :mod:`spectune.validation.pipeline`; torch is imported inside the
handler)."""

from __future__ import annotations

import argparse
from typing import Any

from spectune.output import add_scenario_args, print_json, table
from spectune.simulator.errors import InputError

DESCRIPTION = """\
Run a matrix of configurations live on this device and compare each with the simulator's
prediction on the same requests: chain k 0..8, tree shapes, a model drafter and n-grams,
batch caps 1..16, under several workloads (offline, closed loop, Poisson at two loads, a
time-scaled Azure trace slice). Repeats are interleaved to tame noise. Prints predicted vs
measured throughput per config and the summary (median / max absolute % error, Spearman
rank correlation), then runs the tuner's pick live against the best live config.

Host overheads are calibrated on separate runs; the calibrated scenario (overheads and the
live engine's rules filled in) is written beside the report as calibrated-scenario.yaml:
simulate or recommend with it to predict this machine. Completed live runs are kept in
DIR/runs.jsonl and skipped on restart. Progress goes to stderr: a bar on a terminal, a
line per 10% of the runs (or per 30 s) elsewhere.
"""

EPILOG = """\
examples:
  spectune validate examples/local-cpu.yaml --quick --report validation-report
  spectune validate examples/local-cpu.yaml --json
  spectune validate examples/local-cpu-vllm.yaml --engine vllm --quick --report runs/vllm
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "validate",
        help="run configs live on this device and compare with the simulator (needs torch)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_args(p)
    p.add_argument(
        "--engine",
        default="native",
        choices=["native", "vllm"],
        help="native: spectune's own engine in this process (default); vllm: vLLM's "
        "OpenAI server, started here per engine configuration (needs the vllm extra; "
        "docs/engines.md)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="10 configs, short runs (~12 minutes on a 2-core machine; the full matrix takes "
        "hours)",
    )
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
    p.add_argument(
        "--eager",
        action="store_true",
        help="--engine vllm: enforce_eager for profiles and runs (faster start-up, slower "
        "decode on CPU; default: vLLM's compiled mode)",
    )
    p.add_argument(
        "--sweeps",
        type=int,
        help="--engine vllm: sweeps over the engine configurations the repeats are split "
        "over (default 1 quick / 2 full)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=1,
        help="--engine vllm: re-runs of a run that interference disturbed (default 1)",
    )
    p.add_argument("--no-progress", action="store_true", help="print no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spectune.validation.pipeline import ValidateSettings, run_validation
    from spectune.validation.report import target_status, write_report

    if args.repeats is not None and args.repeats < 1:
        raise InputError(f"must be >= 1, got {args.repeats}", field="--repeats")
    if args.sweeps is not None and args.sweeps < 1:
        raise InputError(f"must be >= 1, got {args.sweeps}", field="--sweeps")
    if args.retries < 0:
        raise InputError(f"must be >= 0, got {args.retries}", field="--retries")
    if args.engine == "vllm":
        from spectune.profiler.engines.vllm_config import require_vllm

        require_vllm()
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
        engine=args.engine,
        eager=args.eager,
        sweeps=args.sweeps,
        retries=args.retries,
        progress=not args.no_progress,
    )
    from spectune.profiler.engines.processes import sigterm_as_interrupt
    from spectune.simulator.progress import Progress

    bar = Progress("validate", unit="run", enabled=not args.no_progress)
    try:
        with sigterm_as_interrupt():
            result = run_validation(settings, lambda done, total: bar.set(done, total))
    finally:
        bar.close()
    if args.report:
        if args.engine == "vllm":
            from spectune.validation.vllm_report import markdown as vllm_markdown

            write_report(result, args.report, render=vllm_markdown)
        else:
            write_report(result, args.report)
    if args.json:
        out = dict(result["summary"])
        out["targets_met"] = target_status(result["summary"], quick=args.quick)
        out["configs"] = result["configs"]
        out["tuner"] = result["tuner"]
        out["environment"] = result["environment"]
        out["calibrated_scenario"] = result.get("calibrated_scenario")
        print_json(out)
        return 0
    print(render(result))
    if result.get("calibrated_scenario"):
        print(
            f"\ncalibrated scenario (host overheads fitted here, live-engine rules): "
            f"{result['calibrated_scenario']}\n  predict this machine with: spectune simulate "
            f"{result['calibrated_scenario']}"
        )
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
            [
                "config",
                "pred output tok/s",
                "meas output tok/s",
                "err %",
                "pred acc. len (tokens/step)",
                "meas acc. len (tokens/step)",
            ],
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
