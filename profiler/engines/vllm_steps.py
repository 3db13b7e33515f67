"""The step probe's log (:mod:`.vllm_probe`) read back: per-step timings of a vLLM run.

:func:`read_steps` returns the steps that started inside a time window as a
:class:`ProbeSteps` (one numpy array per probe field, plus each step's drafter model calls)
and :meth:`ProbeSteps.step_log` turns them into the :class:`~spectune.profiler.live.StepLog`
every live engine reports, with vLLM's fused step split as spectune splits a step:

- ``verify_ms``: the target's forward (decodes and prefill chunks run in one forward in
  vLLM, so a mixed step's prefill is inside it too; ``prefill_ms`` stays 0);
- ``draft_ms``: the drafter (n-gram lookups, or the draft model's passes and their inputs);
- ``total_ms``: the step's period, from its ``execute_model`` to the next step's, which
  takes in the engine core's own work between worker calls (scheduling, output
  processing, the IPC); when the engine went idle after a step (an open-loop gap), the
  period is the step's worker time plus the run's median between-step gap;
- ``overhead_ms`` = total − verify − draft: the host time per step.

Contexts are the tokens in each request's KV cache when the step starts (vLLM's
``num_computed_tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spectune.profiler.live import StepLog

from .vllm_probe import FIELDS

IDLE_GAP_MS = 5.0  # a between-step gap longer than this (and 3x the median) was idle time


@dataclass
class ProbeSteps:
    """Probe records of consecutive steps (arrays in :data:`~.vllm_probe.FIELDS` order)."""

    cols: dict[str, np.ndarray]
    calls: list[list[tuple[int, float]]] = field(default_factory=list)  # drafter calls

    def __len__(self) -> int:
        return int(self.cols["t0"].size)

    def period_ms(self) -> np.ndarray:
        """Each step's period (module docstring); [n]."""
        t0, t1 = self.cols["t0"], self.cols["t1"]
        n = t0.size
        if n == 0:
            return np.zeros(0)
        work = (t1 - t0) * 1e3
        gap = np.full(n, np.nan)
        gap[:-1] = (t0[1:] - t1[:-1]) * 1e3
        known = gap[np.isfinite(gap)]
        typical = float(np.median(known)) if known.size else 0.0
        idle = ~np.isfinite(gap) | (gap > max(IDLE_GAP_MS, 3.0 * typical))
        return work + np.where(idle, typical, gap)

    def cpu_share(self) -> float | None:
        """Σ forward CPU time / Σ forward wall time over the steps (1.0: the worker had its
        core for every forward; lower: another process took it mid-forward)."""
        wall = float(self.cols["fwd_ms"].sum())
        return float(self.cols["fwd_cpu_ms"].sum()) / wall if wall > 0 else None

    def step_log(self, t_ref: float) -> StepLog:
        """The steps as a :class:`StepLog`, start times relative to ``t_ref`` (monotonic s)."""
        c = self.cols
        dec = c["dec"]
        total = self.period_ms()
        log = StepLog()
        if len(self) == 0:
            return log
        with np.errstate(invalid="ignore", divide="ignore"):
            width = np.where(dec > 0, np.rint(c["dec_tokens"] / np.maximum(dec, 1)), 0)
            ctx = np.where(dec > 0, c["dec_ctx"] / np.maximum(dec, 1), 0.0)
        log.start_s = (c["t0"] - t_ref).tolist()
        log.batch = dec.astype(int).tolist()
        log.query = width.astype(int).tolist()
        log.context = ctx.tolist()
        log.context_max = c["dec_ctx_max"].astype(float).tolist()
        log.prefills = c["pf"].astype(int).tolist()
        log.prefill_tokens = c["pf_tokens"].astype(int).tolist()
        log.prefill_ms = [0.0] * len(self)
        log.draft_ms = c["draft_ms"].tolist()
        log.verify_ms = c["fwd_ms"].tolist()
        log.overhead_ms = (total - c["fwd_ms"] - c["draft_ms"]).tolist()
        log.total_ms = total.tolist()
        log.driver_ms = [0.0] * len(self)
        return log


def parse_line(line: str) -> tuple[list[float], list[tuple[int, float]]] | None:
    """One probe line -> (numbers in FIELDS order, drafter calls), or None if cut short."""
    parts = line.split()
    nums_txt = [p for p in parts if ":" not in p]
    if len(nums_txt) != len(FIELDS) or parts[: len(FIELDS)] != nums_txt:
        return None
    try:
        nums = [float(x) for x in nums_txt]
        calls = []
        for p in parts[len(FIELDS) :]:
            n, ms = p.split(":")
            calls.append((int(n), float(ms)))
    except ValueError:
        return None
    return nums, calls


def read_steps(path: str | Path, t_start: float, t_end: float, offset: int = 0) -> ProbeSteps:
    """Steps whose ``execute_model`` began in ``[t_start, t_end]`` (monotonic seconds),
    reading the log from byte ``offset`` on (its size before the run)."""
    rows: list[list[float]] = []
    calls: list[list[tuple[int, float]]] = []
    p = Path(path)
    if p.is_file():
        with p.open() as fh:
            fh.seek(offset)
            for line in fh:
                got = parse_line(line)
                if got is None or not t_start <= got[0][0] <= t_end:
                    continue
                rows.append(got[0])
                calls.append(got[1])
    arr = np.asarray(rows, dtype=float).reshape(len(rows), len(FIELDS))
    cols = {name: arr[:, i] for i, name in enumerate(FIELDS)}
    return ProbeSteps(cols, calls)
