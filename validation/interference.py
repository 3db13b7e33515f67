"""Is this live run trustworthy? Interference checks per run, and the noise floor.

On a shared machine a live run can be slowed by other processes on the same VM (they take
the engine's core) or by other tenants of the host (the CPU itself runs slower; measured
here: identical runs 1.28x apart with steal near 0). Each run is therefore watched
(:class:`RunMonitor`), with three signals:

- **run-queue wait** of the engine's processes (``/proc/<pid>/schedstat``: time runnable
  but not running), as a fraction of the run's wall time, for the busiest of them (the
  worker that runs the forwards): another process took its core;
- **steal** (``/proc/stat``): the hypervisor ran someone else;
- **speed probe**: a fixed ~20 ms CPU loop timed before the run, against the fastest seen
  in this validation (the CPU itself slowed down, which neither signal above shows);
- where the engine reports it (vLLM's step probe), the **forwards' CPU share**: their CPU
  time over their wall time (below 1 when the worker lost its core mid-forward).

A run is *disturbed* when any signal passes its threshold (:data:`LIMITS`); the
validation re-runs it (``retries``) and keeps the flag when it stays disturbed. The
summary reports how many runs and configs were disturbed and, from the spread of the
repeats, the machine's noise floor (:func:`noise_floor`): the largest |error| one should
expect over the configs *with perfect predictions*, by Monte Carlo from the pooled
per-run log standard deviation.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LIMITS = {"wait_frac": 0.05, "steal_frac": 0.02, "probe_slowdown": 1.20}
MIN_CPU_SHARE = 0.95  # forwards must have had their core at least this share of their time


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _thread_stats(pids: Sequence[int]) -> dict[tuple[int, int], tuple[float, float]]:
    out = {}
    for pid in pids:
        for tid in _threads(pid):
            try:
                run_ns, wait_ns, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            out[(pid, tid)] = (int(run_ns) / 1e9, int(wait_ns) / 1e9)
    return out


def _steal() -> tuple[int, int]:
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (vals[7] if len(vals) > 7 else 0), sum(vals)


def speed_probe(n: int = 120_000) -> float:
    """Seconds of CPU time a fixed pure-Python loop takes on this thread (its wall time
    when nothing else runs)."""
    t = time.thread_time()
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFF
    return time.thread_time() - t + 0.0 * x


@dataclass
class RunMonitor:
    """Interference signals around one run (module docstring).

    Call order: :meth:`begin` right before the run (takes the speed probe first),
    :meth:`end` right after; :meth:`report` gives the signals and the verdict.
    """

    best_probe_s: list[float] = field(default_factory=lambda: [math.inf])
    _t0: float = 0.0
    _threads0: dict = field(default_factory=dict)
    _steal0: tuple[int, int] = (0, 0)
    _probe: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)

    def begin(self, pids: Sequence[int]) -> None:
        self._probe = min(speed_probe() for _ in range(3))
        self.best_probe_s[0] = min(self.best_probe_s[0], self._probe)
        self._threads0 = _thread_stats(pids)
        self._steal0 = _steal()
        self._t0 = time.monotonic()

    def end(self, pids: Sequence[int], cpu_share: float | None = None) -> dict[str, Any]:
        """The signals of the run just ended (``cpu_share``: the engine's forward CPU time
        over its wall time, where the engine reports it)."""
        wall = max(time.monotonic() - self._t0, 1e-9)
        after = _thread_stats(pids)
        s1 = _steal()
        busiest, wait = 0.0, 0.0
        for key, (run1, wait1) in after.items():
            run0, wait0 = self._threads0.get(key, (0.0, 0.0))
            if run1 - run0 > busiest:
                busiest, wait = run1 - run0, wait1 - wait0
        steal = (s1[0] - self._steal0[0]) / max(1, s1[1] - self._steal0[1])
        self.result = {
            "wall_s": round(wall, 3),
            "busiest_cpu_frac": round(busiest / wall, 4),
            "wait_frac": round(wait / wall, 4),
            "steal_frac": round(steal, 4),
            "probe_slowdown": round(self._probe / self.best_probe_s[0], 4),
            "load1": os.getloadavg()[0],
        }
        reasons = [k for k, lim in LIMITS.items() if self.result[k] > lim]
        if cpu_share is not None:
            self.result["fwd_cpu_share"] = round(cpu_share, 4)
            if cpu_share < MIN_CPU_SHARE:
                reasons.append("fwd_cpu_share")
        self.result["disturbed"] = bool(reasons)
        self.result["reasons"] = reasons
        return self.result


# --------------------------------------------------------------------------- noise floor


def noise_floor(
    runs: dict[str, list[float]],
    configs: int | None = None,
    repeats: int | None = None,
    trials: int = 4000,
    seed: int = 0,
) -> dict[str, Any]:
    """The machine's noise floor from repeated runs of the same configs.

    Args:
        runs: per config, the throughput of each of its repeats.
        configs: configs to simulate the max over (default: as many as given).
        repeats: repeats per config whose median is scored (default: the typical count).

    Returns:
        ``log_sd`` (pooled per-run log standard deviation around each config's mean),
        ``runs`` pooled, and the largest |error| over ``configs`` medians one should expect
        with perfect predictions (``max_err_median_pct``, ``max_err_p90_pct``) and the
        median |error| (``median_err_pct``).
    """
    devs: list[float] = []
    counts = []
    for vals in runs.values():
        v = [x for x in vals if x > 0 and math.isfinite(x)]
        if len(v) < 2:
            continue
        x = np.log(np.array(v))
        devs += list((x - x.mean()) * np.sqrt(len(x) / (len(x) - 1)))
        counts.append(len(v))
    if len(devs) < 4:
        return {"log_sd": None, "runs": len(devs)}
    sd = float(np.std(devs))
    n_cfg = configs or len(runs)
    reps = repeats or int(np.median(counts))
    rng = np.random.default_rng(seed)
    sims = np.abs(np.expm1(np.median(rng.normal(0, sd, (trials, n_cfg, reps)), axis=2)))
    mx = sims.max(axis=1)
    return {
        "log_sd": round(sd, 4),
        "runs": len(devs),
        "configs": n_cfg,
        "repeats": reps,
        "max_err_median_pct": round(100 * float(np.median(mx)), 2),
        "max_err_p90_pct": round(100 * float(np.quantile(mx, 0.9)), 2),
        "median_err_pct": round(100 * float(np.median(np.median(sims, axis=1))), 2),
    }


def throughputs_by_config(rows: list[dict[str, Any]], prefix: str = "") -> dict[str, list[float]]:
    """Per config id (those starting with ``prefix``), the throughput of its live runs."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("kind") == "live" and r["id"].startswith(prefix):
            out[r["id"]].append(r["measured"]["throughput_tok_per_s"])
    return dict(out)
