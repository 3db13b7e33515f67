"""``spectune validate``: the simulator's predictions checked against live runs here.

Steps (:func:`run_validation`):

1. Load the scenario and its live models (:mod:`.live_models`); the latency and
   acceptance profiles are the scenario's own files (measure missing ones first with
   ``spectune profile``).
2. Build the matrix (:mod:`.matrix`), its workloads and, for the Azure slice, the
   scaled trace file in the report folder.
3. Simulate every entry once; run every entry live ``repeats`` times, interleaved and
   resumable (:mod:`.runs`).
4. The tuner's pick, live: :func:`spectune.tuner.search.run_search` (what
   ``spectune recommend`` runs) on the scenario with the offline workload and batch cap
   8; its pick and the best live entry of the matrix under the same workload and cap run
   live again, interleaved, and the ratio of their median throughputs is reported.
5. Summary and report (:mod:`.report`); with calibration, the calibrated scenario
   (:mod:`.calibrated`) beside it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spectune.simulator.errors import InputError
from spectune.simulator.scenario import load_scenario

from .acceptance import workload_acceptance
from .calibrated import write_calibrated_scenario
from .calibration import CalibrationRuns
from .live_models import load_live_models, prompt_source, warm_shapes
from .matrix import (
    Entry,
    build_matrix,
    entry_scenario,
    fingerprint,
    make_workloads,
)
from .overhead import live_engine_model
from .profiles import ProfilePasses, dtype_flag
from .runs import RunLog, Runner, entry_rows, run_matrix, summarize
from .settings import DEFAULT_TRACE, REPO, ValidateSettings, default_dir, load_range  # noqa: F401

TUNER_WORKLOAD = "offline"
TUNER_MAX_NUM_SEQS = 8
WARM_TOKENS = 512  # whole prefills (prompts <= 256) and verify batches (16 x 13)
WARM_BATCH, WARM_QUERY = 16, 17  # decode/verify shapes: batch caps <= 16, 16-node trees


def run_validation(
    s: ValidateSettings, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Run a validation (module docstring) and return its JSON-ready result.

    Args:
        s: settings.
        progress: called with (runs done, runs total) as live runs finish.

    Returns:
        ``{"summary": ..., "configs": [...], "tuner": ..., "environment": ...}``.

    Raises:
        InputError: a bad scenario, missing models or prompts.
    """
    if s.engine == "vllm":
        from .vllm_pipeline import run_vllm_validation

        return run_vllm_validation(s, progress)
    import os

    # Room for every matmul shape the live runs meet (the CPU backend caches a kernel per
    # shape; its default 1024 entries are fewer than the warmed shapes). Read when torch's
    # CPU backend starts, so this only helps when torch has not run a matmul yet.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8192")
    import torch

    t_start = time.perf_counter()
    if s.threads is not None:
        if s.threads < 1:
            raise InputError(f"must be >= 1, got {s.threads}", field="--threads")
        # One thread by default: on a shared 2-core machine a multi-threaded forward waits
        # at every parallel region for a thread another tenant has descheduled (measured:
        # 1.5 ms forwards became ~380 ms at load 7), while one thread degrades gracefully.
        torch.set_num_threads(s.threads)
    scen = Path(s.scenario)
    rs = load_scenario(scen, list(s.overrides))
    report_dir = Path(s.report_dir) if s.report_dir else Path("validation-report")
    models_dir = Path(s.models_dir) if s.models_dir else default_dir(scen, "models")
    prompts_file = s.prompts or default_dir(scen, "examples/prompts/stdlib.txt")
    models = load_live_models(rs, models_dir, dtype=dtype_flag(rs.target))
    prompts = prompt_source(models, prompts_file, s.seed)
    notes: list[str] = []
    report_dir.mkdir(parents=True, exist_ok=True)
    warm_s = warm_shapes(models, WARM_TOKENS, WARM_BATCH, WARM_QUERY)
    notes.append(
        f"matmul shapes of 1..{WARM_TOKENS} tokens warmed up before any timing ({warm_s:.1f} s)"
    )
    entries = list(s.entries) if s.entries is not None else build_matrix(rs, s.quick)
    repeats = s.repeats or (2 if s.quick else 3)
    trace = Path(s.trace) if s.trace else DEFAULT_TRACE
    rs_given = rs  # the scenario's own profiles: the "as given" predictions
    passes = ProfilePasses(rs, models, report_dir, repeats + 1) if s.profiles else None
    # Load levels come from the simulator's capacity on this machine's profiles; the
    # first profile pass gives them before any live run (and they are kept for resumes).
    wls = make_workloads(passes.provisional() if passes else rs, s.quick, trace, report_dir, s.seed)
    entries = [e for e in entries if e.workload != "azure" or wls.trace_path is not None]
    if s.only:
        entries = [e for e in entries if any(o in e.id for o in s.only)]
    if not entries:
        raise InputError("no matrix entry left to run (check --only)", field="--only")
    runner = Runner(rs, models, prompts, wls, s.seed, s.realtime)
    log = RunLog(report_dir / "runs.jsonl", log_key(runner, s.seed))

    cal = (
        # --quick: one round (a few minutes in all); full: up to three.
        CalibrationRuns(
            runner, report_dir, s.seed, log_key(runner, s.seed), repeats, 1 if s.quick else 3
        )
        if s.calibrate
        else None
    )
    total = repeats * len(entries) + (cal.total if cal else 0)
    total += 2 * s.tuner_repeats if s.tuner else 0
    done = [sum(1 for e in entries for r in range(repeats) if (e.id, r) in log.done)]
    done[0] += cal.done() if cal else 0

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    def before_run(rep: int, i: int, count: int) -> None:
        # Profile passes and calibration runs spread over the live repeats: all three
        # see the same machine.
        if passes is not None:
            passes.before_run(rep, i, count)
        if cal is not None:
            cal.before_run(rep, i, count, tick)

    if progress is not None:
        progress(done[0], total)
    run_matrix(runner, entries, repeats, log, tick, before_run)
    if passes is not None:
        rs = passes.finish()
        notes += passes.notes
        runner.rs = rs
    overhead = None
    calibrated: Path | None = None
    sim_rs = live_engine_model(rs)
    if cal is not None:
        cal.finish(tick)
        overhead = cal.fit(rs)
        (report_dir / "overhead.json").write_text(json.dumps(overhead.to_dict(), indent=1))
        sim_rs = overhead.apply(sim_rs)
        calibrated = write_calibrated_scenario(
            sim_rs, scen, report_dir, passes.paths if passes else None, overhead.how
        )
        notes.append(
            f"calibrated scenario (fitted host overheads, live-engine rules): {calibrated}"
        )
        sim_rs, notes_acc, runner.replays = workload_acceptance(
            sim_rs, models, prompts, wls, report_dir, s.seed + 1
        )
        notes += notes_acc
    runner.rs_sim = sim_rs
    predictions = {e.id: runner.predict(e, sim_rs) for e in entries}
    uncalibrated = {e.id: runner.predict(e, rs_given) for e in entries}
    rows = entry_rows(entries, log, predictions)
    summary = summarize(rows)
    summary_uncal = summarize(entry_rows(entries, log, uncalibrated))
    if s.tuner:  # calibration and acceptance ran other shapes since: warm the live ones again
        warm_shapes(models, WARM_TOKENS, WARM_BATCH, WARM_QUERY)
    tuner = tuner_check(runner, rows, log, s, tick) if s.tuner else None
    if tuner is not None:
        summary["tuner_pick_ratio"] = tuner["ratio"]
    return {
        "summary": summary,
        "summary_uncalibrated": summary_uncal,
        "overhead": overhead.to_dict() if overhead is not None else None,
        "calibrated_scenario": str(calibrated) if calibrated is not None else None,
        "configs": rows,
        "tuner": tuner,
        "notes": notes,
        "environment": {
            "scenario": str(scen),
            "target": rs.target.model.name,
            "drafters": {n: d.spec.kind for n, d in rs.drafters.items()},
            "device": rs.target.device.name,
            "dtype": rs.target.device.dtype,
            "torch_threads": torch.get_num_threads(),
            "quick": s.quick,
            "repeats": repeats,
            "seed": s.seed,
            "capacity_req_per_s": wls.capacity_req_per_s,
            "lengths": wls.lengths.__dict__,
            "load1_min_max": load_range(log),
            "wall_s": time.perf_counter() - t_start,
        },
    }


def log_key(runner: Runner, seed: int) -> str:
    """Identity of the live runs (:func:`~.validation.fingerprint`)."""
    return fingerprint(runner.rs, runner.workloads.lengths, seed)


def tuner_check(
    runner: Runner,
    rows: list[dict[str, Any]],
    log: RunLog,
    s: ValidateSettings,
    tick: Callable[[int], None],
) -> dict[str, Any] | None:
    """Run ``recommend``'s search, then its pick and the best live entry, interleaved."""
    from spectune.simulator.schema import Slo
    from spectune.tuner.search import SearchSettings, run_search

    pool = [
        r
        for r in rows
        if r["workload"] == TUNER_WORKLOAD and r["max_num_seqs"] == TUNER_MAX_NUM_SEQS
    ]
    if not pool:
        return None
    best_row = max(pool, key=lambda r: r["measured"]["throughput_tok_per_s"])
    plain = Entry(TUNER_WORKLOAD, "none", max_num_seqs=TUNER_MAX_NUM_SEQS)
    base = entry_scenario(runner.rs_sim or runner.rs, runner.workloads, plain)
    # The batch cap stays the matrix's (the comparison is under one workload and cap), and
    # the comparison is on throughput alone: the scenario's SLOs do not constrain the pick.
    search = base.scenario.search.model_copy(update={"max_num_seqs": []})
    scenario = base.scenario.model_copy(update={"search": search, "slo": Slo()})
    base = dataclasses.replace(base, scenario=scenario)
    t0 = time.perf_counter()
    outcome = run_search(
        base,
        SearchSettings(objective="throughput", trials=s.tuner_trials, seed=s.seed, progress=False),
    )
    search_s = time.perf_counter() - t0
    c = outcome.best.config
    pick = Entry(
        TUNER_WORKLOAD,
        c.drafter,
        k=c.num_spec_tokens,
        tree=(int(c.tree_budget), int(c.tree_depth or c.tree_budget)) if c.is_tree else None,
        max_num_seqs=c.max_num_seqs or TUNER_MAX_NUM_SEQS,
    )
    best = next(e for e in _entries_of(rows) if e.id == best_row["id"])
    pair = {"pick": pick, "best": best}
    for rep in range(s.tuner_repeats):
        for role, e in pair.items():
            key = (f"tuner:{role}:{e.id}", rep)
            if key in log.done:
                continue
            row = runner.live(e, rep)
            row["id"] = key[0]
            log.add(row)
            tick(1)
    thr: dict[str, float] = {}
    for role, e in pair.items():
        vals = [
            r["measured"]["throughput_tok_per_s"]
            for r in log.rows
            if r.get("id") == f"tuner:{role}:{e.id}"
        ]
        thr[role] = float(np.median(vals)) if vals else math.nan
    return {
        "pick": pick.label(),
        "pick_id": pick.id,
        "pick_predicted_tok_per_s": float(outcome.best.metrics["throughput_tok_per_s"]),
        "best_live": best.label(),
        "best_live_id": best.id,
        "pick_measured_tok_per_s": thr["pick"],
        "best_measured_tok_per_s": thr["best"],
        "ratio": thr["pick"] / thr["best"] if thr["best"] > 0 else math.nan,
        "search_s": search_s,
        "simulations": outcome.simulations,
    }


def _entries_of(rows: list[dict[str, Any]]) -> list[Entry]:
    return [
        Entry(
            r["workload"],
            r["drafter"],
            k=r["k"],
            tree=tuple(r["tree"]) if r["tree"] else None,  # type: ignore[arg-type]
            max_num_seqs=r["max_num_seqs"],
        )
        for r in rows
    ]
