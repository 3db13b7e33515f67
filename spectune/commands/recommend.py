"""``spectune recommend``: search drafter, draft length, tree shape (and max_num_seqs) with
Optuna over the simulator, and print the best config beside plain decoding and the
engines' default settings, with a confidence band and engine-ready configs (``--emit``).

How it spends its time (see :mod:`spectune.tuner.search`): trials run on the first
``--search-requests`` requests (default 600), the top few are re-simulated on the whole
workload, and the pick is re-run over resampled seeds and acceptance for the band.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spectune.output import add_scenario_args, print_json
from spectune.simulator import load_scenario
from spectune.simulator.errors import InputError
from spectune.tuner.export import ENGINES, Capabilities, capabilities, versions_help
from spectune.tuner.search import (
    NoFeasibleConfig,
    SearchOutcome,
    SearchSettings,
    run_search,
)
from spectune.tuner.worker import local_helpers

from .recommend_emit import engine_output, schedule_row
from .recommend_report import render, to_json

EPILOG = """\
examples:
  spectune recommend examples/azure-code-h100.yaml
  spectune recommend examples/azure-code-h100.yaml --objective throughput --trials 60
  spectune recommend examples/azure-code-h100.yaml --emit vllm
  spectune recommend examples/azure-code-h100.yaml --exhaustive --json
  spectune recommend examples/azure-code-h100.yaml --pareto --plot front.png
  spectune recommend examples/azure-code-h100.yaml --storage study.log --study-name s1
      (rerun the same command to resume; start it in several shells to share the work)
  spectune recommend examples/local-cpu-vllm.yaml --emit vllm \\
      --set 'search.policies=[fixed, schedule, cutoff]'

objectives: throughput (output tok/s, max), goodput (req/s meeting all SLOs, max),
latency (TPOT at the SLOs' percentile, min); default auto = latency for open-loop
workloads (every config that keeps up serves the same tokens/s there), throughput
otherwise. One percentile everywhere: the scenario's slo.percentile (p99 unless set; the
Azure code example sets 90) is the percentile of the SLO check, the latency objective,
the tables, the JSON keys (e.g. tpot_p90_s) and the plots. A config meets the SLOs when
that percentile of each bounded metric is within its bound; configs that miss them rank
after every config that meets them. If none meets them, the closest is printed and the
command exits 2.

speculation policies: search.policies lists what a chain may use besides a fixed k
(schedule: best k per batch band; cutoff: no speculation above a batch size;
sglang_adaptive: SGLang's adaptive mode; goodput: a reference no engine runs). The table
always shows the schedule, SGLang's adaptive default and the goodput rule on the top
chain, each simulated; --emit writes the pick with the policy it was simulated with.

fidelity: trials run on the first --search-requests requests; the pick, the comparison
table, the Pareto front and the "how sure" band all come from runs on the whole workload
(--final-requests). Only --plot's left panel (the trials) is at search fidelity, and says so.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "recommend",
        help="search drafter / k / tree / max_num_seqs; print the best config and engine flags",
        description="Search the scenario's search space with Optuna over the simulator and\n"
        "recommend a speculative-decoding config (or plain decoding).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_args(p)
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help="trials in the study (total, across resumes and workers; default min(grid size, 30))",
    )
    p.add_argument(
        "--objective",
        default=None,
        help="throughput | goodput | latency | auto (default: search.objective, auto)",
    )
    p.add_argument(
        "--exhaustive",
        action="store_true",
        help="evaluate the whole discrete grid instead of sampling",
    )
    p.add_argument(
        "--pareto",
        action="store_true",
        help="NSGA-II over (throughput, TPOT at slo.percentile); prints the Pareto front",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="journal file path, or sqlite:///FILE / postgresql://... URL (default: in memory)",
    )
    p.add_argument("--study-name", default=None, help="study name in the storage")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the search here (default 1; without --storage they share a "
        "temporary journal); `spectune worker STUDY --storage URL` joins from other machines",
    )
    p.add_argument("--seed", type=int, default=None, help="sampler and simulator seed")
    p.add_argument(
        "--search-requests",
        type=int,
        default=None,
        help="requests simulated per trial (a prefix of the workload; default 600)",
    )
    p.add_argument(
        "--final-requests",
        type=int,
        default=None,
        help="requests for the finalists (default: the whole workload)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--emit",
        choices=ENGINES,
        default=None,
        help="print the engine config to paste (vllm, sglang, trtllm, hf); models come "
        "from target.model and drafters[].model",
    )
    p.add_argument(
        "--engine-version",
        default=None,
        metavar="V",
        help="the engine release to write for; the versions checked (default the newest): "
        + versions_help(),
    )
    p.add_argument(
        "--emit-schedule",
        action="store_true",
        help="with --emit, emit the table's batch-size schedule row (best k per batch band, "
        "simulated like every row) instead of the pick",
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="draw the trials' objective vs k per drafter (search fidelity) and the finalists "
        "with their Pareto front (final fidelity)",
    )
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    for flag in ("trials", "search_requests", "final_requests"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise InputError(f"must be > 0, got {v}", source="--" + flag.replace("_", "-"))
    if args.workers < 1:
        raise InputError(f"must be >= 1, got {args.workers}", source="--workers")
    if args.exhaustive and args.pareto:
        raise InputError("choose one of --exhaustive and --pareto", source="--exhaustive")
    for flag in ("engine_version", "emit_schedule"):
        if getattr(args, flag) and not args.emit:
            raise InputError("needs --emit ENGINE", source="--" + flag.replace("_", "-"))


def run(args: argparse.Namespace) -> int:
    _check(args)
    caps = capabilities(args.emit, args.engine_version) if args.emit else None
    rs = load_scenario(args.scenario, args.overrides)
    with _shared_storage(args) as storage:
        return _recommend(rs, args, caps, storage)


@contextmanager
def _shared_storage(args: argparse.Namespace) -> Iterator[str | None]:
    """``--storage``, or a temporary journal the ``--workers`` processes share."""
    if args.workers <= 1 or args.storage is not None:
        yield args.storage
        return
    with tempfile.TemporaryDirectory(prefix="spectune-study-") as tmp:
        yield str(Path(tmp) / "study.log")


def _recommend(rs: Any, args: argparse.Namespace, caps: Any, storage: str | None) -> int:
    settings = SearchSettings(
        objective=args.objective,
        trials=args.trials,
        exhaustive=args.exhaustive,
        pareto=args.pareto,
        seed=args.seed,
        storage=storage,
        study_name=args.study_name,
        search_requests=args.search_requests,
        final_requests=args.final_requests,
        scenario_file=args.scenario,
        overrides=tuple(args.overrides),
        helpers=local_helpers(args.workers - 1) if args.workers > 1 else None,
        engine=args.emit,
    )
    try:
        out = run_search(rs, settings)
    except NoFeasibleConfig as e:
        report(rs, e.outcome, args, None, feasible=False)
        raise
    report(rs, out, args, caps, feasible=True)
    return 0


# ---------------------------------------------------------------------------- reporting


def report(
    rs: Any,
    out: SearchOutcome,
    args: argparse.Namespace,
    caps: Capabilities | None,
    *,
    feasible: bool,
) -> None:
    schedule = schedule_row(out) if feasible else None
    engine = (
        engine_output(rs, out, caps, with_schedule=args.emit_schedule)
        if caps is not None and feasible
        else None
    )
    if args.plot:
        from spectune.tuner.plots import plot_recommend

        plot_recommend(out, args.plot)
    if args.json:
        print_json(to_json(rs, out, schedule, engine, feasible))
        return
    print(render(rs, out, schedule, feasible))
    if engine is not None:
        for m in engine.messages:
            print(f"\nnote: {m}")
        print(f"\n--- {engine.config.engine} {engine.config.version}: paste this ---")
        print(engine.config.text, end="")
