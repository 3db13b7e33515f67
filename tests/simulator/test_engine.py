"""The discrete-event engine: exact-time scenarios, invariants, closed form vs DES.

Exact-time tests price every forward with ``ConstantLatency`` and compare the engine's
``(event, time, request | batch)`` log with a hand-computed list.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simkit import (
    DRAFT_SMALL,
    TARGET_SMALL,
    drafter_acceptance,
    make_rs,
    planned_and_stepped,
    random_changes,
    stable,
    write_profiles,
)

from spectune.simulator import api, engine
from spectune.simulator.acceptance import draw_request_steps
from spectune.simulator.analytic import expected_tokens_chain, expected_tokens_tree, speedup
from spectune.simulator.errors import InputError
from spectune.simulator.latency import ConstantLatency
from spectune.simulator.scheduler import Scheduler
from spectune.simulator.stepcost import StepCost
from spectune.simulator.tree import Tree
from spectune.simulator.workload import RequestSet


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_profiles(tmp_path_factory.mktemp("profiles"))


def run_log(folder: Path, changes: dict[str, Any], target: Any, draft: Any = None):
    rs = make_rs(folder, changes)
    res = api.simulate(rs, target_latency=target, draft_latency=draft, log=True)
    return res, res.engine.log


def assert_log(got: list, want: list) -> None:
    assert [(e, r) for e, _, r in got] == [(e, r) for e, _, r in want]
    assert [t for _, t, _ in got] == pytest.approx([t for _, t, _ in want], abs=1e-12)


# ---------------------------------------------------------------------------- exact time


def test_two_requests_plain_decoding_exact_times(folder: Path) -> None:
    # forward = 10 ms + 1 ms per token. Both prompts (10 tokens) prefill in one fused
    # iteration: 20 ms for the first chunk + 9 ms marginal for the second = 29 ms. Then
    # decode steps of batch 2: 10 + 2 = 12 ms each; outputs of 3 tokens need 2 steps.
    _, log = run_log(folder, {}, ConstantLatency(10.0, 1.0))
    assert_log(
        log,
        [
            ("arrive", 0.0, 0),
            ("arrive", 0.0, 1),
            ("admit", 0.0, 0),
            ("admit", 0.0, 1),
            ("iteration", 0.029, 2),
            ("first_token", 0.029, 0),
            ("first_token", 0.029, 1),
            ("iteration", 0.041, 2),
            ("iteration", 0.053, 2),
            ("finish", 0.053, 0),
            ("finish", 0.053, 1),
        ],
    )


@pytest.mark.parametrize(
    ("acceptance", "step_ends"),
    [
        (1.0, [0.033, 0.046]),  # 1 -> 4 -> 7 tokens: k + 1 = 3 per step
        (0.0, [0.033, 0.046, 0.059, 0.072, 0.085, 0.098]),  # 1 token per step
    ],
)
def test_acceptance_one_and_zero_exact_times(
    folder: Path, acceptance: float, step_ends: list[float]
) -> None:
    # One request, prompt 10, output 7, ngram k=2 at no draft cost. Prefill 10 + 10 = 20 ms;
    # verify of 3 tokens at batch 1: 10 + 3 = 13 ms.
    changes = {
        "workload": {"num_requests": 1, "output_tokens": {"dist": "constant", "value": 7}},
        "spec": {"drafter": "ngram", "num_spec_tokens": 2},
        **drafter_acceptance("ngram", [acceptance]),
    }
    res, log = run_log(folder, changes, ConstantLatency(10.0, 1.0))
    want = [("arrive", 0.0, 0), ("admit", 0.0, 0), ("iteration", 0.020, 1)]
    want.append(("first_token", 0.020, 0))
    want += [("iteration", t, 1) for t in step_ends]
    want.append(("finish", step_ends[-1], 0))
    assert_log(log, want)
    assert res.metrics["mean_accepted_len"] == pytest.approx(1.0 + 2 * acceptance)


def test_draft_model_costs_and_overhead_exact_times(folder: Path) -> None:
    # Drafter forward = 1 + 0.5 ms/token. Prefill: target 20 + drafter 1 + 5 + overhead
    # 0.5 = 26.5 ms. Step (k=2): 2 draft passes of 1.5 + verify 13 + 0.5 = 16.5 ms.
    changes = {
        "workload": {"num_requests": 1, "output_tokens": {"dist": "constant", "value": 7}},
        "serving": {"step_overhead_ms": 0.5},
        "spec": {"drafter": "small", "num_spec_tokens": 2},
    }
    _, log = run_log(folder, changes, ConstantLatency(10.0, 1.0), ConstantLatency(1.0, 0.5))
    assert [t for e, t, _ in log if e == "iteration"] == pytest.approx([0.0265, 0.043, 0.0595])


def test_tree_draft_passes_per_level_exact_times(folder: Path) -> None:
    # Tree [[0], [1], [0, 0]]: draft passes of 1 then 2 query tokens (1.5 + 2 ms), verify
    # 3 nodes + 1 (10 + 4 ms). ranked [1.0]: the rank-0 path is always accepted (depth 2).
    changes = {
        "workload": {"num_requests": 1, "output_tokens": {"dist": "constant", "value": 7}},
        "spec": {"drafter": "small", "tree": {"paths": [[0], [1], [0, 0]]}},
    }
    res, log = run_log(folder, changes, ConstantLatency(10.0, 1.0), ConstantLatency(1.0, 0.5))
    assert [t for e, t, _ in log if e == "iteration"] == pytest.approx([0.026, 0.0435, 0.061])
    assert res.metrics["mean_accepted_len"] == pytest.approx(3.0)
    assert res.metrics["acceptance_rate"] == pytest.approx(2 / 3)


def test_self_drafter_costs_fraction_of_target(folder: Path) -> None:
    # self_layers 8 of the target's 32: each draft pass costs 1/4 of a target decode pass
    # (10 + 1 = 11 ms -> 2.75 ms); k = 2 -> 5.5 ms + verify 13 ms.
    changes = {
        "workload": {"num_requests": 1, "output_tokens": {"dist": "constant", "value": 4}},
        "spec": {"drafter": "skip", "num_spec_tokens": 2},
    }
    _, log = run_log(folder, changes, ConstantLatency(10.0, 1.0))
    assert [t for e, t, _ in log if e == "iteration"] == pytest.approx([0.020, 0.0385])


def test_recompute_preemption_exact_times(folder: Path) -> None:
    # KV holds 25 tokens; two requests of prompt 10, output 10 (each needs 20 alone).
    # Both are admitted (10 + 1 free each); after the prefill (gen 1) and two decode
    # steps they hold 13 + 13 > 25, so the latest admitted (1) is evicted at 30 ms and
    # re-prefills 13 tokens after 0 finishes; that prefill emits its 4th token.
    changes = {
        "workload": {"output_tokens": {"dist": "constant", "value": 10}},
        "serving": {"kv_cache_tokens": 25, "preemption": "recompute"},
    }
    res, log = run_log(folder, changes, ConstantLatency(10.0, 0.0))
    want = [
        ("arrive", 0.0, 0),
        ("arrive", 0.0, 1),
        ("admit", 0.0, 0),
        ("admit", 0.0, 1),
        ("iteration", 0.010, 2),
        ("first_token", 0.010, 0),
        ("first_token", 0.010, 1),
        ("iteration", 0.020, 2),
        ("iteration", 0.030, 2),
        ("preempt", 0.030, 1),
    ]
    want += [("iteration", 0.030 + 0.010 * i, 1) for i in range(1, 8)]
    want += [("finish", 0.100, 0), ("admit", 0.100, 1), ("iteration", 0.110, 1)]
    want += [("iteration", 0.110 + 0.010 * i, 1) for i in range(1, 7)]
    want.append(("finish", 0.170, 1))
    assert_log(log, want)
    m = res.metrics
    assert m["preemptions"] == 1
    assert m["kv_peak_tokens"] <= 25
    assert res.engine.preemptions.tolist() == [0, 1]


def test_queue_policy_waits_instead_of_preempting(folder: Path) -> None:
    changes = {
        "workload": {"output_tokens": {"dist": "constant", "value": 10}},
        "serving": {"kv_cache_tokens": 25, "preemption": "queue"},
    }
    res, log = run_log(folder, changes, ConstantLatency(10.0, 0.0))
    events = [(e, round(t, 6), r) for e, t, r in log if e != "iteration"]
    assert events == [
        ("arrive", 0.0, 0),
        ("arrive", 0.0, 1),
        ("admit", 0.0, 0),
        ("first_token", 0.01, 0),
        ("finish", 0.1, 0),
        ("admit", 0.1, 1),
        ("first_token", 0.11, 1),
        ("finish", 0.2, 1),
    ]
    assert res.metrics["preemptions"] == 0


def test_chunked_prefill_respects_token_budget(folder: Path) -> None:
    # Budget 8 tokens per iteration: a 20-token prompt takes chunks 8, 8, 4 (costs
    # 10 + 8, 10 + 8, 10 + 4 ms); its first token comes with the last chunk.
    changes = {
        "workload": {"num_requests": 1, "prompt_tokens": {"dist": "constant", "value": 20}},
        "serving": {"max_batched_tokens": 8},
    }
    _, log = run_log(folder, changes, ConstantLatency(10.0, 1.0))
    iters = [t for e, t, _ in log if e == "iteration"]
    assert iters[:3] == pytest.approx([0.018, 0.036, 0.050])
    assert [t for e, t, _ in log if e == "first_token"] == pytest.approx([0.050])


def test_open_loop_arrival_joins_at_next_iteration_boundary() -> None:
    # Request 0 decodes in 10 ms iterations; request 1 arrives at 25 ms, mid-iteration,
    # and is admitted at the 30 ms boundary (event skipping must not run past it).
    out = np.array([20, 20])
    req = RequestSet(np.array([10, 10]), out, np.array([0.0, 0.025]), mode="open")
    cum, off, _ = draw_request_steps(None, out, *np.random.default_rng(0).spawn(2))
    sched = Scheduler(
        req.prompt_tokens,
        out,
        cum,
        off,
        nodes=0,
        max_num_seqs=8,
        max_batched_tokens=1000,
        kv_cache_tokens=10000,
        policy="recompute",
    )
    log = engine.Engine(req, sched, StepCost(ConstantLatency(10.0, 0.0)), log=True).run().log
    assert log is not None
    assert [(e, round(t, 9)) for e, t, r in log if r == 1 and e != "iteration"][:2] == [
        ("arrive", 0.025),
        ("admit", 0.03),
    ]
    # Request 0's iterations before the admission ran one by one up to 30 ms.
    assert [round(t, 9) for e, t, _ in log if e == "iteration"][:3] == [0.01, 0.02, 0.03]


def test_closed_loop_clients_send_on_finish(folder: Path) -> None:
    # 1 client, 3 requests: each arrives when the previous one finishes.
    changes = {"workload": {"mode": "closed", "concurrency": 1, "num_requests": 3}}
    res, _ = run_log(folder, changes, ConstantLatency(10.0, 0.0))
    e = res.engine
    assert e.arrival_s.tolist() == pytest.approx([0.0, 0.03, 0.06])
    assert e.finish_s.tolist() == pytest.approx([0.03, 0.06, 0.09])
    assert res.metrics["batch_size_hist"] == {1: 9}


def test_request_larger_than_kv_cache_is_an_input_error(folder: Path) -> None:
    rs = make_rs(folder, {"serving": {"kv_cache_tokens": 12}})
    with pytest.raises(InputError, match=r"serving.kv_cache_tokens.*needs 13 KV tokens"):
        api.simulate(rs, target_latency=ConstantLatency(1.0))


# ---------------------------------------------------------------------------- invariants


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_invariants(folder: Path, data: st.DataObject, monkeypatch: pytest.MonkeyPatch) -> None:
    changes = random_changes(data.draw)
    rs = make_rs(folder, changes)
    a, b = planned_and_stepped(rs, monkeypatch)  # decisions at every iteration == runs
    target, draft = TARGET_SMALL, DRAFT_SMALL
    e, m = a.engine, a.metrics
    n = m["num_requests"]
    # Every request finished, exactly at its output length, after arriving and its TTFT.
    assert np.all(np.isfinite(e.finish_s))
    assert np.all(e.arrival_s <= e.first_token_s) and np.all(e.first_token_s <= e.finish_s)
    # Tokens conserved: each request emitted exactly its output length; decode tokens plus
    # one token per completed prefill add up to all outputs.
    assert e.generated is not None
    np.testing.assert_array_equal(e.generated, e.output_tokens)
    assert e.decode_tokens + e.prefill_tokens == m["output_tokens"]
    assert n <= e.prefill_tokens <= n + m["preemptions"]
    assert m["kv_peak_tokens"] <= rs.kv_cache_tokens
    assert max(m["batch_size_hist"]) <= rs.scenario.serving.max_num_seqs
    assert 0.0 < m["utilization"] <= 1.0 + 1e-12
    # Event skipping is exact.
    for key in ("iterations", "decode_steps", "preemptions", "kv_peak_tokens", "batch_size_hist"):
        assert m[key] == b.metrics[key], key
    np.testing.assert_allclose(e.finish_s, b.engine.finish_s, rtol=1e-12, atol=1e-12)
    # Deterministic for a seed.
    c = api.simulate(rs, target_latency=target, draft_latency=draft)
    assert stable(c.metrics) == stable(m)


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(1, 5),
    n=st.integers(1, 6),
    seed=st.integers(0, 20),
    drafter=st.sampled_from(["small", "ngram"]),
)
def test_acceptance_one_gives_k_plus_one_tokens_per_step(
    folder: Path, k: int, n: int, seed: int, drafter: str
) -> None:
    changes = {
        "workload": {"num_requests": n, "output_tokens": {"dist": "uniform", "low": 1, "high": 40}},
        "spec": {"drafter": drafter, "num_spec_tokens": k},
        "serving": {"max_num_seqs": 2},
        "seed": seed,
    }
    res = api.simulate(make_rs(folder, changes), target_latency=ConstantLatency(1.0))
    outs = res.engine.output_tokens
    # Every step emits k + 1 tokens until the last, which is cut at the output length.
    steps = sum(math.ceil((int(o) - 1) / (k + 1)) for o in outs)
    assert res.metrics["decode_steps"] == steps
    if steps:
        assert res.metrics["mean_accepted_len"] == pytest.approx(k + 1)
        assert res.metrics["mean_tokens_per_step"] <= k + 1


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 50), mode=st.sampled_from(["offline", "closed"]))
def test_k0_identical_to_drafter_none(folder: Path, seed: int, mode: str) -> None:
    base = {
        "workload": {
            "mode": mode,
            "concurrency": 2,
            "num_requests": 8,
            "output_tokens": {"dist": "uniform", "low": 1, "high": 30},
        },
        "serving": {"kv_cache_tokens": "auto", "max_num_seqs": 3},
        "seed": seed,
    }
    none = api.simulate(make_rs(folder, {**base, "spec": {"drafter": "none"}}))
    k0 = api.simulate(make_rs(folder, {**base, "spec": {"drafter": "small", "num_spec_tokens": 0}}))
    assert stable(none.metrics) == stable(k0.metrics)


# ---------------------------------------------------------------------------- closed form


def _batch1(folder: Path, spec: dict[str, Any], acc: dict[str, Any]) -> dict[str, Any]:
    changes = {
        "workload": {
            "mode": "closed",
            "concurrency": 1,
            "num_requests": 80,
            "prompt_tokens": {"dist": "constant", "value": 1},
            "output_tokens": {"dist": "constant", "value": 1500},
        },
        "spec": spec,
        **drafter_acceptance("ngram", **acc),
    }
    changes["drafters"][1]["draft_ms_per_token"] = 0.2
    rs = make_rs(folder, changes)
    return api.simulate(rs, target_latency=ConstantLatency(6.0, 0.1)).metrics


def test_closed_form_matches_des_at_batch_1(folder: Path) -> None:
    per = [0.9, 0.8, 0.7, 0.6]
    acc = {"per_position": per, "ranked": [0.8, 0.4, 0.2]}
    plain = _batch1(folder, {"drafter": "none"}, acc)
    chain = _batch1(folder, {"drafter": "ngram", "num_spec_tokens": 4}, acc)
    e = expected_tokens_chain(per, 4)
    assert chain["mean_accepted_len"] == pytest.approx(e, rel=0.01)
    # Step cost: 4 drafts x 0.2 ms + verify of 5 tokens (6.5 ms) vs a 6.1 ms decode step.
    predicted = speedup(e, (4 * 0.2 + 6.5) / 6.1)
    measured = chain["throughput_tok_per_s"] / plain["throughput_tok_per_s"]
    assert measured == pytest.approx(predicted, rel=0.01)

    paths = [[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0]]
    tree = _batch1(folder, {"drafter": "ngram", "tree": {"paths": paths}}, acc)
    assert tree["mean_accepted_len"] == pytest.approx(
        expected_tokens_tree(Tree.from_paths(paths), acc["ranked"]), rel=0.01
    )


# ---------------------------------------------------------------------------- golden

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_CASES = {
    # conftest's scenario as shipped: Poisson arrivals, draft model k=3, profiles on a grid.
    "small_draft_model": [],
    # Heavier: bursts into a small KV cache (preemptions), an optimal tree, spread.
    "stressed_tree": [
        "workload.num_requests=60",
        "workload.arrival={process: gamma, rate_per_s: 20, cv: 2}",
        "serving.kv_cache_tokens=600",
        "serving.max_num_seqs=6",
        "serving.step_overhead_ms=0.3",
        "spec.tree={budget: 6, depth: 3}",
        "drafters.0.acceptance={per_position: [0.8, 0.7], ranked: [0.8, 0.3], spread: 0.2}",
        "spec.drafter=small",
    ],
}


def _golden_view(m: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(stable(m)))


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_results(scenario_dir: Path, case: str) -> None:
    """Metrics of fixed scenarios equal the stored values. Regenerate deliberately with
    SPECTUNE_REGEN_GOLDEN=1 after a change that is meant to move them."""
    import json
    import os

    from spectune.simulator import load_scenario

    rs = load_scenario(scenario_dir / "scenario.yaml", GOLDEN_CASES[case])
    got = _golden_view(api.simulate(rs).metrics)
    path = GOLDEN / f"{case}.json"
    if os.environ.get("SPECTUNE_REGEN_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    want = json.loads(path.read_text())
    _assert_close(got, want, case)


def _assert_close(got: Any, want: Any, where: str) -> None:
    """Equal structure and values; floats to 1e-9 relative (platform rounding)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for k in want:
            _assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


def test_padded_attention_prices_the_longest_context(folder: Path) -> None:
    # decode step = 10 + 1 * B + 0.1 * B * ctx ms; with attention_context max the B
    # sequences are priced at the longest context instead of their mean, so each of the
    # two decode steps costs 0.1 * (p_max - p_min) ms more for two requests.
    lat = ConstantLatency(10.0, 1.0, per_context_token_ms=0.1)
    ragged = {"workload": {"prompt_tokens": {"dist": "uniform", "low": 10, "high": 40}}, "seed": 1}
    mean_res, _ = run_log(folder, ragged, lat)
    padded = {**ragged, "serving": {"attention_context": "max"}}
    max_res, _ = run_log(folder, padded, lat)
    p = mean_res.engine.prompt_tokens
    assert p.max() > p.min()
    extra_s = 2 * 0.1 * float(p.max() - p.min()) / 1000.0
    assert max_res.engine.finish_s.max() - mean_res.engine.finish_s.max() == pytest.approx(
        extra_s, abs=1e-12
    )
    # equal prompts: the longest context is the mean
    same = run_log(folder, {"serving": {"attention_context": "max"}}, lat)[0]
    assert same.engine.finish_s.max() == pytest.approx(
        run_log(folder, {}, lat)[0].engine.finish_s.max(), abs=1e-12
    )
