"""Where torch runs: the device a command asked for, its thread count, its folder name.

The CLI (tuner/, which never imports torch) calls these from its profiler commands.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import torch

from spectune.simulator.errors import InputError


def resolve_device(name: str | None) -> torch.device:
    """The torch device for ``--device`` (default: CUDA when present, else CPU).

    Raises:
        InputError: unknown device name, or CUDA asked for where there is none.
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}", field="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA is not available on this machine", field="--device")
    return dev


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None keeps torch's default); returns the count in force.

    Raises:
        InputError: threads < 1.
    """
    if threads is not None:
        if threads < 1:
            raise InputError(f"must be >= 1, got {threads}", field="--threads")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def slug(text: str) -> str:
    """``AMD EPYC 9R14 (2 threads)`` -> ``amd-epyc-9r14-2-threads``."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def device_slug(dev: torch.device, threads: int) -> str:
    """Folder name under hwprofiles/: ``cpu-<cpu model>-<N>t`` or ``<gpu name>``."""
    if dev.type == "cuda":
        return slug(torch.cuda.get_device_name(dev))
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1]
                break
    except OSError:
        pass
    return f"cpu-{slug(cpu)}-{threads}t"
