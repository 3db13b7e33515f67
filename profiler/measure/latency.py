"""Latency profiler: time real forward passes over batch × query tokens × context.

One *point* is (batch, query_tokens, context_tokens): a forward of ``batch`` sequences,
each with ``query_tokens`` new tokens on top of ``context_tokens`` tokens already in its
KV cache, writing the new tokens' K/V like a decode or verify step does. The cache is
filled once with random K/V for the largest batch; a point with a smaller batch uses the
leading rows of that cache (the same memory layout as a cache of that batch), and its
lengths are simply set to the context, so no prefill is run to reach a context.

Noise control (this machine is shared; DESIGN.md §5): every repeat is one *pass* over all
points in a different seeded random order (so slow periods spread over all points instead
of biasing some), each visit runs ``warmup`` untimed forwards and then ``inner`` timed ones
back to back. A visit's sample is the fastest of its timed forwards: on a shared CPU a
descheduled thread stalls a forward for a whole time slice (tens of ms against a ~1 ms
forward), and such stalls hit single forwards, not every one of a back-to-back run. A
point's statistics (min, p50, p90, n) are over its visits, one per pass.

Resume: every visit's samples are appended (and flushed) to ``<out>.partial.jsonl`` as
they are taken; a rerun with the same model, dtype and device reads it and measures only the
(point, pass) pairs still missing. The finished profile is written with a fitted
:class:`~spectune.simulator.latency.LatencyModel` and its cross-validated error, and the
partial file is removed.

Units: milliseconds (``_ms``), tokens.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectune.profiler.runtime.config import ModelConfig
from spectune.profiler.runtime.kvcache import KVCache
from spectune.profiler.runtime.model import DecoderLM
from spectune.profiler.runtime.timing import Timer, device_info
from spectune.simulator.errors import InputError
from spectune.simulator.progress import Progress
from spectune.simulator.schema import (
    DeviceInfo,
    LatencyFit,
    LatencyPoint,
    LatencyProfile,
    ModelArch,
    Provenance,
    dump_yaml,
)

from .grid import DTYPES, Grid, Point, ProfileSettings
from .samples import (
    PartialLog,
    ThreadCpuTimer,
    clean_samples,
    latency_stats,
    settled,
    visit_samples,
)


def model_arch(config: ModelConfig, name: str) -> ModelArch:
    """The schema's architecture record for a model config."""
    return ModelArch(
        name=name,
        params=config.num_params(),
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        vocab=config.vocab_size,
        intermediate=config.intermediate_size,
        head_dim=config.head_size,
    )


# --------------------------------------------------------------------------- measuring


class _Bench:
    """A model, one random-filled KV cache for the largest batch, and input ids."""

    def __init__(self, model: DecoderLM, max_batch: int, max_len: int, seed: int):
        cfg = model.config
        self.model = model
        self.device = model.device
        gen = torch.Generator().manual_seed(seed)
        self.cache = KVCache(cfg, max_batch, max_len, device=self.device, dtype=model.dtype)
        # Realistic K/V magnitudes (not zeros) in the slots the context reads.
        for t in (self.cache.k, self.cache.v):
            t.copy_(torch.randn(t.shape, generator=gen).to(t.dtype))
        self.ids = torch.randint(0, cfg.vocab_size, (max_batch, max_len), generator=gen).to(
            self.device
        )
        self._views: dict[int, KVCache] = {}

    def view(self, batch: int) -> KVCache:
        """A cache of ``batch`` sequences sharing the leading rows of the big cache.

        Per layer, rows ``[:batch]`` of a ``[batch_max, heads, len, dim]`` tensor are one
        contiguous block with the strides a cache of that batch would have.
        """
        v = self._views.get(batch)
        if v is None:
            cfg = self.model.config
            v = KVCache(cfg, batch, 1, device=self.device, dtype=self.model.dtype)
            v.k, v.v = self.cache.k[:, :batch], self.cache.v[:, :batch]
            self._views[batch] = v
        return v

    def run(self, point: Point) -> None:
        b, q, c = point
        cache = self.view(b)
        cache.truncate(torch.full((b,), c, dtype=torch.long))
        self.model(self.ids[:b, :q], cache)


def measure(
    model: DecoderLM,
    points: list[Point],
    settings: ProfileSettings,
    log: PartialLog,
    progress: bool = True,
    on_sample: Callable[[int], None] | None = None,
) -> None:
    """Take every missing visit, appending each to ``log``.

    First ``repeats`` passes over all points; then more passes, up to ``max_repeats`` in
    all, over the points that are not yet settled (:func:`settled`): too few clean visits,
    or a median whose relative standard error is above ``target_rse``. Cheap, noisy points
    (small forwards on a shared CPU) so get many visits and large ones few.

    Args:
        model: the model, on its device and dtype.
        points: the grid.
        settings: repeats, warm-up, seed.
        log: the partial file (already holds the samples of an interrupted run).
        progress: show progress on stderr (a bar on a terminal, else a line per 10%).
        on_sample: called with the number of visits made so far (tests interrupt here).
    """
    todo = [
        (rep, p)
        for rep in range(settings.repeats)
        for p in _pass_order(points, settings.seed, rep)
        if (*p, rep) not in log.samples
    ]
    max_b = max(p[0] for p in points)
    max_len = max(p[1] + p[2] for p in points)
    bench: _Bench | None = None
    timer = Timer(model.device) if settings.clock == "wall" else ThreadCpuTimer()
    # a bar on a terminal; a line per 10% (or 30 s) in a log, not one per redraw
    bar = Progress("latency", total=len(todo), unit="visit", enabled=progress)
    visits = 0
    with torch.inference_mode():
        # The first round is the `repeats` full passes; each later one an extra pass.
        extra_passes = range(settings.repeats, settings.max_repeats)
        for extra in [None, *extra_passes]:
            if extra is not None:
                per_point = visit_samples(log.samples, points)
                todo = [
                    (extra, p)
                    for p in _pass_order(points, settings.seed, extra)
                    if not settled(per_point[p], settings) and (*p, extra) not in log.samples
                ]
                bar.total += len(todo)
            if not todo:
                continue
            if bench is None:
                bench = _Bench(model, max_b, max_len, settings.seed)
                for _ in range(3):  # first calls pay one-off allocation and kernel selection
                    bench.run(todo[0][1])
            for rep, point in todo:
                for _ in range(settings.warmup):
                    bench.run(point)
                taken = []
                for _ in range(settings.inner):
                    with timer.measure() as t:
                        bench.run(point)
                    taken.append(t.ms)
                log.add(point, rep, taken)
                visits += 1
                bar.update(1)
                if on_sample is not None:
                    on_sample(visits)
    bar.close()


def _pass_order(points: list[Point], seed: int, rep: int) -> list[Point]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, rep]))
    return [points[i] for i in rng.permutation(len(points))]


# --------------------------------------------------------------------------- the profile


def model_id(config: ModelConfig, dtype: str, device: str, clock: str = "wall") -> dict[str, Any]:
    """The partial-file header: what the samples were measured on, and with which clock."""
    blob = json.dumps(config.to_hf_dict(), sort_keys=True).encode()
    return {
        "config_sha": hashlib.sha256(blob).hexdigest()[:16],
        "dtype": dtype,
        "device": device,
        "host": platform.node(),
        "threads": torch.get_num_threads(),
        "clock": clock,
    }


def build_profile(
    samples: dict[tuple[int, int, int, int], list[float]],
    points: list[Point],
    device: DeviceInfo,
    arch: ModelArch,
    how: str,
    stall_ratio: float = 1.5,
) -> LatencyProfile:
    """Aggregate visits into points (stalled visits dropped) and attach the fitted model's
    cross-validated error; ``notes`` records how many visits were stalls."""
    from spectune.simulator.latency import FIT_KIND, LatencyModel

    per_point = visit_samples(samples, points)
    rows, n_all, n_clean = [], 0, 0
    for (b, q, c), v in sorted(per_point.items()):
        kept = clean_samples(v, stall_ratio)
        n_all, n_clean = n_all + len(v), n_clean + len(kept)
        stats = latency_stats(kept)
        rows.append(LatencyPoint(batch=b, query_tokens=q, context_tokens=c, latency_ms=stats))
    spread = [p.latency_ms.p90 / p.latency_ms.min - 1.0 for p in rows]
    profile = LatencyProfile(
        schema="spectune/latency/v1",
        device=device,
        model=arch,
        provenance=Provenance(kind="measured", how=how),
        points=rows,
        notes=(
            f"{n_all - n_clean} of {n_all} visits ({100.0 * (n_all - n_clean) / n_all:.0f}%) "
            f"were stalls (> {stall_ratio}x the point's fastest) and were dropped; median "
            f"p90/min - 1 over points: {100.0 * float(np.median(spread)):.1f}%"
        ),
    )
    lm = LatencyModel.from_profile(profile)
    cv = lm.cv_error_pct
    fit = LatencyFit(
        kind=FIT_KIND,
        cv_error_pct=None if np.isnan(cv) else round(cv, 3),
        params=lm.fit_params(),
    )
    return profile.model_copy(update={"fit": fit})


def profile_latency(
    model: DecoderLM,
    name: str,
    out: str | Path,
    grid: Grid,
    settings: ProfileSettings,
    progress: bool = True,
    on_sample: Callable[[int], None] | None = None,
) -> LatencyProfile:
    """Measure a latency profile and write it to ``out`` (resumable; module docstring).

    Args:
        model: the model on its device and dtype.
        name: model name recorded in the profile.
        out: YAML path to write.
        grid: the axes to sweep.
        settings: how to measure.
        progress: show a progress bar.
        on_sample: test hook, called after each sample with the count taken in this run.

    Returns:
        The written profile.

    Raises:
        InputError: the grid is empty for this model, or the partial file belongs to
            another model/dtype/device.
    """
    settings.validate()
    out = Path(out)
    points = grid.points(model.config.max_position_embeddings)
    if not points:
        raise InputError(
            f"no grid point fits max_position_embeddings={model.config.max_position_embeddings}",
            field="--contexts",
        )
    partial = out.with_name(out.name + ".partial.jsonl")
    header = model_id(model.config, settings.dtype, str(model.device), settings.clock)
    log = PartialLog(partial, header)
    try:
        measure(model, points, settings, log, progress=progress, on_sample=on_sample)
    finally:
        log.close()
    clock = (
        "wall clock (timing.Timer)"
        if settings.clock == "wall"
        else "clock: the thread's CPU time (1 torch thread), not wall time"
    )
    how = (
        f"spectune profile latency: {len(points)} points x {settings.repeats} passes in "
        f"seeded random order, then passes over the points whose median's relative "
        f"standard error was > {settings.target_rse:g}, up to {settings.max_repeats} passes "
        f"in all; per visit {settings.warmup} warm-up then {settings.inner} "
        f"timed forward(s), the fastest kept; {clock}; KV cache prefilled with random "
        f"values; {torch.get_num_threads()} torch threads"
    )
    info = device_info(model.device, DTYPES[settings.dtype])
    arch = model_arch(model.config, name)
    profile = build_profile(log.samples, points, info, arch, how, settings.stall_ratio)
    dump_yaml(profile, out)
    partial.unlink(missing_ok=True)
    return profile
