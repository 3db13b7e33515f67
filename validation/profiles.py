"""Latency profiles for a validation: reuse the scenario's when they were measured here,
measure them otherwise.

A validation compares live runs on *this* machine with predictions from latency profiles,
so a profile only counts if it was measured on the same kind of device with the same
torch version and thread count (recorded in its ``device`` section by
``spectune profile latency``). A scenario whose profiles fail that check (e.g. a shipped
example run on another computer or thread count, or a roofline GPU profile) gets fresh
ones, measured on :data:`VALIDATION_GRID` with :data:`PROFILE_SETTINGS`, in passes
interleaved with the live runs (:class:`ProfilePasses`), into ``<report dir>/profiles/``
(resumable, reused by later runs). Acceptance profiles do not
depend on the device and are always the scenario's.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from spectune.profiler.measure.grid import DTYPES, Grid, ProfileSettings
from spectune.profiler.measure.latency import (
    PartialLog,
    build_profile,
    measure,
    model_arch,
    model_id,
)
from spectune.profiler.runtime.timing import device_info
from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario
from spectune.simulator.schema import LatencyProfile, dump_yaml, load_latency_profile

from .live_models import LiveModels

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
    """True when the profile was measured on this device, torch and thread count, in wall
    time (live runs are timed in wall time; a profile of thread CPU time leaves out the
    waits a live run pays on a shared machine)."""
    here = device_info("cpu", profile.device.dtype)
    sw, mine = profile.device.software, here.software
    return (
        profile.provenance.kind == "measured"
        and "wall clock" in profile.provenance.how
        and profile.device.kind == "cpu"
        and profile.device.name == here.name
        and sw.get("torch") == mine.get("torch")
        and sw.get("torch_threads") == mine.get("torch_threads")
    )


class ProfilePasses:
    """Latency profiles measured in passes interleaved with the live runs.

    Live speed on a shared machine drifts by tens of percent over minutes, so a profile
    measured once before the live runs would be compared with runs made under other
    conditions. Instead, pass 0 of every profile that needs measuring is taken first
    (:meth:`provisional`, which also sets the load levels) and pass ``r + 1`` is spread over
    live repeat ``r``: a share of its points before each live run (:meth:`before_run`).
    :meth:`finish` takes any passes left and builds the profiles (median over passes,
    stalls over 3x the fastest visit dropped). Visits are appended to a resumable partial
    file per model (:class:`~spectune.profiler.measure.samples.PartialLog`).

    Args:
        rs: the scenario.
        models: its live models.
        out_dir: report folder (profiles go to ``out_dir/profiles``).
        passes: passes per profile.
    """

    def __init__(self, rs: ResolvedScenario, models: LiveModels, out_dir: Path, passes: int):
        self.rs = rs
        self.passes = passes
        self.notes: list[str] = []
        self.jobs: list[tuple[str, torch.nn.Module, LatencyProfile, Path]] = []
        self.ready: dict[str, LatencyProfile] = {}
        # "target" or a drafter name -> the profile file measured here (for the
        # calibrated scenario)
        self.paths: dict[str, Path] = {}
        todo = [("target", models.target.model, rs.target)]
        todo += [
            (name, models.drafter_model(name), rd.latency)
            for name, rd in rs.drafters.items()
            if rd.latency is not None
        ]
        for key, model, prof in todo:
            path = out_dir / "profiles" / f"{prof.model.name}.yaml"
            if measured_here(prof):
                self.notes.append(f"{key}: latency profile reused (measured here)")
            elif path.is_file() and measured_here(load_latency_profile(path)):
                self.ready[key] = load_latency_profile(path)
                self.paths[key] = path
                self.notes.append(f"{key}: latency profile reused from {path}")
            else:
                self.jobs.append((key, model, prof, path))
                self.paths[key] = path
                self.notes.append(
                    f"{key}: latency profile measured here in {passes} passes interleaved "
                    f"with the live repeats: {path}"
                )
        self.settings = ProfileSettings(
            **{**PROFILE_SETTINGS, "dtype": dtype_flag(rs.target), "stall_ratio": math.inf}
        )

    def _log(self, model: torch.nn.Module, path: Path) -> PartialLog:
        s = self.settings
        header = model_id(model.config, s.dtype, str(model.device), s.clock)
        return PartialLog(path.with_name(path.name + ".partial.jsonl"), header)

    def run_pass(self, rep: int, part: int = 0, parts: int = 1) -> None:
        """Measure part ``part`` of ``parts`` of pass ``rep``: every ``parts``-th point of
        the grid from ``part`` on (no-op for visits already taken, or ``rep >= passes``).
        Splitting a pass into parts lets its visits spread over a repeat's live runs."""
        if rep >= self.passes:
            return
        settings = dataclasses.replace(self.settings, repeats=rep + 1)
        for _key, model, _prof, path in self.jobs:
            points = VALIDATION_GRID.points(model.config.max_position_embeddings)
            subset = points[part::parts]
            if not subset:
                continue
            log = self._log(model, path)
            try:
                measure(model, subset, settings, log, progress=False)
            finally:
                log.close()

    def before_run(self, rep: int, index: int, count: int) -> None:
        """Hook for the live loop: before run ``index`` of ``count`` in live repeat
        ``rep``, take that share of profile pass ``rep + 1`` (pass 0 precedes everything,
        :meth:`provisional`)."""
        self.run_pass(rep + 1, index, count)

    def provisional(self) -> ResolvedScenario:
        """The scenario with profiles built from pass 0 alone (taken now if missing), e.g.
        to set load levels before the live runs; nothing is written."""
        self.run_pass(0)
        return self._build(write=False)

    def finish(self) -> ResolvedScenario:
        """Take the passes left, build and write the profiles; the scenario using them."""
        for rep in range(self.passes):
            self.run_pass(rep)
        return self._build(write=True)

    def _build(self, write: bool) -> ResolvedScenario:
        stall = PROFILE_SETTINGS["stall_ratio"]
        ready = dict(self.ready)
        for key, model, prof, path in self.jobs:
            points = VALIDATION_GRID.points(model.config.max_position_embeddings)
            log = self._log(model, path)
            log.close()
            how = (
                f"spectune validate: {len(points)} points x {self.passes} passes interleaved "
                f"with the live runs; per visit {self.settings.warmup} warm-up then "
                f"{self.settings.inner} timed forward; median over passes, visits over "
                f"{stall:g}x the fastest dropped; wall clock; "
                f"{torch.get_num_threads()} torch threads"
            )
            info = device_info(model.device, DTYPES[self.settings.dtype])
            built = build_profile(
                log.samples, points, info, model_arch(model.config, prof.model.name), how, stall
            )
            if write:
                dump_yaml(built, path)
            ready[key] = built
        rs = self.rs
        drafters = dict(rs.drafters)
        for name, rd in rs.drafters.items():
            if name in ready:
                drafters[name] = ResolvedDrafter(
                    spec=rd.spec, acceptance=rd.acceptance, latency=ready[name]
                )
        return dataclasses.replace(rs, target=ready.get("target", rs.target), drafters=drafters)
