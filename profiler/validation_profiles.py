"""Latency profiles for a validation: reuse the scenario's when they were measured here,
measure them otherwise.

A validation compares live runs on *this* machine with predictions from latency profiles,
so a profile only counts if it was measured on the same kind of device with the same
torch version and thread count (recorded in its ``device`` section by
``spectune profile latency``). A scenario whose profiles fail that check (e.g. a shipped
example run on another computer or thread count, or a roofline GPU profile) gets fresh
ones, measured with :func:`~.latency.profile_latency` on :data:`VALIDATION_GRID` with
:data:`PROFILE_SETTINGS` into
``<report dir>/profiles/`` (resumable, reused by later runs). Acceptance profiles do not
depend on the device and are always the scenario's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario
from spectune.simulator.schema import LatencyProfile

from .latency import Grid, ProfileSettings, profile_latency
from .live_models import LiveModels
from .timing import device_info

# Decode and verify widths up to a 12-node tree, whole prefills up to 256 tokens; contexts
# up to the validation's longest request (256 + 128 tokens).
VALIDATION_GRID = Grid(
    batches=(1, 2, 4, 8, 16),
    queries=(1, 2, 3, 4, 5, 7, 9, 13, 32, 64, 128, 256),
    contexts=(0, 128, 384),
    max_tokens=512,
)
# How a validation measures: one warm-up forward of the point's shape, then one timed
# forward per visit (a live decode loop repeats its shapes step after step), the median
# over 5 visits in random order; only visits slower than 3x the fastest count as stalls.
PROFILE_SETTINGS = {"repeats": 5, "warmup": 1, "inner": 1, "stall_ratio": 3.0, "device": "cpu"}
DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def dtype_flag(profile: LatencyProfile) -> str:
    """The profiler's dtype flag (bf16/fp16/fp32) of a profile's ``device.dtype``."""
    d = profile.device.dtype
    return DTYPE_NAMES.get(d, d)


def measured_here(profile: LatencyProfile) -> bool:
    """True when the profile was measured on this device, torch and thread count."""
    here = device_info("cpu", profile.device.dtype)
    sw, mine = profile.device.software, here.software
    return (
        profile.provenance.kind == "measured"
        and profile.device.kind == "cpu"
        and profile.device.name == here.name
        and sw.get("torch") == mine.get("torch")
        and sw.get("torch_threads") == mine.get("torch_threads")
    )


def local_profiles(
    rs: ResolvedScenario,
    models: LiveModels,
    out_dir: Path,
    progress: bool = False,
) -> tuple[ResolvedScenario, list[str]]:
    """``rs`` with every latency profile measured on this machine.

    Returns:
        (the scenario to predict with, notes on what was reused or measured).
    """
    notes: list[str] = []
    target = rs.target
    dtype = dtype_flag(target)
    settings = ProfileSettings(**{**PROFILE_SETTINGS, "dtype": dtype})
    if measured_here(target):
        notes.append(f"target latency profile reused ({target.model.name}, measured here)")
    else:
        path = out_dir / "profiles" / f"{target.model.name}.yaml"
        target = _measure(models.target.model, target.model.name, path, settings, progress)
        notes.append(f"target latency profile measured here: {path}")
    drafters = dict(rs.drafters)
    for name, rd in rs.drafters.items():
        if rd.latency is None:
            continue
        if measured_here(rd.latency):
            notes.append(f"drafter {name} latency profile reused (measured here)")
            continue
        path = out_dir / "profiles" / f"{rd.latency.model.name}.yaml"
        model = models.drafter_model(name)
        lat = _measure(model, rd.latency.model.name, path, settings, progress)
        drafters[name] = ResolvedDrafter(spec=rd.spec, acceptance=rd.acceptance, latency=lat)
        notes.append(f"drafter {name} latency profile measured here: {path}")
    return dataclasses.replace(rs, target=target, drafters=drafters), notes


def _measure(
    model: torch.nn.Module, name: str, path: Path, settings: ProfileSettings, progress: bool
) -> LatencyProfile:
    from spectune.simulator.schema import load_latency_profile

    if path.is_file():
        prof = load_latency_profile(path)
        if measured_here(prof):
            return prof
    return profile_latency(model, name, path, VALIDATION_GRID, settings, progress=progress)
