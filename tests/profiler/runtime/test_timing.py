"""Timer and device_info on the CPU (CUDA paths are exercised only where CUDA exists)."""

from __future__ import annotations

import math
import time

import pytest

torch = pytest.importorskip("torch")

from spectune.profiler.runtime.timing import Timer, device_info  # noqa: E402
from spectune.simulator.schema import DeviceInfo  # noqa: E402


def test_measure_times_the_block_in_ms():
    timer = Timer("cpu")
    with timer.measure() as t:
        assert math.isnan(t.ms)  # not filled in before the block ends
        time.sleep(0.02)
    assert 19.0 <= t.ms < 500.0


def test_measure_leaves_nan_when_block_raises():
    timer = Timer("cpu")
    with pytest.raises(RuntimeError), timer.measure() as t:
        raise RuntimeError("boom")
    assert math.isnan(t.ms)


def test_repeat_runs_warmup_untimed_then_repeats():
    calls = []
    times = Timer("cpu").repeat(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7
    assert len(times) == 5 and all(t >= 0 for t in times)
    with pytest.raises(ValueError):
        Timer("cpu").repeat(lambda: None, repeats=0)


def test_device_info_cpu():
    info = device_info("cpu", torch.bfloat16)
    assert isinstance(info, DeviceInfo)
    assert info.kind == "cpu" and info.dtype == "bfloat16"
    assert info.name
    assert info.software["torch"] == torch.__version__
    assert int(info.software["torch_threads"]) == torch.get_num_threads()
    assert info.memory_gib is None or info.memory_gib > 0
