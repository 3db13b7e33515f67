"""Device-agnostic wall-clock timing of torch work, and a description of the device.

On CUDA, kernels run asynchronously: a block is timed with CUDA events recorded around it,
after a ``synchronize`` so earlier queued work is not billed to it. Elsewhere (CPU) the
block runs synchronously and ``time.perf_counter`` is exact enough; other accelerators
with a ``torch.<type>.synchronize`` (e.g. MPS) are synchronized before reading the clock.
All times are milliseconds.

Usage::

    timer = Timer(device)
    with timer.measure() as t:
        model(input_ids, cache)
    print(t.ms)
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from spectune.simulator.schema import DeviceInfo


@dataclass
class Measurement:
    """The duration of one measured block; ``ms`` is NaN until the block has finished."""

    ms: float = math.nan


class Timer:
    """Times blocks of torch work on one device.

    Args:
        device: the device the timed work runs on.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        module = getattr(torch, self.device.type, None)
        sync = getattr(module, "synchronize", None) if self.device.type != "cpu" else None
        self._sync: Callable[[], None] | None = sync

    def synchronize(self) -> None:
        """Wait for all queued work on the device (a no-op on CPU)."""
        if self._cuda:
            torch.cuda.synchronize(self.device)
        elif self._sync is not None:
            self._sync()

    @contextmanager
    def measure(self) -> Iterator[Measurement]:
        """Time the ``with`` block; the yielded Measurement's ``ms`` is set on exit.

        Yields:
            A Measurement filled in when the block exits normally.
        """
        result = Measurement()
        self.synchronize()
        if self._cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            yield result
            end.record()
            end.synchronize()
            result.ms = float(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            yield result
            self.synchronize()
            result.ms = (time.perf_counter() - t0) * 1e3

    def repeat(self, fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
        """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

        Args:
            fn: the work (e.g. one forward pass).
            repeats: timed runs, >= 1.
            warmup: untimed runs first (allocator, caches, kernel selection).
        Returns:
            The ``repeats`` durations in ms, in run order (take a median or minimum: the
            machine is noisy).
        """
        if repeats < 1 or warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            with self.measure() as t:
                fn()
            times.append(t.ms)
        return times


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def device_info(device: str | torch.device, dtype: torch.dtype | str) -> DeviceInfo:
    """Describe the device a profile is measured on.

    Args:
        device: the torch device.
        dtype: the weight dtype of the measured model.
    Returns:
        DeviceInfo with name (GPU name or CPU model from /proc/cpuinfo), kind, dtype,
        memory in GiB, and software details: torch and python versions, torch threads,
        logical CPUs, platform, and CUDA version when on a GPU.
    """
    dev = torch.device(device)
    dtype_name = str(dtype).removeprefix("torch.")
    software = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": str(torch.get_num_threads()),
        "cpu_count": str(os.cpu_count()),
        "platform": platform.platform(),
        "cpu": cpu_name(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        software["cuda"] = str(torch.version.cuda)
        return DeviceInfo(
            name=props.name,
            kind="gpu",
            dtype=dtype_name,
            memory_gib=props.total_memory / 2**30,
            software=software,
        )
    if dev.type == "cpu":
        return DeviceInfo(
            name=cpu_name(),
            kind="cpu",
            dtype=dtype_name,
            memory_gib=_mem_total_gib(),
            software=software,
        )
    return DeviceInfo(
        name=dev.type,
        kind="gpu" if dev.type == "mps" else "other",
        dtype=dtype_name,
        software=software,
    )
