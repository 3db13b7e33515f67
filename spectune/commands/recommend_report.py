"""What ``spectune recommend`` prints: the text report and the JSON document.

One percentile everywhere (the scenario's ``slo.percentile``, Q below): the latency
objective, the table's TTFT/TPOT columns and the JSON keys (``tpot_pQ_s``) all read pQ.
One fidelity beside the pick: every number in the table, the Pareto front and the "how
sure" line comes from the final-fidelity runs (the whole workload unless
``--final-requests``); the search's trials appear only in the JSON's ``search`` block
counts and in ``--plot``'s left panel, which is labelled as search fidelity.
"""

from __future__ import annotations

import math
from typing import Any

from spectune.output import table
from spectune.tuner.evaluate import percentile_key
from spectune.tuner.objective import Evaluation
from spectune.tuner.plots import narrow_span
from spectune.tuner.search import SearchOutcome

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


def objective_of(out: SearchOutcome) -> str:
    """The objective the pick was ranked on (``--pareto`` ranks its front by latency)."""
    return "latency" if out.objective == "pareto" else out.objective


def _metrics(ev: Evaluation) -> dict[str, Any]:
    return {k: ev.metrics.get(k) for k in METRIC_KEYS}


def to_json(
    rs: Any, out: SearchOutcome, schedule: Evaluation | None, engine: Any, feasible: bool
) -> dict[str, Any]:
    obj = objective_of(out)
    pct = rs.scenario.slo.percentile
    tpot_key = percentile_key("tpot", pct)
    rows = [("plain decoding", out.plain), *out.defaults.items()]
    best_v, plain_v = out.best.value(obj), out.plain.value(obj)
    return {
        "scenario": rs.source,
        "objective": out.objective,
        "objective_metric": _objective_metric(obj, pct),
        "direction": out.direction,
        "slo_percentile": pct,
        "feasible": feasible,
        "fidelity": {
            "search_requests": out.search_requests,
            "final_requests": out.final_requests,
            "reported": "final (recommendation, comparisons, finalists, pareto_front, confidence)",
        },
        "recommendation": {
            "label": out.best.config.label(),
            "config": out.best.config.to_dict(),
            "tree_paths": (t.paths() if (t := out.evaluator.tree(out.best.config)) else None),
            "policy": _policy(out.best),
            "meets_slos": out.best.feasible,
            "slo_violation": out.best.violation,
            "metrics": _metrics(out.best),
        },
        "vs_plain": (best_v / plain_v) if plain_v else None,
        "comparisons": [
            {
                "label": label,
                "config": ev.config.to_dict(),
                "policy": _policy(ev),
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
        "schedule": _schedule_json(out, schedule),
        "pareto_front": [
            {
                "label": e.config.label(),
                "throughput_tok_per_s": e.value("throughput"),
                tpot_key: e.value("latency"),
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


def _objective_metric(obj: str, pct: int) -> str:
    return {
        "throughput": "throughput_tok_per_s",
        "goodput": "goodput_req_per_s",
        "latency": percentile_key("tpot", pct),
    }[obj]


def _row(label: str, ev: Evaluation, pct: int) -> tuple:
    m = ev.metrics
    return (
        label,
        ev.config.label(),
        m.get("throughput_tok_per_s"),
        m.get("goodput_req_per_s"),
        (m.get("ttft_s") or {}).get(f"p{pct}"),
        (m.get("tpot_s") or {}).get(f"p{pct}"),
        m.get("mean_accepted_len"),
        "yes" if ev.feasible else f"no (+{ev.violation * 100:.0f}%)",
    )


def _band_line(out: SearchOutcome, obj: str) -> str | None:
    b = out.band
    if not b:
        return None
    line = (
        f"how sure: over {b['samples']} resamples ({b['how']}) on the whole workload "
        f"({b['fidelity_requests']:,} requests, as the table), the pick's {obj} ranged "
        f"{b['relative_min']:.3f}-{b['relative_max']:.3f}x its nominal value"
    )
    if "wins_vs_runner_up" in b:
        n = b["samples"]
        wins = round(b["wins_vs_runner_up"] * n)
        ties = round(b.get("ties_vs_runner_up", 0.0) * n)
        line += f"; vs the runner-up ({b['runner_up']}) it was ahead in {wins}/{n}"
        if ties:
            line += f", equal in {ties}/{n}"
    if b.get("identical_to_pick"):
        line += f" ({'; '.join(b['identical_to_pick'])}: the same runs as the pick)"
    return line


def _policy(ev: Evaluation) -> dict[str, Any]:
    """The speculation policy the row simulated (kind, bands or settings, k per iteration)."""
    return dict((ev.metrics.get("config") or {}).get("policy") or {"kind": "fixed"})


def _schedule_json(out: SearchOutcome, row: Evaluation | None) -> dict[str, Any] | None:
    """The batch-size schedule row's bands (as simulated) and its config."""
    if row is None:
        return None
    policy = out.evaluator.policy(row.config) or {}
    return {
        "drafter": row.config.drafter,
        "config": row.config.label(),
        "bands": [
            {"batch_lo": lo, "batch_hi": hi, "num_spec_tokens": k}
            for lo, hi, k in policy.get("bands", [])
        ],
        "method": "best k per batch band priced by the DES's step costs, then simulated",
    }


def render(rs: Any, out: SearchOutcome, schedule: Evaluation | None, feasible: bool) -> str:
    obj = objective_of(out)
    pct = rs.scenario.slo.percentile
    what = {
        "throughput": "throughput (output tok/s), maximised",
        "goodput": "goodput (req/s meeting the SLOs), maximised",
        "latency": f"p{pct} TPOT (the SLOs' percentile), minimised",
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
        + (
            f" (Pareto search over throughput and p{pct} TPOT)" if out.objective == "pareto" else ""
        ),
        f"search: {out.trials} trials ({sampler}) over {out.grid_size} configs, "
        f"{out.simulations} simulations, {out.pruned} pruned by the closed-form screen; "
        f"trials on the first {out.search_requests:,} requests; every figure below on "
        f"{out.final_requests:,} requests; {out.wall_s:.1f} s",
        "",
        ("recommended: " if feasible else "closest config (none meets the SLOs): ")
        + out.best.config.label(),
    ]
    rows = [
        _row("recommended" if feasible else "closest", out.best, pct),
        _row("plain decoding", out.plain, pct),
    ]
    rows += [_row(label, ev, pct) for label, ev in out.defaults.items()]
    headers = ["", "config", "output tok/s", "goodput req/s", f"p{pct} TTFT s", f"p{pct} TPOT s"]
    lines.append(table(rows, [*headers, "accepted len (tok/step)", "meets SLOs"], digits=4))
    pv, bv = out.plain.value(obj), out.best.value(obj)
    if pv and math.isfinite(pv) and math.isfinite(bv) and out.best.config.speculates:
        metric = {"throughput": "throughput", "goodput": "goodput", "latency": f"p{pct} TPOT"}
        lines.append(f"vs plain decoding: {metric[obj]} x{bv / pv:.3f}")
    band = _band_line(out, obj)
    if band:
        lines.append(band)
    if out.pareto_front:
        lines += ["", f"Pareto front (throughput vs p{pct} TPOT, {out.final_requests:,} requests):"]
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
                ["config", "output tok/s", f"p{pct} TPOT s", "meets SLOs"],
                digits=4,
            )
        )
        span = narrow_span([e.value("throughput") for e in out.pareto_front])
        if span is not None:
            lo, hi = span
            lines.append(
                f"  throughput does not separate these configs: all within {lo:.2f}-{hi:.2f} "
                "tok/s (an open-loop workload: every config that keeps up serves the "
                "offered load); the front is decided by TPOT"
            )
    sched = _schedule_json(out, schedule)
    if sched is not None:
        bands = ", ".join(
            f"{b['batch_lo']}-{b['batch_hi']}: k={b['num_spec_tokens']}"
            if b["batch_lo"] != b["batch_hi"]
            else f"{b['batch_lo']}: k={b['num_spec_tokens']}"
            for b in sched["bands"]
        )
        lines += [
            "",
            f"batch-size schedule ({sched['drafter']}, best k per batch band priced by the "
            f"DES's step costs, 0 = no speculation): {bands}",
            "  (simulated: its row above; --emit ENGINE --emit-schedule writes it)",
        ]
    if feasible:
        lines.append(f"\nnext: {_cmd(rs)} --emit vllm|sglang|trtllm|hf [--engine-version V]")
    return "\n".join(lines)


def _cmd(rs: Any) -> str:
    return f"spectune recommend {rs.source.split(' ')[0]}"
