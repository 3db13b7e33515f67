"""Steady-state statistics of a run: departures vs arrivals, the waiting queue, the window's
latencies — on hand-built runs of a single FIFO server whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from spectune.simulator.engine import EngineResult
from spectune.simulator.schema import Slo
from spectune.tuner.steady import steady_state


def fifo_run(rate: float, service_s: float, n: int = 2000) -> EngineResult:
    """Arrivals every 1/rate s, served one at a time for service_s each (first token at
    the start of service, 11 output tokens)."""
    arrival = np.arange(n) / rate
    start = np.empty(n)
    free = 0.0
    for i, t in enumerate(arrival):
        start[i] = max(t, free)
        free = start[i] + service_s
    return EngineResult(
        arrival_s=arrival,
        first_token_s=start,
        finish_s=start + service_s,
        prompt_tokens=np.full(n, 10),
        output_tokens=np.full(n, 11),
        preemptions=np.zeros(n, dtype=int),
    )


def test_an_overloaded_server_falls_behind_and_its_queue_grows() -> None:
    st = steady_state(fifo_run(rate=10.0, service_s=1 / 8), Slo(tpot_s=1.0), 10.0)
    # departures run at the service rate: 8 of every 10 arrivals
    assert st.completion_ratio == pytest.approx(0.8, abs=0.01)
    assert st.queue_grows and st.waiting[1] > 1.5 * st.waiting[0]
    assert not st.keeps_up()
    # TPOT alone (0.0125 s per token) would call this sustainable
    assert st.metrics["tpot_s"]["p99"] == pytest.approx(1 / 8 / 10)


def test_a_server_with_headroom_keeps_up() -> None:
    st = steady_state(fifo_run(rate=10.0, service_s=1 / 12), Slo(ttft_s=0.1), 10.0)
    assert st.completion_ratio == pytest.approx(1.0, abs=0.01)
    assert st.waiting == (0.0, 0.0) and not st.queue_grows
    assert st.keeps_up()
    # every request in the window waits 0 s for its first token: attainment 1
    assert st.metrics["ttft_s"]["p99"] == 0.0 and st.metrics["slo_attainment"] == 1.0
    # the window is the arrivals after the first quarter of their span
    assert st.arrivals == pytest.approx(1500, abs=1)
    assert st.metrics["goodput_req_per_s"] == pytest.approx(10.0, rel=0.01)


def test_completion_is_judged_against_the_runs_own_arrivals() -> None:
    # The same run offered at a rate 5% above the one its arrivals came at: the server
    # keeps up with what arrived, and `simulate`'s offered-rate figure says 95%.
    st = steady_state(fifo_run(rate=10.0, service_s=1 / 12), Slo(), 10.5)
    assert st.run_completion == pytest.approx(1.0, abs=0.01)
    assert st.offered_completion == pytest.approx(10 / 10.5, abs=0.01)
    assert st.keeps_up()
