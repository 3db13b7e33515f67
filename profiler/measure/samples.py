"""Samples of the latency profiler: the resumable partial file, the clocks, and the
statistics that turn visits into a point's latency.

A *visit* is one stop at a grid point in one pass: ``warmup`` untimed forwards, then
``inner`` timed ones; its sample is the fastest of them. Visits slower than
``stall_ratio`` x the point's fastest are stalls (another tenant had the CPU) and are left
out of the statistics. Units: milliseconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spectune.profiler.runtime.timing import Measurement
from spectune.simulator.errors import InputError
from spectune.simulator.schema import LatencyStats

if TYPE_CHECKING:
    from .grid import Point, ProfileSettings


def latency_stats(samples_ms: Iterable[float]) -> LatencyStats:
    """min / p50 / p90 / n of a point's samples."""
    arr = np.asarray(list(samples_ms), dtype=float)
    return LatencyStats(
        min=round(float(arr.min()), 4),
        p50=round(float(np.percentile(arr, 50)), 4),
        p90=round(float(np.percentile(arr, 90)), 4),
        n=int(arr.size),
    )


class PartialLog:
    """Append-only JSONL: a header line, then one ``{"b","q","c","r","ms": [...]}`` line per
    visit (point, pass) with its timed samples.

    The header identifies what was measured (model config, dtype, device); samples from a
    file with another header are never mixed in.
    """

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = header
        self.samples: dict[tuple[int, int, int, int], list[float]] = {}
        if path.exists():
            self._read()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"header": header}) + "\n")
        self._fh = path.open("a")
        if path.read_bytes()[-1:] != b"\n":  # a kill cut the last line: start a fresh one
            self._fh.write("\n")

    def _read(self) -> None:
        lines = self.path.read_text().splitlines()
        try:
            first = json.loads(lines[0])["header"] if lines else None
        except (json.JSONDecodeError, KeyError, TypeError):
            first = None
        if first != self.header:
            raise InputError(
                "holds samples of a different model, dtype or device; delete it or choose "
                "another --out",
                source=self.path,
            )
        for line in lines[1:]:
            try:
                d = json.loads(line)
                self.samples[(d["b"], d["q"], d["c"], d["r"])] = [float(x) for x in d["ms"]]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by an interruption

    def add(self, point: Point, rep: int, ms: list[float]) -> None:
        b, q, c = point
        self.samples[(b, q, c, rep)] = ms
        line = {"b": b, "q": q, "c": c, "r": rep, "ms": [round(x, 5) for x in ms]}
        self._fh.write(json.dumps(line) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class ThreadCpuTimer:
    """Times a block by the calling thread's CPU time (``time.thread_time``).

    With one torch thread the whole forward runs on the calling thread, so its CPU time is
    the forward's latency with the time the OS gave other processes left out: the figure
    an unshared core would show. On a heavily shared machine wall-clock samples of a
    forward longer than a scheduler time slice are all inflated, and no statistic of them
    recovers the device's latency; CPU time does (measured here: wall 3x CPU time at load
    ~7 on 2 cores, CPU time within ~10% run to run).
    """

    @contextmanager
    def measure(self) -> Iterator[Measurement]:
        result = Measurement()
        start = time.thread_time()
        yield result
        result.ms = (time.thread_time() - start) * 1e3


def visit_samples(
    samples: dict[tuple[int, int, int, int], list[float]], points: list[Point]
) -> dict[Point, list[float]]:
    """Per point, one sample per visit: the fastest of the visit's timed forwards."""
    wanted = set(points)
    out: dict[Point, list[float]] = {}
    for (b, q, c, _rep), ms in sorted(samples.items()):
        if (b, q, c) in wanted:
            out.setdefault((b, q, c), []).append(min(ms))
    return out


def clean_samples(values: list[float], stall_ratio: float) -> list[float]:
    """Drop stalled visits: samples above ``stall_ratio`` x the point's fastest.

    A forward's own run-to-run variation on an idle device is a few percent; a visit that
    took 1.5x the fastest one lost the CPU to another tenant.
    """
    floor = min(values)
    return [v for v in values if v <= stall_ratio * floor]


def settled(values: list[float], settings: ProfileSettings) -> bool:
    """Enough clean visits (a majority of ``repeats``) and a median known to within
    ``target_rse`` (relative standard error ~ 1.25 std / sqrt(n) / median)."""
    kept = clean_samples(values, settings.stall_ratio)
    if len(kept) < settings.repeats // 2 + 1:
        return False
    if len(kept) < 2:
        return True
    arr = np.asarray(kept)
    rse = 1.2533 * arr.std(ddof=1) / np.sqrt(arr.size) / np.median(arr)
    return bool(rse <= settings.target_rse)
