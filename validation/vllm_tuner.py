"""The tuner's pick against vLLM, live; and vLLM's greedy losslessness on the matrix.

:func:`tuner_check`: ``recommend``'s search (throughput, the offline workload, batch cap 8,
chains: vLLM V1 runs no draft trees) on the calibrated scenario; its pick and the matrix's
best live configuration under the same workload and cap are then run live in alternating
engine sessions (pick, best, pick, best), and the ratio of their median throughputs is
reported. :func:`lossless_check`: every speculative run's greedy outputs against plain
decoding's on the same requests (same workload, seed and cap), request by request.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from spectune.simulator.scenario import ResolvedScenario
from spectune.simulator.schema import Slo

from .matrix import Entry
from .runs import RunLog
from .vllm_matrix import settings_for
from .vllm_runs import EngineSessions

WORKLOAD = "offline"
CAP = 8
ROUNDS = 2


def tuner_check(
    rs_cal: ResolvedScenario,
    rows: list[dict[str, Any]],
    sessions: EngineSessions,
    log: RunLog,
    s: Any,
    scenario_for: Callable[[ResolvedScenario, Any, Entry], ResolvedScenario],
) -> dict[str, Any] | None:
    """Search, then run the pick and the best live entry (module docstring)."""
    from spectune.tuner.search import SearchSettings, run_search

    pool = [r for r in rows if r["workload"] == WORKLOAD and r["max_num_seqs"] == CAP]
    if not pool:
        return None
    best_row = max(pool, key=lambda r: r["measured"]["throughput_tok_per_s"])
    base = scenario_for(rs_cal, sessions.wls, Entry(WORKLOAD, "none", max_num_seqs=CAP))
    search = base.scenario.search.model_copy(
        update={"max_num_seqs": [], "tree_budgets": [], "tree_depths": []}
    )
    base = dataclasses.replace(
        base, scenario=base.scenario.model_copy(update={"search": search, "slo": Slo()})
    )
    t0 = time.perf_counter()
    outcome = run_search(
        base,
        SearchSettings(objective="throughput", trials=s.tuner_trials, seed=s.seed, progress=False),
    )
    search_s = time.perf_counter() - t0
    c = outcome.best.config
    pick = Entry(
        WORKLOAD, c.drafter, k=c.num_spec_tokens if c.drafter != "none" else 0, max_num_seqs=CAP
    )
    best = Entry(WORKLOAD, best_row["drafter"], k=best_row["k"], max_num_seqs=CAP)
    pair = {"pick": pick} if pick.id == best.id else {"pick": pick, "best": best}
    per_round = max(1, math.ceil(s.tuner_repeats / ROUNDS))
    rs = sessions.rs
    for rnd in range(ROUNDS):
        for role, e in pair.items():
            reps = [rnd * per_round + i for i in range(per_round)]
            rid = f"tuner:{role}:{e.id}"
            todo = [(e, r) for r in reps if (rid, r) not in log.done]
            if todo:
                st = settings_for(rs, e, sessions.base)
                sessions._session(st, [e], todo, row_id=lambda _e, rid=rid: rid)
    thr = {role: _median(log, f"tuner:{role}:{e.id}") for role, e in pair.items()}
    thr.setdefault("best", thr["pick"])
    return {
        "pick": pick.label(),
        "pick_id": pick.id,
        "pick_predicted_tok_per_s": float(outcome.best.metrics["throughput_tok_per_s"]),
        "best_live": best.label(),
        "best_live_id": best.id,
        "pick_is_best": pick.id == best.id,
        "pick_measured_tok_per_s": thr["pick"],
        "best_measured_tok_per_s": thr["best"],
        "ratio": thr["pick"] / thr["best"] if thr["best"] > 0 else math.nan,
        "search_s": search_s,
        "simulations": outcome.simulations,
    }


def _median(log: RunLog, rid: str) -> float:
    vals = [
        r["measured"]["throughput_tok_per_s"]
        for r in log.rows
        if r.get("kind") == "live" and r.get("id") == rid
    ]
    return float(np.median(vals)) if vals else math.nan


def lossless_check(entries: list[Entry], log: RunLog) -> dict[str, Any]:
    """Per speculative entry with a plain counterpart (same workload and cap), how many
    requests' greedy outputs equal plain decoding's (first kept run of each)."""
    first: dict[str, list[str]] = {}
    for r in log.rows:
        if r.get("kind") == "live" and "outputs" in r and r["id"] not in first:
            first[r["id"]] = r["outputs"]
    per: dict[str, list[int]] = {}
    for e in entries:
        if e.drafter == "none" or e.id not in first:
            continue
        plain = Entry(e.workload, "none", max_num_seqs=e.max_num_seqs).id
        if plain not in first:
            continue
        a, b = first[e.id], first[plain]
        per[e.id] = [sum(x == y for x, y in zip(a, b, strict=False)), len(b)]
    same = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    return {"configs": len(per), "requests": total, "identical": same, "per_config": per}
