"""``spectune validate --engine vllm``: the simulator checked against vLLM's own server.

Steps (:func:`run_vllm_validation`):

1. Load the scenario; find the target's and draft models' directories; check vLLM.
2. Latency profiles measured through vLLM in the runs' execution mode
   (:mod:`.vllm_profiles`: the scenario's when they qualify, else measured into
   ``<report>/profiles/``) — forward latency and the engine's host time per step.
3. The matrix (:mod:`.vllm_matrix`), its workloads (load levels from the simulated
   capacity), grouped by engine configuration; live runs session by session
   (:mod:`.vllm_runs`: calibration run first, interleaved repeats, interference checks,
   resumable).
4. Predictions: the simulator with the vLLM profiles, ``serving.engine: vllm``, each
   configuration's acceptance and the drafters' own costs from the calibration runs
   (:mod:`.vllm_calibration`; never the scored runs). For comparison, the same without
   calibration (the scenario's acceptance profiles) and with the generic engine rules.
5. The tuner's pick, live (:mod:`.vllm_tuner`), greedy outputs of speculative configs
   against plain decoding, the noise floor and the interference summary; the report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spectune.profiler.engines.vllm_config import require_vllm
from spectune.profiler.engines.vllm_server import VllmServer
from spectune.simulator.api import simulate
from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario, load_scenario

from .calibrated import write_calibrated_scenario
from .interference import noise_floor, throughputs_by_config
from .live_models import prompt_source_for
from .matrix import Entry, fingerprint, make_workloads
from .runs import RunLog, entry_rows, key_metrics, summarize
from .settings import DEFAULT_TRACE, ValidateSettings, default_dir, load_range
from .vllm_calibration import (
    CalibrationStore,
    calibrated,
    diagnostics,
    group_acceptance,
    with_acceptance,
)
from .vllm_matrix import EngineBase, build_vllm_matrix, drafter_dirs, entry_scenario, group
from .vllm_profiles import engine_profiles
from .vllm_runs import EngineSessions
from .vllm_tuner import lossless_check, tuner_check

DISTURBED_SHARE = 0.10  # more configs than this with a disturbed median: no confident summary


def run_vllm_validation(
    s: ValidateSettings,
    progress: Callable[[int, int], None] | None = None,
    *,
    make_engine: Callable[[Any], Any] | None = None,
    profiles: Callable[..., tuple[ResolvedScenario, list[str], dict[str, Path]]] | None = None,
) -> dict[str, Any]:
    """Run a validation against vLLM (module docstring); the JSON-ready result.

    Args:
        s: settings.
        progress: called with (runs done, runs total).
        make_engine: builds the engine of a configuration (default: a
            :class:`~spectune.profiler.engines.vllm_server.VllmServer`; tests pass fakes).
        profiles: provides the latency profiles (default :func:`.vllm_profiles.
            engine_profiles`).
    """
    t_start = time.perf_counter()
    version = require_vllm() if make_engine is None else "fake"
    scen = Path(s.scenario)
    rs = load_scenario(scen, list(s.overrides))
    report_dir = Path(s.report_dir) if s.report_dir else Path("validation-report")
    report_dir.mkdir(parents=True, exist_ok=True)
    models_dir = Path(s.models_dir) if s.models_dir else default_dir(scen, "models")
    tname = rs.scenario.target.name or rs.target.model.name
    target_dir = models_dir / tname
    if not (target_dir / "config.json").is_file():
        raise InputError(
            f"no checkpoint for target '{tname}' in {models_dir} (pass --models DIR)",
            source=rs.source,
            field="target",
        )
    base = EngineBase(
        target_dir=str(target_dir.resolve()),
        drafter_dirs=drafter_dirs(rs, models_dir),
        dtype={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(
            rs.target.device.dtype, rs.target.device.dtype
        ),
        eager=s.eager,
        seed=s.seed,
    )
    entries = list(s.entries) if s.entries is not None else build_vllm_matrix(rs, s.quick)
    if s.only:
        entries = [e for e in entries if any(o in e.id for o in s.only)]
    if not entries:
        raise InputError("no matrix entry left to run (check --only)", field="--only")
    notes: list[str] = []
    rs_given = rs
    rs, prof_notes, prof_paths = (profiles or engine_profiles)(
        rs, base, report_dir, s.quick, version, s.progress, use_scenario=not s.profiles
    )
    notes += prof_notes
    prompts_file = s.prompts or default_dir(scen, "examples/prompts/stdlib.txt")
    prompts = prompt_source_for(target_dir, prompts_file, s.seed)
    repeats = s.repeats or (2 if s.quick else 3)
    sweeps = s.sweeps or (1 if s.quick else 2)
    kv = base.kv_cache_gib

    def scenario_for(r: ResolvedScenario, w: Any, e: Entry) -> ResolvedScenario:
        return entry_scenario(r, w, e, kv)

    trace = Path(s.trace) if s.trace else DEFAULT_TRACE
    wls = make_workloads(rs, s.quick, trace, report_dir, s.seed, scenario_for)
    entries = [e for e in entries if e.workload != "azure" or wls.trace_path is not None]
    key = fingerprint(rs, wls.lengths, s.seed) + f"-vllm-{version}-{base.eager}"
    log = RunLog(report_dir / "runs.jsonl", key)
    store = CalibrationStore(report_dir, key)
    groups = group(rs, entries, base)
    work = report_dir / "engine"

    def make(settings: Any) -> Any:
        if make_engine is not None:
            return make_engine(settings)
        return VllmServer(settings, work, slo=rs.scenario.slo)

    done = [0]
    sessions = EngineSessions(
        rs,
        base,
        wls,
        prompts,
        s.seed,
        log,
        store,
        make,
        repeats=repeats,
        sweeps=sweeps,
        retries=s.retries,
        tick=lambda n: _tick(done, n, total, progress),
    )
    total = sessions.todo(groups) + (4 * s.tuner_repeats if s.tuner else 0)
    sessions.run(groups)
    notes += sessions.notes

    cals = store.load_all()
    rs_cal, fits = calibrated(rs, cals)
    acc = {k: group_acceptance(c) for k, c in cals.items()}
    settings_key = {e.id: st.key() for st, es in groups for e in es}

    def predict(e: Entry, r: ResolvedScenario, per_config: bool = True, **serving: Any) -> dict:
        sc = entry_scenario(r, wls, e, kv)
        if serving:
            sc = sc.with_serving(**serving)
        spec = acc.get(settings_key.get(e.id, ""))
        if per_config and e.drafter != "none" and spec is not None:
            sc = with_acceptance(sc, e.drafter, spec)
        res = simulate(sc, s.seed)
        return {"predicted": key_metrics(res.metrics), "warnings": res.metrics["warnings"]}

    predictions = {e.id: predict(e, rs_cal) for e in entries}
    rows = entry_rows(entries, log, predictions)
    _flag_disturbed(rows, log)
    summary = summarize(rows)
    variants = {
        "generic engine rules": {e.id: predict(e, rs_cal, engine="generic") for e in entries},
        "scenario's acceptance profiles, no drafter calibration": {
            e.id: predict(e, rs, per_config=False) for e in entries
        },
    }
    compare = {name: summarize(entry_rows(entries, log, pred)) for name, pred in variants.items()}
    floor = noise_floor(throughputs_by_config(log.rows), configs=len(rows), repeats=repeats)
    disturbed = [r["id"] for r in rows if r.get("disturbed_runs")]
    summary["disturbed_configs"] = len(disturbed)
    summary["disturbed"] = len(disturbed) > DISTURBED_SHARE * max(1, len(rows))
    summary["noise_floor_max_pct"] = floor.get("max_err_median_pct")
    tuner = None
    if s.tuner:
        tuner = tuner_check(rs_cal, rows, sessions, log, s, scenario_for)
        if tuner is not None:
            summary["tuner_pick_ratio"] = tuner["ratio"]
    calibrated_path = write_calibrated_scenario(
        rs_cal,
        scen,
        report_dir,
        prof_paths,
        "vLLM: drafter costs from calibration runs (seed + 1)",
        rules="serving.engine: vllm (vLLM's behaviours, docs/engines.md); the latency "
        "profiles measured through vLLM carry its host time per step",
    )
    return {
        "summary": summary,
        "compare": compare,
        "configs": rows,
        "tuner": tuner,
        "lossless": lossless_check(entries, log),
        "noise_floor": floor,
        "sessions": sessions.sessions,
        "drafter_costs": {n: dataclasses.asdict(f) for n, f in fits.items()},
        "acceptance": {k: (v.per_position if v else None) for k, v in acc.items()},
        "diagnostics": diagnostics(rs_cal, cals),
        "calibrated_scenario": str(calibrated_path),
        "notes": notes,
        "environment": {
            "engine": "vllm",
            "vllm": version,
            "mode": "eager" if s.eager else "compiled",
            "scenario": str(scen),
            "scenario_as_given_target": rs_given.target.model.name,
            "target": rs.target.model.name,
            "drafters": {n: d.spec.kind for n, d in rs.drafters.items()},
            "device": rs.target.device.name,
            "dtype": rs.target.device.dtype,
            "quick": s.quick,
            "repeats": repeats,
            "sweeps": sweeps,
            "seed": s.seed,
            "capacity_req_per_s": wls.capacity_req_per_s,
            "lengths": wls.lengths.__dict__,
            "load1_min_max": load_range(log),
            "engine_configs": len(groups),
            "wall_s": time.perf_counter() - t_start,
        },
    }


def _tick(done: list[int], n: int, total: int, progress: Callable[[int, int], None] | None) -> None:
    done[0] += n
    if progress is not None:
        progress(done[0], total)


def _flag_disturbed(rows: list[dict[str, Any]], log: RunLog) -> None:
    """Per config row: how many of its scored runs stayed disturbed, and their signals."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in log.rows:
        if r.get("kind") == "live":
            by_id.setdefault(r["id"], []).append(r)
    for row in rows:
        runs = by_id.get(row["id"], [])
        row["disturbed_runs"] = sum(1 for r in runs if r.get("disturbed"))
        waits = [r["interference"]["wait_frac"] for r in runs if "interference" in r]
        row["max_wait_frac"] = float(np.max(waits)) if waits else None
