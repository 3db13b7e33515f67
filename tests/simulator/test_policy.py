"""Speculation policies in the DES: exact k sequences, draws at any k, invariants.

Exact-time tests price forwards with ``ConstantLatency(10, 1)`` (10 ms + 1 ms per query
token) and an n-gram drafter at no draft cost, so a decode iteration of B sequences at k
costs 10 + B(k + 1) ms; acceptance 1.0 accepts every draft (k + 1 tokens per step) and
0.0 none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
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
from spectune.simulator.acceptance import AcceptanceModel, draw_steps
from spectune.simulator.errors import InputError
from spectune.simulator.latency import ConstantLatency
from spectune.simulator.policy import draws_at
from spectune.simulator.policy_adaptive import EmaSlot
from spectune.simulator.policy_rules import BatchSchedule, trtllm_bands
from spectune.simulator.schema import AcceptanceSpec

TARGET = ConstantLatency(10.0, 1.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_profiles(tmp_path_factory.mktemp("profiles"))


def run(folder: Path, changes: dict[str, Any]):
    res = api.simulate(make_rs(folder, changes), target_latency=TARGET, log=True)
    return res, res.engine.log


def one_request(out: int, acc: float, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "workload": {"num_requests": 1, "output_tokens": {"dist": "constant", "value": out}},
        "spec": {"drafter": "ngram", **spec},
        **drafter_acceptance("ngram", [acc]),
    }


def ks_per_iteration(log: list, k0: int) -> list[int]:
    """The k each iteration ran at (from the log's ``k`` switches; ``k0`` before any)."""
    k, out = k0, []
    for event, _, v in log:
        if event == "k":
            k = v
        elif event == "iteration":
            out.append(k)
    return out


# ---------------------------------------------------------------------------- exact k


def test_vllm_schedule_follows_the_last_iterations_batch_exact_times(folder: Path) -> None:
    # Three requests (outputs 3, 7, 20), bands 1 -> k 3, 2 -> 2, 3+ -> 1. Iteration 1
    # prefills all three (20 + 9 + 9 = 38 ms). vLLM picks the k verified next from the
    # count it just scheduled: iteration 2 runs at k(3) = 1 (B=3: 10 + 6 = 16 ms; r0 done
    # at 3 tokens), 3 at k(3) = 1 (B=2: 14 ms), 4 at k(2) = 2 (B=2: 16 ms; r1 done at 7),
    # 5 at k(2) = 2 (B=1: 13 ms), then k(1) = 3: 14 ms each, 11 -> 15 -> 19 -> 20.
    changes = {
        "workload": {
            "num_requests": 3,
            "output_tokens": {"dist": "constant", "value": 20},
        },
        "spec": {
            "drafter": "ngram",
            "num_spec_tokens": 3,
            "policy": {"kind": "batch_schedule", "bands": [[1, 1, 3], [2, 2, 2], [3, 8, 1]]},
        },
        **drafter_acceptance("ngram", [1.0]),
    }
    rs = make_rs(folder, changes)
    outs = np.array([3, 7, 20])
    res = _simulate_outputs(rs, outs)
    log = res.engine.log
    assert ks_per_iteration(log, 3)[1:] == [1, 1, 2, 2, 3, 3, 3]
    ends = [t for e, t, _ in log if e == "iteration"]
    assert ends == pytest.approx([0.038, 0.054, 0.068, 0.084, 0.097, 0.111, 0.125, 0.139])
    assert res.engine.finish_s.tolist() == pytest.approx([0.054, 0.084, 0.139])
    assert res.metrics["speculation_k"]["iterations_by_k"] == {1: 2, 2: 2, 3: 4}


def _simulate_outputs(rs: Any, outs: np.ndarray) -> Any:
    """Simulate ``rs`` with these output lengths (one request each, offline)."""
    from spectune.simulator import workload

    real = workload.build_requests

    def build(*a: Any, **k: Any) -> Any:
        req = real(*a, **k)
        req.output_tokens[:] = outs
        return req

    mp = pytest.MonkeyPatch()
    mp.setattr(api, "build_requests", build)
    try:
        return api.simulate(rs, target_latency=TARGET, log=True)
    finally:
        mp.undo()


def test_sglang_ema_tiers_step_up_after_warmup_with_hysteresis(folder: Path) -> None:
    # SGLang's default slot for batch 1: candidates [1, 3, 5, 7], start at
    # num_spec_tokens = 3 with the EMA at 2, alpha 0.2, warm-up 10, interval 5. Every
    # draft accepted: the EMA after 15 steps is 3 - 0.8^15 = 2.965 > 3 - 0.5 -> 5 (not
    # past 5 - 0.5); after 5 more, 5 - 2.035 * 0.8^5 = 4.333 <= 4.5 -> stays; after 5
    # more, 4.78 > 4.5 -> 7. Output 1 + 15*4 + 10*6 + 10*8 = 201 tokens.
    res, log = run(
        folder,
        one_request(201, 1.0, {"num_spec_tokens": 3, "policy": {"kind": "sglang_adaptive"}}),
    )
    assert ks_per_iteration(log, 7)[1:] == [3] * 15 + [5] * 10 + [7] * 10
    assert res.metrics["speculation_k"]["iterations_by_k"] == {3: 16, 5: 10, 7: 10}
    # The same rule, stepped by hand on the slot object.
    slot = EmaSlot(3, {"candidate_steps": [1, 3, 5, 7]})
    seq = []
    for _ in range(35):
        seq.append(slot.steps)
        slot.update(float(slot.steps))
    assert seq == [3] * 15 + [5] * 10 + [7] * 10


def test_sglang_zero_step_slot_probes_up_and_steps_back_down() -> None:
    # Slot [0, 1, 3] (SGLang's batch-8 default, down hysteresis 0) starting at 1, nothing
    # accepted: EMA 0 -> 0 <= 0.5 at the first decision (step 15) -> 0; at 0 the EMA is
    # frozen and the next decision (step 20) probes 1; nothing accepted again -> back to 0.
    slot = EmaSlot(1, {"candidate_steps": [0, 1, 3], "down_hysteresis": 0.0})
    seq = []
    for _ in range(30):
        seq.append(slot.steps)
        slot.update(0.0)
    assert seq == [1] * 15 + [0] * 5 + [1] * 5 + [0] * 5


def test_trtllm_gate_turns_speculation_off_for_good(folder: Path) -> None:
    # Nothing accepted: each drafting iteration adds rate 0 to a window of 4; once full
    # (4 iterations at k = 2) its mean 0 < 0.5 latches speculation off.
    policy = {
        "kind": "trtllm_dynamic",
        "acceptance_rate_window_size": 4,
        "acceptance_rate_threshold": 0.5,
    }
    _, log = run(folder, one_request(12, 0.0, {"num_spec_tokens": 2, "policy": policy}))
    assert ks_per_iteration(log, 2)[1:] == [2] * 4 + [0] * 7
    # Iterations: prefill 20 ms, 4 x (10 + 3), then 7 plain steps of 11 ms.
    ends = [t for e, t, _ in log if e == "iteration"]
    want = [0.020 + 0.013 * i for i in range(5)] + [0.072 + 0.011 * i for i in range(1, 8)]
    assert ends == pytest.approx(want)


def test_trtllm_schedule_keys_cover_batch_sizes_up_to_them() -> None:
    assert trtllm_bands(4, {4: 4, 8: 2, 32: 1}, None) == [
        (1, 4, 4),
        (5, 8, 2),
        (9, 32, 1),
        (33, 33, 0),
    ]
    assert trtllm_bands(3, None, 6) == [(1, 6, 3), (7, 7, 0)]
    sched = BatchSchedule(4, trtllm_bands(4, {4: 4, 8: 2, 32: 1}, None), 64)
    assert [sched.decide(b) for b in (1, 4, 5, 8, 9, 32, 33, 64)] == [4, 4, 2, 2, 1, 1, 0, 0]


def test_vllm_schedule_gaps_and_tail_follow_vllm() -> None:
    # vLLM 0.32's lookup: a gap takes the previous range's k, the tail the last k, all
    # capped at num_speculative_tokens (here 3).
    sched = BatchSchedule(3, [(1, 16, 5), (32, 128, 2)], 256)
    assert [sched.decide(b) for b in (1, 16, 17, 31, 32, 128, 129, 256)] == [3] * 4 + [2] * 4


@pytest.mark.parametrize(("acc", "want"), [(1.0, 3), (0.0, 0)])
def test_goodput_picks_the_best_k_for_what_it_observed(folder: Path, acc: float, want: int) -> None:
    # No observation yet: k = 3 (the window). Then the estimate is exact (1 or 0): all
    # accepted -> k + 1 tokens for 10 + (k + 1) ms, best at k = 3; none -> 1 token, best
    # at k = 0, where nothing is observed: after window = 4 iterations it probes k = 3
    # once, sees nothing accepted again, and goes back to 0.
    policy = {"kind": "goodput", "window_iterations": 4}
    _, log = run(folder, one_request(13, acc, {"num_spec_tokens": 3, "policy": policy}))
    ks = ks_per_iteration(log, 3)[1:]
    if want == 3:
        assert ks == [3] * 3  # 1 + 4 + 4 + 4 tokens
    else:
        assert ks == [3, 0, 0, 0, 0] * 2 + [3, 0]  # 12 decode steps, 1 token each


# ---------------------------------------------------------------------------- draws


@settings(max_examples=40, deadline=None)
@given(
    kmax=st.integers(1, 6),
    data=st.data(),
    acc=st.lists(st.sampled_from([0.0, 0.3, 0.7, 1.0]), min_size=1, max_size=6),
    match=st.sampled_from([None, 0.5]),
    seed=st.integers(0, 100),
)
def test_draws_at_k_equal_draws_made_at_k(
    kmax: int, data: st.DataObject, acc: list[float], match: float | None, seed: int
) -> None:
    # A step's uniform accepts min(L, k) at k: cutting the kmax draws gives exactly the
    # draws made at k from the same seed (chains; n-gram misses too).
    k = data.draw(st.integers(0, kmax))
    spec = AcceptanceSpec(per_position=acc, spread=0.2, match_probability=match)
    out = np.array([1, 5, 17, 9])

    def draws(kk: int):
        model = AcceptanceModel.for_chain(spec, kk, "ngram") if kk else None
        rngs = [np.random.default_rng(np.random.SeedSequence([seed, i])) for i in (0, 1)]
        return draw_steps(model, out, *rngs)

    got = draws_at(draws(kmax), k, kmax)
    want = draws(k)
    np.testing.assert_array_equal(got.cum, want.cum)
    if k and want.drafted_cum is not None:
        np.testing.assert_array_equal(got.drafted_cum, want.drafted_cum)
        np.testing.assert_array_equal(got.drafting_cum, want.drafting_cum)


# ---------------------------------------------------------------------------- invariants


def _chain(changes: dict[str, Any]) -> bool:
    spec = changes["spec"]
    return spec["drafter"] != "none" and "tree" not in spec and spec["num_spec_tokens"] > 0


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_one_band_schedule_is_todays_fixed_k_bit_for_bit(folder: Path, data: st.DataObject) -> None:
    # The policy path (draws cut at k, per-iteration decisions, horizons) with a policy
    # that never moves reproduces the fixed-k engine exactly.
    changes = random_changes(data.draw)
    assume(_chain(changes))
    k = changes["spec"]["num_spec_tokens"]
    target, draft = TARGET_SMALL, DRAFT_SMALL
    fixed = api.simulate(make_rs(folder, changes), target_latency=target, draft_latency=draft)
    for policy in (
        {"kind": "batch_schedule", "bands": [[1, 4, k]]},
        {"kind": "trtllm_dynamic"},
    ):
        spec = {**changes["spec"], "policy": policy}
        rs = make_rs(folder, {**changes, "spec": spec})
        pol = api.simulate(rs, target_latency=target, draft_latency=draft)
        a, b = stable(fixed.metrics), stable(pol.metrics)
        a["config"] = {**a["config"], "policy": None}
        b["config"] = {**b["config"], "policy": None}
        a["speculation_k"] = b["speculation_k"] = None
        if fixed.engine.drafted_tokens is None:  # the policy path books drafts itself
            for key in ("acceptance_rate", "mean_accepted_len"):
                same = b[key] == a[key] if a[key] is None else b[key] == pytest.approx(a[key])
                assert same, key
                a.pop(key), b.pop(key)
        assert a == b
        np.testing.assert_array_equal(fixed.engine.finish_s, pol.engine.finish_s)


POLICIES = [
    {"kind": "batch_schedule", "bands": [[1, 1, 4], [2, 2, 1], [3, 4, 0]]},
    {"kind": "goodput", "window_iterations": 4},
    {"kind": "sglang_adaptive", "warmup_batches": 2, "update_interval": 1},
    {
        "kind": "trtllm_dynamic",
        "draft_len_schedule": {1: 4, 3: 2},
        "acceptance_rate_window_size": 3,
        "acceptance_rate_threshold": 0.4,
    },
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(data=st.data(), which=st.integers(0, len(POLICIES) - 1))
def test_invariants_with_policies(
    folder: Path, data: st.DataObject, which: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = random_changes(data.draw)
    assume(_chain(changes))
    policy = POLICIES[which]
    spec = {**changes["spec"], "num_spec_tokens": 4, "policy": policy}
    serving = {**changes["serving"]}
    serving["kv_cache_tokens"] = int(serving["kv_cache_tokens"]) + 7  # room for k up to 7
    rs = make_rs(folder, {**changes, "spec": spec, "serving": serving})
    a, b = planned_and_stepped(rs, monkeypatch)  # decisions at every iteration == runs
    target, draft = TARGET_SMALL, DRAFT_SMALL
    e, m = a.engine, a.metrics
    assert np.all(np.isfinite(e.finish_s))
    assert e.generated is not None
    np.testing.assert_array_equal(e.generated, e.output_tokens)  # tokens conserved
    assert e.decode_tokens + e.prefill_tokens == m["output_tokens"]
    assert m["kv_peak_tokens"] <= rs.kv_cache_tokens
    assert sum(e.k_hist) == e.iterations  # type: ignore[arg-type]
    for key in ("iterations", "decode_steps", "preemptions", "kv_peak_tokens"):
        assert m[key] == b.metrics[key], key
    assert e.k_hist == b.engine.k_hist
    np.testing.assert_allclose(e.finish_s, b.engine.finish_s, rtol=1e-12, atol=1e-12)
    c = api.simulate(rs, target_latency=target, draft_latency=draft)  # deterministic
    assert stable(c.metrics) == stable(m)


# ---------------------------------------------------------------------------- input


@pytest.mark.parametrize(
    ("policy", "spec", "match"),
    [
        ({"kind": "batch_schedule", "bands": [[2, 4, 1]]}, {}, "must start at batch size 1"),
        ({"kind": "batch_schedule", "bands": [[1, 4, 1], [3, 8, 2]]}, {}, "overlaps"),
        ({"kind": "trtllm_dynamic", "draft_len_schedule": {1: 2}}, {}, "must map to"),
        ({"kind": "goodput"}, {"tree": {"paths": [[0]]}}, "no tree"),
        ({"kind": "adaptive"}, {}, "kind"),
    ],
)
def test_bad_policy_is_one_clear_error(folder: Path, policy: dict, spec: dict, match: str) -> None:
    changes = {"spec": {"drafter": "small", "num_spec_tokens": 3, "policy": policy, **spec}}
    with pytest.raises(InputError, match=match) as err:
        make_rs(folder, changes)
    assert "spec.policy" in str(err.value) or "policy" in str(err.value)


@pytest.mark.parametrize("which", range(len(POLICIES)))
@pytest.mark.parametrize("acc", [0.35, 0.6, 0.8])
def test_horizons_match_per_iteration_decisions(
    folder: Path, which: int, acc: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long runs of a busy batch whose acceptance hovers where the policies change their
    # minds: planned runs cut at the horizons == one decision per iteration, and the
    # policy did change k several times (else the check would prove nothing).
    changes = {
        "workload": {
            "mode": "closed",
            "concurrency": 3,
            "num_requests": 12,
            "output_tokens": {"dist": "uniform", "low": 50, "high": 300},
        },
        "spec": {"drafter": "ngram", "num_spec_tokens": 4, "policy": POLICIES[which]},
        "seed": 1,
        **drafter_acceptance("ngram", [acc], spread=0.25),
    }
    rs = make_rs(folder, changes)
    a = api.simulate(rs, target_latency=TARGET, log=True)
    monkeypatch.setattr(engine, "MAX_RUN_ITERATIONS", 1)
    b = api.simulate(rs, target_latency=TARGET, log=True)
    switches = sum(1 for e, _, _ in a.engine.log if e == "k")
    assert a.engine.k_hist == b.engine.k_hist
    np.testing.assert_allclose(a.engine.finish_s, b.engine.finish_s, rtol=1e-12, atol=1e-12)
    assert a.engine.runs < b.engine.runs  # the planned runs did skip events
    if POLICIES[which]["kind"] in ("goodput", "sglang_adaptive") and acc < 0.7:
        assert switches >= 3, a.engine.k_hist
