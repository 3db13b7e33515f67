"""``spectune recommend``: search drafter, draft length, tree shape (and max_num_seqs) with
Optuna over the simulator, and print the best config beside plain decoding and the
engines' default settings, with a confidence band and engine-ready configs (``--emit``).

How it spends its time (see :mod:`spectune.tuner.search`): trials run on the first
``--search-requests`` requests (default 600), the top few are re-simulated on the whole
workload, and the pick is re-run over resampled seeds and acceptance for the band.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from spectune.output import add_scenario_args, print_json, table
from spectune.simulator import load_scenario
from spectune.simulator.errors import InputError
from spectune.tuner.export import ENGINES, SpecChoice, emit
from spectune.tuner.objective import Evaluation
from spectune.tuner.schedule import Schedule, StepCosts, best_k_schedule
from spectune.tuner.search import (
    NoFeasibleConfig,
    SearchOutcome,
    SearchSettings,
    pareto_front,
    run_search,
)
from spectune.tuner.space import SearchDims

EPILOG = """\
examples:
  spectune recommend examples/azure-code-h100.yaml
  spectune recommend examples/azure-code-h100.yaml --objective throughput --trials 60
  spectune recommend examples/azure-code-h100.yaml --emit vllm
  spectune recommend examples/azure-code-h100.yaml --exhaustive --json
  spectune recommend examples/azure-code-h100.yaml --pareto --plot front.png
  spectune recommend examples/azure-code-h100.yaml --storage study.log --study-name s1
      (rerun the same command to resume; start it in several shells to share the work)

objectives: throughput (output tok/s, max), goodput (req/s meeting all SLOs, max),
latency (p99 TPOT, min); default auto = latency for open-loop workloads (every config
that keeps up serves the same tokens/s there), throughput otherwise. A config meets the
SLOs when the p99 of each bounded metric is within its bound; configs that miss them rank
after every config that meets them. If none meets them, the closest is printed and the
command exits 2.
"""

METRIC_KEYS = (
    "throughput_tok_per_s",
    "requests_per_s",
    "goodput_req_per_s",
    "slo_attainment",
    "mean_accepted_len",
    "mean_batch_size",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "num_requests",
)


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
        help="NSGA-II over (throughput, p99 TPOT); prints the Pareto front",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="journal file path, or sqlite:///FILE / postgresql://... URL (default: in memory)",
    )
    p.add_argument("--study-name", default=None, help="study name in the storage")
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
        help="print the engine config to paste (vllm, sglang, trtllm, hf)",
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="draw the objective vs k per drafter and the Pareto front",
    )
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    for flag in ("trials", "search_requests", "final_requests"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            raise InputError(f"must be > 0, got {v}", source="--" + flag.replace("_", "-"))
    if args.exhaustive and args.pareto:
        raise InputError("choose one of --exhaustive and --pareto", source="--exhaustive")


def run(args: argparse.Namespace) -> int:
    _check(args)
    rs = load_scenario(args.scenario, args.overrides)
    settings = SearchSettings(
        objective=args.objective,
        trials=args.trials,
        exhaustive=args.exhaustive,
        pareto=args.pareto,
        seed=args.seed,
        storage=args.storage,
        study_name=args.study_name,
        search_requests=args.search_requests,
        final_requests=args.final_requests,
    )
    try:
        out = run_search(rs, settings)
    except NoFeasibleConfig as e:
        report(rs, e.outcome, args, feasible=False)
        raise
    report(rs, out, args, feasible=True)
    return 0


# ---------------------------------------------------------------------------- reporting


def _metrics(ev: Evaluation) -> dict[str, Any]:
    return {k: ev.metrics.get(k) for k in METRIC_KEYS}


def _choice(rs: Any, out: SearchOutcome) -> SpecChoice:
    c = out.best.config
    if not c.speculates:
        return SpecChoice(max_num_seqs=c.max_num_seqs)
    d = rs.drafters[c.drafter]
    tree = out.evaluator.tree(c)
    return SpecChoice(
        drafter=c.drafter,
        kind=d.spec.kind,
        num_spec_tokens=tree.max_depth if tree is not None else c.num_spec_tokens,
        tree_paths=tuple(tuple(p) for p in tree.paths()) if tree is not None else None,
        self_layers=d.spec.self_layers,
        max_num_seqs=c.max_num_seqs,
    )


def _schedule(rs: Any, out: SearchOutcome) -> Schedule | None:
    c = out.best.config
    if not c.speculates or c.is_tree:
        return None
    dims = SearchDims.from_scenario(rs)
    ks = dims.chain_ks or (c.num_spec_tokens,)
    cap = c.max_num_seqs or rs.scenario.serving.max_num_seqs
    return best_k_schedule(StepCosts.from_scenario(rs), c.drafter, ks, cap)


def report(rs: Any, out: SearchOutcome, args: argparse.Namespace, *, feasible: bool) -> None:
    schedule = _schedule(rs, out) if feasible else None
    engine = None
    if args.emit and feasible:
        target = rs.scenario.target.name or rs.target.model.name
        engine = emit(args.emit, _choice(rs, out), schedule.bands if schedule else None, target)
    if args.plot:
        from spectune.tuner.plots import plot_recommend

        front = out.pareto_front or pareto_front(out.searched)
        plot_recommend(out.searched, _obj(out), front, args.plot)
    if args.json:
        print_json(to_json(rs, out, schedule, engine, feasible))
        return
    print(render(rs, out, schedule, feasible))
    if engine is not None:
        print(f"\n--- {args.emit}: paste this ---")
        print(engine.text, end="")
        for name, body in engine.files.items():
            if name not in engine.text:
                print(f"# {name}:\n{body}", end="")


def _obj(out: SearchOutcome) -> str:
    return "latency" if out.objective == "pareto" else out.objective


def to_json(rs, out, schedule, engine, feasible) -> dict[str, Any]:
    obj = _obj(out)
    rows = [("plain decoding", out.plain), *out.defaults.items()]
    best_v, plain_v = out.best.value(obj), out.plain.value(obj)
    return {
        "scenario": rs.source,
        "objective": out.objective,
        "direction": out.direction,
        "feasible": feasible,
        "recommendation": {
            "label": out.best.config.label(),
            "config": out.best.config.to_dict(),
            "tree_paths": (t.paths() if (t := out.evaluator.tree(out.best.config)) else None),
            "meets_slos": out.best.feasible,
            "slo_violation": out.best.violation,
            "metrics": _metrics(out.best),
        },
        "vs_plain": (best_v / plain_v) if plain_v else None,
        "comparisons": [
            {
                "label": label,
                "config": ev.config.to_dict(),
                "meets_slos": ev.feasible,
                "metrics": _metrics(ev),
            }
            for label, ev in rows
        ],
        "finalists": [
            {
                "label": e.config.label(),
                "config": e.config.to_dict(),
                "value": e.value(obj),
                "meets_slos": e.feasible,
            }
            for e in out.finalists
        ],
        "confidence": out.band,
        "schedule": schedule.to_dict() if schedule else None,
        "pareto_front": [
            {
                "label": e.config.label(),
                "throughput_tok_per_s": e.value("throughput"),
                "tpot_p99_s": e.value("latency"),
                "meets_slos": e.feasible,
            }
            for e in out.pareto_front
        ],
        "search": {
            "grid_size": out.grid_size,
            "trials": out.trials,
            "simulations": out.simulations,
            "pruned": out.pruned,
            "search_requests": out.search_requests,
            "final_requests": out.final_requests,
            "study_name": out.study_name,
            "storage": out.storage,
            "wall_s": round(out.wall_s, 3),
        },
        "emit": engine.to_dict() if engine is not None else None,
    }


def _row(label: str, ev: Evaluation, pct: int) -> tuple:
    m = ev.metrics
    return (
        label,
        ev.config.label(),
        m.get("throughput_tok_per_s"),
        m.get("goodput_req_per_s"),
        (m.get("ttft_s") or {}).get(f"p{pct}"),
        *((m.get("tpot_s") or {}).get(f"p{q}") for q in sorted({pct, 99})),
        m.get("mean_accepted_len"),
        "yes" if ev.feasible else f"no (+{ev.violation * 100:.0f}%)",
    )


def render(rs: Any, out: SearchOutcome, schedule: Schedule | None, feasible: bool) -> str:
    obj = _obj(out)
    what = {
        "throughput": "throughput (output tok/s), maximised",
        "goodput": "goodput (req/s meeting the SLOs), maximised",
        "latency": "p99 TPOT, minimised",
    }[obj]
    sampler = (
        "exhaustive grid"
        if out.trials >= out.grid_size and out.objective != "pareto"
        else "NSGA-II"
        if out.objective == "pareto"
        else "TPE"
    )
    lines = [
        f"spectune recommend: {rs.scenario.name or rs.source}",
        f"objective: {what}"
        + (" (Pareto search over throughput and p99 TPOT)" if out.objective == "pareto" else ""),
        f"search: {out.trials} trials ({sampler}) over {out.grid_size} configs, "
        f"{out.simulations} simulations, {out.pruned} pruned by the closed-form screen; "
        f"trials on the first {out.search_requests:,} requests, finalists on "
        f"{out.final_requests:,}; {out.wall_s:.1f} s",
        "",
        ("recommended: " if feasible else "closest config (none meets the SLOs): ")
        + out.best.config.label(),
    ]
    pct = rs.scenario.slo.percentile  # the SLOs' percentile; TPOT also at p99 (the objective)
    rows = [
        _row("recommended" if feasible else "closest", out.best, pct),
        _row("plain decoding", out.plain, pct),
    ]
    rows += [_row(label, ev, pct) for label, ev in out.defaults.items()]
    tpot_cols = [f"p{q} TPOT s" for q in sorted({pct, 99})]
    headers = ["", "config", "tok/s", "goodput", f"p{pct} TTFT s", *tpot_cols]
    lines.append(table(rows, [*headers, "acc len", "meets SLOs"], digits=4))
    pv, bv = out.plain.value(obj), out.best.value(obj)
    if pv and math.isfinite(pv) and math.isfinite(bv) and out.best.config.speculates:
        metric = {"throughput": "throughput", "goodput": "goodput", "latency": "p99 TPOT"}[obj]
        lines.append(f"vs plain decoding: {metric} x{bv / pv:.3f}")
    b = out.band
    if b:
        line = (
            f"how sure: over {b['samples']} resamples ({b['how']}) on the first "
            f"{b['fidelity_requests'] or out.search_requests:,} requests, the pick's {obj} "
            f"ranged {b['relative_min']:.3f}-{b['relative_max']:.3f}x its nominal value"
        )
        if "wins_vs_runner_up" in b:
            line += (
                f"; it beat the runner-up ({b['runner_up']}) in "
                f"{round(b['wins_vs_runner_up'] * b['samples'])}/{b['samples']}"
            )
        lines.append(line)
    if out.pareto_front:
        lines += ["", "Pareto front (throughput vs p99 TPOT):"]
        lines.append(
            table(
                [
                    (
                        e.config.label(),
                        e.value("throughput"),
                        e.value("latency"),
                        "yes" if e.feasible else "no",
                    )
                    for e in out.pareto_front
                ],
                ["config", "tok/s", "p99 TPOT s", "meets SLOs"],
                digits=4,
            )
        )
    if schedule is not None:
        bands = ", ".join(
            f"{lo}-{hi}: k={k}" if lo != hi else f"{lo}: k={k}" for lo, hi, k in schedule.bands
        )
        lines += [
            "",
            f"batch-size schedule ({schedule.drafter}, best k per running-batch "
            f"band, 0 = no speculation): {bands}",
        ]
        lines.append(
            "  (from the DES's per-step costs at fixed batch; --emit writes it "
            "in the engine's syntax)"
        )
    if feasible:
        lines.append(f"\nnext: {_cmd(rs)} --emit vllm|sglang|trtllm|hf")
    return "\n".join(lines)


def _cmd(rs: Any) -> str:
    return f"spectune recommend {rs.source.split(' ')[0]}"
