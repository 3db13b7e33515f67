"""The validation against vLLM, as the report in docs/validation-vllm/ was made.

Runs ``spectune validate SCENARIO --engine vllm`` (full matrix unless ``--quick``) and
writes report.md, predicted_vs_measured.png, validation.json and the raw runs into
``--out``, resumable (a rerun keeps the finished runs and profiles). Prints the summary and
the wall time.

    .venv/bin/python benchmarks/bench_vllm_validate.py examples/local-cpu-vllm.yaml \\
        --out docs/validation-vllm
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--sweeps", type=int)
    args = ap.parse_args()
    from spectune.validation.pipeline import ValidateSettings, run_validation
    from spectune.validation.report import target_status, write_report
    from spectune.validation.vllm_report import markdown

    t0 = time.perf_counter()
    s = ValidateSettings(
        scenario=args.scenario,
        report_dir=args.out,
        quick=args.quick,
        engine="vllm",
        eager=args.eager,
        repeats=args.repeats,
        sweeps=args.sweeps,
    )
    load0 = os.getloadavg()[0]
    result = run_validation(s, lambda done, total: print(f"runs {done}/{total}", flush=True))
    write_report(result, args.out, render=markdown)
    summary = dict(result["summary"])
    summary["targets_met"] = target_status(result["summary"], quick=args.quick)
    summary["wall_s"] = round(time.perf_counter() - t0)
    summary["load1_start_end"] = [load0, os.getloadavg()[0]]
    print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
