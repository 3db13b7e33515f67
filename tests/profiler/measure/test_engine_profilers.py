"""The engine profilers' arithmetic (no engine): acceptance from vLLM's per-step arrays,
the latency profiler's plan, workloads, step selection and host-time fits."""

from __future__ import annotations

import numpy as np
import pytest

from spectune.profiler.live import PromptSource
from spectune.profiler.measure.engine_acceptance import (
    acceptance_from_requests,
    conditional_rates,
    counters_agree,
)
from spectune.profiler.measure.engine_latency import (
    EngineGrid,
    Visit,
    VisitLog,
    fit_host,
    plan,
    point_samples,
    visit_samples,
    visit_workload,
)
from spectune.simulator.errors import InputError


def test_conditional_rates_by_hand():
    # 4 steps at k = 3: accepted 3, 0, 1, 2 (all drafted 3)
    acc = np.array([3, 0, 1, 2])
    dr = np.array([3, 3, 3, 3])
    # a_1 = 3/4; a_2 = #(>=2)/#(>=1) = 2/3; a_3 = #(>=3)/#(>=2) = 1/2
    assert conditional_rates(acc, dr, 3) == pytest.approx([0.75, 2 / 3, 0.5])
    # a short draft (2 of 3) that accepted both cannot reach position 3
    acc2 = np.array([2, 2])
    dr2 = np.array([2, 3])
    assert conditional_rates(acc2, dr2, 3) == pytest.approx([1.0, 1.0, 0.0])


def _req(acc, dr):
    return {"speculative_decoding": {"per_step_accepted": acc, "per_step_drafted": dr}}


def test_acceptance_from_requests_and_counters():
    reqs = [_req([3, 0, 1], [3, 3, 3]), _req([2], [3])]
    spec, counts = acceptance_from_requests(reqs, 3)
    assert counts.num_requests == 2 and counts.num_steps == 4
    assert counts.num_draft_tokens == 12 and counts.num_accepted_tokens == 6
    assert spec.per_request == pytest.approx([2 / 3, 1.0])
    assert spec.spread == pytest.approx(np.std([2 / 3, 1.0]), abs=1e-6)
    ok = {
        "vllm:spec_decode_num_drafts": 4.0,
        "vllm:spec_decode_num_draft_tokens": 12.0,
        "vllm:spec_decode_num_accepted_tokens": 6.0,
    }
    assert "agree" in counters_agree(ok, counts)
    assert "DIFFER" in counters_agree({**ok, "vllm:spec_decode_num_drafts": 5.0}, counts)
    with pytest.raises(InputError, match="per-step"):
        acceptance_from_requests([{"speculative_decoding": {}}], 3)


def test_plan_covers_the_grid_in_every_pass():
    g = EngineGrid(batches=(1, 4), widths=(1, 3), contexts=(64, 192), prefills=(16,))
    p = plan(g, passes=2, seed=0)
    assert len(p["plain"]) == 2 * (2 * 2 + 1)
    assert len(p["fixed"]) == 2 * (2 * 2)
    assert {v.query for v in p["fixed"]} == {3}
    assert [v.rep for v in p["fixed"]] == [0] * 4 + [1] * 4
    assert p["plain"][:5] != p["plain"][5:]  # each pass its own order (same visits)
    with pytest.raises(InputError):
        EngineGrid(contexts=(8,))


def test_visit_workloads_reach_their_context():
    g = EngineGrid(batches=(4,), widths=(1,), contexts=(64,), prefills=(32,))
    pool = PromptSource.random(256, 4000, 0)
    wl = visit_workload(Visit("plain", 4, 1, 64, 0), g, pool, 0)
    assert wl.mode == "offline" and wl.num_requests == 4
    assert wl.requests.prompt_tokens.tolist() == [64 - g.decode_tokens // 2] * 4
    assert wl.requests.output_tokens.tolist() == [g.decode_tokens] * 4
    pf = visit_workload(Visit("plain", 1, 32, 0, 0), g, pool, 0)
    assert pf.mode == "closed" and pf.requests.concurrency == 1
    assert pf.requests.prompt_tokens.tolist() == [32] * 3


def _steps(batch, query, prefills, prefill_tokens, verify, total, draft=None, ctx=None):
    n = len(batch)
    return {
        "batch": np.array(batch),
        "query": np.array(query),
        "prefills": np.array(prefills),
        "prefill_tokens": np.array(prefill_tokens),
        "verify_ms": np.array(verify, dtype=float),
        "total_ms": np.array(total, dtype=float),
        "draft_ms": np.array(draft or [0.0] * n, dtype=float),
        "context": np.array(ctx or [100.0] * n, dtype=float),
    }


def test_visit_samples_keep_only_the_points_steps():
    a = _steps(
        batch=[0, 4, 4, 3, 4],
        query=[0, 3, 3, 3, 2],
        prefills=[4, 0, 0, 0, 0],
        prefill_tokens=[200, 0, 0, 0, 0],
        verify=[9.0, 2.0, 2.2, 1.9, 1.8],
        total=[12.0, 3.0, 3.4, 2.9, 2.8],
    )
    s = visit_samples(Visit("fixed", 4, 3, 128, 0), a)
    assert s["fwd"] == [2.0, 2.2] and s["host"] == pytest.approx([1.0, 1.2])


def test_fit_host_separates_engine_and_speculative_time(tmp_path):
    log = VisitLog(tmp_path / "v.jsonl", {"m": 1, "grid": (1, 2)})
    for b in (1, 4, 16):
        log.add(
            Visit("plain", b, 1, 128, 0), {"fwd": [1.0] * 5, "host": [0.5 + 0.1 * b] * 5, "ctx": []}
        )
        for q in (2, 5):
            host = 0.5 + 0.1 * b + 0.2 + 0.01 * b * (q - 1)
            log.add(Visit("fixed", b, q, 128, 0), {"fwd": [1.0] * 5, "host": [host] * 5, "ctx": []})
    engine, spec = fit_host(log)
    assert engine.base_ms == pytest.approx(0.5) and engine.per_seq_ms == pytest.approx(0.1)
    assert spec is not None
    assert spec.at(8.0, 0.0, 3.0) == pytest.approx(0.2 + 0.01 * 8 * 3, abs=1e-6)
    # the log reads back, and visits with too few steps give no sample
    log.add(Visit("plain", 2, 1, 128, 0), {"fwd": [1.0], "host": [1.0], "ctx": []})
    again = VisitLog(tmp_path / "v.jsonl", {"m": 1, "grid": (1, 2)})  # tuples read back
    samples = point_samples(again)
    assert (2, 1, 128, 0) not in samples and samples[(4, 5, 128, 0)] == [1.0]
    with pytest.raises(InputError, match="another model"):
        VisitLog(tmp_path / "v.jsonl", {"m": 2})
