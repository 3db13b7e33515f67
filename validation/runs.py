"""Run a validation matrix live and simulated; summarise predicted vs measured.

Order and noise (this machine is shared; DESIGN.md §5): repeat ``r`` runs every entry
once, in matrix order, before repeat ``r + 1`` starts (A B C … A B C …), so a slow period
spreads over all entries instead of biasing some; an entry's measured figure is the
median over its repeats. Every repeat of an entry serves the same requests (same seed);
the simulation of an entry is deterministic and runs once.

Resume: each finished live run is appended (and flushed) as one JSON line to
``<report dir>/runs.jsonl`` under a header line carrying the validation's fingerprint; a
rerun with the same fingerprint skips the (entry, repeat) pairs already there.

Errors are signed percentages of the measured value, ``100 · (predicted − measured) /
measured``; the summary takes absolute values. Rank correlation: Spearman's ρ between
predicted and measured throughput over the entries.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectune.profiler.live import LiveResult, PromptSource
from spectune.profiler.native.serve import serve
from spectune.simulator.api import resolve_tree, simulate
from spectune.simulator.scenario import ResolvedScenario

from .live_models import LiveModels
from .matrix import Entry, Workloads, entry_scenario

RUNS_FILE = "runs.jsonl"
METRICS = ("throughput_tok_per_s", "tpot_p50_s", "tpot_p99_s", "mean_accepted_len")


def key_metrics(m: dict[str, Any]) -> dict[str, float]:
    """The compared figures of a metrics dict (simulated or measured)."""
    return {
        "throughput_tok_per_s": float(m["throughput_tok_per_s"]),
        "tpot_p50_s": float(m["tpot_s"]["p50"] or math.nan),
        "tpot_p99_s": float(m["tpot_s"]["p99"] or math.nan),
        "ttft_p50_s": float(m["ttft_s"]["p50"] or math.nan),
        "e2e_p50_s": float(m["e2e_s"]["p50"] or math.nan),
        "mean_accepted_len": float(m["mean_accepted_len"]),
        "duration_s": float(m["duration_s"]),
        "iterations": int(m["iterations"]),
    }


class RunLog:
    """The JSONL of finished live runs (see the module docstring)."""

    def __init__(self, path: Path, fingerprint: str):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            head = json.loads(lines[0]) if lines else {}
            if head.get("fingerprint") == fingerprint:
                for ln in lines[1:]:
                    try:
                        self.rows.append(json.loads(ln))
                    except json.JSONDecodeError:
                        break  # a line cut by an interruption: measure it again
            else:
                path.rename(path.with_suffix(".jsonl.old"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            path.write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
        elif self.rows:  # drop any cut line by rewriting the good ones
            text = json.dumps({"fingerprint": fingerprint}) + "\n"
            path.write_text(text + "".join(json.dumps(r) + "\n" for r in self.rows))
        self.done = {(r["id"], r["rep"]) for r in self.rows if r.get("kind") == "live"}

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if row.get("kind") == "live":
            self.done.add((row["id"], row["rep"]))


@dataclass
class Runner:
    """Live runs and simulations of one validation.

    Args:
        rs: the base scenario (target, drafters, SLOs).
        models: the live models.
        prompts: prompt content for live runs.
        workloads: resolved workloads.
        seed: seed of every run and simulation.
        realtime: sleep for arrivals (False only in tests).
    """

    rs: ResolvedScenario
    models: LiveModels
    prompts: PromptSource
    workloads: Workloads
    seed: int = 0
    realtime: bool = True
    rs_sim: ResolvedScenario | None = None  # the scenario predictions use (calibrated)
    replays: dict | None = None  # drafter -> Replay (validation_acceptance) on calibration

    def scenario(self, e: Entry) -> ResolvedScenario:
        return entry_scenario(self.rs, self.workloads, e)

    def serve(self, e: Entry, seed: int) -> LiveResult:
        """Run ``e`` live with ``seed``."""
        return serve(
            self.scenario(e),
            self.models.target.model,
            self.models.drafter(e.drafter),
            self.prompts,
            seed,
            realtime=self.realtime,
        )

    def live(self, e: Entry, rep: int) -> dict[str, Any]:
        """One live run of ``e`` as a JSON-ready row."""
        t0 = time.perf_counter()
        res = self.serve(e, self.seed)
        return {
            "kind": "live",
            "id": e.id,
            "rep": rep,
            "measured": key_metrics(res.metrics),
            "live": res.metrics["live"],
            "wall_s": time.perf_counter() - t0,
            "load1": os.getloadavg()[0],
            "time": time.time(),
        }

    def predict(self, e: Entry, rs: ResolvedScenario | None = None) -> dict[str, Any]:
        """Simulate ``e`` on ``rs`` (default: the base scenario). On the calibrated
        scenario a chain's acceptance is the one replayed at its k, a tree's the one
        replayed on the live engine's tree (:mod:`.acceptance`)."""
        from .acceptance import for_chain, for_tree

        rs = rs or self.rs
        calibrated = rs is self.rs_sim
        sc = entry_scenario(rs, self.workloads, e)
        if calibrated and e.drafter != "none" and e.tree is None and self.replays:
            sc = for_chain(sc, e.drafter, e.k, self.replays)
        elif calibrated and e.tree is not None:
            # The live engine's tree comes from the scenario's acceptance: price that tree
            # (with the acceptance its engine visits), not one rebuilt from other numbers.
            sc = for_tree(sc, e.drafter, resolve_tree(self.scenario(e)), self.replays or {})
        res = simulate(sc, self.seed)
        return {"predicted": key_metrics(res.metrics), "warnings": res.metrics["warnings"]}


def run_matrix(
    runner: Runner,
    entries: list[Entry],
    repeats: int,
    log: RunLog,
    progress: Callable[[int], None] | None = None,
    before_run: Callable[[int, int, int], None] | None = None,
) -> None:
    """Run every (entry, repeat) not yet in ``log``, repeats interleaved (ABAB);
    ``before_run(repeat, i, len(entries))`` runs before entry ``i`` of each repeat (e.g.
    a share of a latency-profile pass, so profile and live runs see the same machine)."""
    for rep in range(repeats):
        for i, e in enumerate(entries):
            if before_run is not None:
                before_run(rep, i, len(entries))
            if (e.id, rep) in log.done:
                continue
            log.add(runner.live(e, rep))
            if progress is not None:
                progress(1)


# --------------------------------------------------------------------------- summary


def pct_error(pred: float, meas: float) -> float:
    if not (math.isfinite(pred) and math.isfinite(meas)) or meas == 0:
        return math.nan
    return 100.0 * (pred - meas) / meas


def entry_rows(
    entries: list[Entry], log: RunLog, predictions: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per entry: predicted, measured (median over repeats) and signed % errors."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in log.rows:
        if r.get("kind") == "live":
            by_id.setdefault(r["id"], []).append(r)
    rows = []
    for e in entries:
        runs = by_id.get(e.id, [])
        if not runs:
            continue
        meas = {k: float(np.median([r["measured"][k] for r in runs])) for k in runs[0]["measured"]}
        step = {
            k: float(np.median([r["live"][k] for r in runs]))
            for k in runs[0]["live"]
            if isinstance(runs[0]["live"][k], int | float)
        }
        pred = predictions[e.id]["predicted"]
        thr = [r["measured"]["throughput_tok_per_s"] for r in runs]
        rows.append(
            {
                "id": e.id,
                "label": e.label(),
                "workload": e.workload,
                "drafter": e.drafter,
                "k": e.k,
                "tree": list(e.tree) if e.tree else None,
                "max_num_seqs": e.max_num_seqs,
                "repeats": len(runs),
                "predicted": pred,
                "measured": meas,
                "measured_spread_pct": 100.0 * (max(thr) - min(thr)) / float(np.median(thr)),
                "live_step_ms": step,
                "error_pct": {k: pct_error(pred[k], meas[k]) for k in METRICS},
                "warnings": predictions[e.id]["warnings"],
            }
        )
    return rows


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (nan for fewer than 3 points or constant input)."""
    if len(x) < 3:
        return math.nan
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return float(rho) if rho is not None and math.isfinite(rho) else math.nan


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures over entries (see the module docstring)."""
    thr = [abs(r["error_pct"]["throughput_tok_per_s"]) for r in rows]
    thr = [x for x in thr if math.isfinite(x)]

    def med(key: str) -> float | None:
        vals = [abs(r["error_pct"][key]) for r in rows if math.isfinite(r["error_pct"][key])]
        return float(np.median(vals)) if vals else None

    offline = [r for r in rows if r["workload"] == "offline"]
    return {
        "num_configs": len(rows),
        "median_abs_pct_error": float(np.median(thr)) if thr else None,
        "max_abs_pct_error": float(max(thr)) if thr else None,
        "rank_correlation": spearman(
            [r["predicted"]["throughput_tok_per_s"] for r in rows],
            [r["measured"]["throughput_tok_per_s"] for r in rows],
        ),
        "rank_correlation_offline": spearman(
            [r["predicted"]["throughput_tok_per_s"] for r in offline],
            [r["measured"]["throughput_tok_per_s"] for r in offline],
        ),
        "median_abs_pct_error_tpot_p50": med("tpot_p50_s"),
        "median_abs_pct_error_tpot_p99": med("tpot_p99_s"),
        "median_abs_pct_error_accepted_len": med("mean_accepted_len"),
    }
