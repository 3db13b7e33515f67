"""Metrics from a hand-built engine result: definitions of TTFT/TPOT/E2E, goodput, SD counters."""

from __future__ import annotations

import numpy as np
import pytest

from spectune.simulator.engine import EngineResult
from spectune.simulator.metrics import compute_metrics, summary
from spectune.simulator.schema import Slo


def result() -> EngineResult:
    return EngineResult(
        arrival_s=np.array([0.0, 1.0, 2.0]),
        first_token_s=np.array([0.5, 1.2, 2.1]),
        finish_s=np.array([1.5, 1.2, 4.1]),
        prompt_tokens=np.array([100, 50, 10]),
        output_tokens=np.array([11, 1, 21]),
        preemptions=np.zeros(3, dtype=int),
        iterations=4,
        arrivals=3,
        decode_steps=10,
        drawn_tokens=25,
        decode_tokens=24,
        nodes=4,
        depth=4,
        batch_hist=[0, 3, 1],
        busy_s=2.05,
        end_s=4.1,
        kv_peak_tokens=300,
        kv_cache_tokens=1000,
        num_preemptions=2,
    )


def test_latency_definitions() -> None:
    m = compute_metrics(result(), Slo())
    assert m["duration_s"] == pytest.approx(4.1)
    assert m["ttft_s"]["mean"] == pytest.approx((0.5 + 0.2 + 0.1) / 3)
    assert m["e2e_s"]["p50"] == pytest.approx(1.5)
    # TPOT = (E2E - TTFT) / (out - 1), only for outputs > 1: (1.0 / 10, 2.0 / 20).
    assert m["tpot_s"]["p50"] == pytest.approx(0.1) and m["tpot_s"]["p99"] == pytest.approx(0.1)
    assert m["throughput_tok_per_s"] == pytest.approx(33 / 4.1)
    assert m["requests_per_s"] == pytest.approx(3 / 4.1)


def test_goodput_counts_requests_meeting_every_slo() -> None:
    m = compute_metrics(result(), Slo(ttft_s=0.3, tpot_s=0.1))
    # Request 0 misses TTFT; request 1 (one token) meets any TPOT; request 2 meets both.
    assert m["goodput_req_per_s"] == pytest.approx(2 / 4.1)
    assert m["slo_attainment"] == pytest.approx(2 / 3)
    assert m["slo"] == {"ttft_s": 0.3, "tpot_s": 0.1}
    assert compute_metrics(result(), Slo())["goodput_req_per_s"] == pytest.approx(3 / 4.1)
    strict = compute_metrics(result(), Slo(e2e_s=0.25))
    assert strict["goodput_req_per_s"] == pytest.approx(1 / 4.1)


def test_speculative_counters_and_engine_figures() -> None:
    m = compute_metrics(result(), Slo())
    assert m["mean_accepted_len"] == pytest.approx(2.5)  # 1 + 15 accepted / 10 steps
    assert m["mean_tokens_per_step"] == pytest.approx(2.4)
    assert m["acceptance_rate"] == pytest.approx(15 / 40)
    assert m["batch_size_hist"] == {1: 3, 2: 1}
    assert m["mean_batch_size"] == pytest.approx(1.25)
    assert m["utilization"] == pytest.approx(0.5)
    assert (m["preemptions"], m["kv_peak_tokens"], m["des_events"]) == (2, 300, 7)


def test_plain_decoding_has_no_acceptance_rate() -> None:
    r = result()
    r.nodes = 0
    r.drawn_tokens = r.decode_tokens = r.decode_steps
    m = compute_metrics(r, Slo())
    assert m["acceptance_rate"] is None and m["mean_accepted_len"] == 1.0


def test_summary_of_nothing_is_none() -> None:
    assert summary(np.zeros(0)) == {"p50": None, "p90": None, "p99": None, "mean": None}
    s = summary(np.arange(101.0))
    assert (s["p50"], s["p90"], s["p99"], s["mean"]) == (50.0, 90.0, 99.0, 50.0)
