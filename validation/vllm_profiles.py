"""Latency profiles for a vLLM validation: measured through vLLM, in the runs' mode.

A vLLM run is predicted from profiles measured through the same engine
(:mod:`spectune.profiler.measure.engine_latency`): its forward latency and its host time
per step differ from spectune's own engine (other kernels, compiled graphs, scheduler,
process layout), and from vLLM in the other execution mode (compiled vs eager). A
scenario's profile qualifies when its ``device.software`` says it was measured by
``vllm-server`` with this vLLM version and mode on this CPU; otherwise the target and every
draft model are profiled here into ``<report>/profiles/`` (reused by later runs of the same
report). Draft models are profiled as models of their own (every width, batch and
context); the validation's calibration runs check the draft passes against it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from spectune.profiler.measure.engine_latency import (
    QUICK_ENGINE_GRID,
    EngineGrid,
    profile_vllm_latency,
)
from spectune.profiler.runtime.timing import device_info
from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario
from spectune.simulator.schema import LatencyProfile, load_latency_profile

from .vllm_matrix import EngineBase

PASSES = {True: 2, False: 3}  # quick, full


def vllm_measured_here(profile: LatencyProfile, version: str, mode: str) -> bool:
    """Measured through vLLM's server, this version and mode, on this CPU."""
    sw = profile.device.software
    return (
        profile.provenance.kind == "measured"
        and sw.get("engine") == "vllm-server"
        and sw.get("vllm") == version
        and sw.get("mode") == mode
        and profile.device.name == device_info("cpu", profile.device.dtype).name
    )


def engine_profiles(
    rs: ResolvedScenario,
    base: EngineBase,
    report_dir: Path,
    quick: bool,
    version: str,
    progress: bool = True,
    use_scenario: bool = False,
) -> tuple[ResolvedScenario, list[str], dict[str, Path]]:
    """``rs`` with vLLM-measured latency profiles for the target and each draft model:
    measured into the report folder (kept there for a resumed run), or, with
    ``use_scenario``, the scenario's own when they qualify.

    Returns:
        (the scenario, notes for the report, ``"target"`` / drafter name -> profile file
        measured here).
    """
    mode = "eager" if base.eager else "compiled"
    grid: EngineGrid = QUICK_ENGINE_GRID if quick else EngineGrid()
    jobs: list[tuple[str, str, LatencyProfile]] = [("target", base.target_dir, rs.target)]
    jobs += [
        (name, base.drafter_dirs[name], rd.latency)
        for name, rd in rs.drafters.items()
        if rd.latency is not None and name in base.drafter_dirs
    ]
    notes: list[str] = []
    paths: dict[str, Path] = {}
    ready: dict[str, LatencyProfile] = {}
    for key, model_dir, prof in jobs:
        path = report_dir / "profiles" / f"{Path(model_dir).name}.yaml"
        if use_scenario and vllm_measured_here(prof, version, mode):
            notes.append(f"{key}: the scenario's vLLM latency profile ({mode}) is used")
            continue
        if path.is_file() and vllm_measured_here(load_latency_profile(path), version, mode):
            ready[key] = load_latency_profile(path)
            notes.append(f"{key}: vLLM latency profile reused from {path}")
        else:
            ready[key], summary = profile_vllm_latency(
                model_dir,
                path,
                grid,
                PASSES[quick],
                eager=base.eager,
                dtype=base.dtype,
                kv_cache_gib=base.kv_cache_gib,
                work_dir=report_dir / "engine",
                seed=base.seed,
                progress=progress,
            )
            notes.append(_note(key, path, summary))
        paths[key] = path
    drafters = dict(rs.drafters)
    for name, rd in rs.drafters.items():
        if name in ready:
            drafters[name] = ResolvedDrafter(rd.spec, rd.acceptance, ready[name])
    out = dataclasses.replace(rs, target=ready.get("target", rs.target), drafters=drafters)
    return out, notes, paths


def _note(key: str, path: Path, summary: dict[str, Any]) -> str:
    return (
        f"{key}: latency profile measured through vLLM {summary['vllm']} ({summary['mode']}) "
        f"into {path}: {summary['points']} points, leave-one-out error "
        f"{summary['cv_error_pct']}% (max {summary['cv_max_error_pct']}%), host time "
        f"{summary['host_step_ms']} ms + {summary['host_per_seq_ms']} ms/seq, speculative "
        f"extra {summary['spec_step_ms']} ms + ({summary['spec_per_seq_ms']} + "
        f"{summary['spec_per_node_seq_ms']} x drafts) ms/seq; engine start-ups "
        f"{summary['engine_start_s']} s, {summary['wall_s']} s in all"
    )
