"""The live serving driver: every workload mode completes every request with exactly its
output tokens, admission respects max_num_seqs, the requests are the simulator's, greedy SD
is lossless under continuous batching, and incomparable scenarios are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from conftest import latency_profile_dict  # noqa: E402

from spectune.profiler.live import PromptSource, request_set  # noqa: E402
from spectune.profiler.native.drafters import ModelDrafter, NgramDrafter  # noqa: E402
from spectune.profiler.native.serve import check_comparable, serve  # noqa: E402
from spectune.profiler.runtime.config import ModelConfig  # noqa: E402
from spectune.profiler.runtime.model import controllable_pair  # noqa: E402
from spectune.simulator import load_scenario, simulate  # noqa: E402
from spectune.simulator.errors import InputError  # noqa: E402

VOCAB = 64
CFG = ModelConfig(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
)
N_REQ = 8


@pytest.fixture(scope="module")
def target():
    torch.set_num_threads(1)
    return controllable_pair(CFG, eps=0.3, draft_layers=2, seed=0)


@pytest.fixture(scope="module")
def pool():
    return PromptSource.random(VOCAB, 2000, seed=0)


def write_scenario(d: Path, mode: str, mns: int = 3, **serving) -> Path:
    (d / "lat.yaml").write_text(yaml.safe_dump(latency_profile_dict()))
    wl = {
        "mode": mode,
        "num_requests": N_REQ,
        "prompt_tokens": {"dist": "uniform", "low": 4, "high": 24},
        "output_tokens": {"dist": "uniform", "low": 1, "high": 20},
    }
    if mode == "open":
        wl["arrival"] = {"process": "poisson", "rate_per_s": 200.0}
    if mode == "closed":
        wl["concurrency"] = 2
    sc = {
        "schema": "spectune/scenario/v1",
        "target": {"latency_profile": "lat.yaml"},
        "drafters": [
            {
                "name": "self2",
                "kind": "self",
                "self_layers": 2,
                "acceptance": {"per_position": [0.6]},
            },
            {"name": "ng", "kind": "ngram", "acceptance": {"per_position": [0.3]}},
        ],
        "workload": wl,
        "serving": {
            "max_num_seqs": mns,
            "max_batched_tokens": 4096,
            "kv_cache_tokens": 100_000,
            "preemption": "queue",
            **serving,
        },
        "spec": {"drafter": "self2", "num_spec_tokens": 3},
    }
    p = d / f"sc-{mode}.yaml"
    p.write_text(yaml.safe_dump(sc))
    return p


@pytest.mark.parametrize("mode", ["offline", "closed", "open"])
def test_every_request_completes_with_its_output_tokens(tmp_path, target, pool, mode):
    rs = load_scenario(write_scenario(tmp_path, mode))
    res = serve(
        rs,
        target,
        ModelDrafter(target, 2, share_target_cache=True),
        pool,
        0,
        realtime=False,
        warmup_steps=1,
    )
    want = request_set(rs, 0).output_tokens.tolist()
    assert [len(o) for o in res.outputs] == want
    e = res.engine
    assert np.all(np.isfinite(e.finish_s))
    assert np.all(e.arrival_s <= e.first_token_s)
    assert np.all(e.first_token_s <= e.finish_s)  # TTFT <= E2E
    m = res.metrics
    assert m["num_requests"] == N_REQ
    assert m["output_tokens"] == sum(want)
    assert m["ttft_s"]["p50"] <= m["e2e_s"]["p50"]
    assert m["throughput_tok_per_s"] > 0
    assert m["mean_accepted_len"] >= 1.0


@pytest.mark.parametrize("mns", [1, 3])
def test_admission_respects_max_num_seqs(tmp_path, target, pool, mns):
    rs = load_scenario(write_scenario(tmp_path, "offline", mns=mns))
    res = serve(rs, target, NgramDrafter(1, 3), pool, 1, realtime=False, warmup_steps=0)
    s = res.steps.arrays()
    assert np.all(s["batch"] + s["prefills"] <= mns)
    assert (s["batch"] + s["prefills"]).max() == mns  # the cap is reached (8 requests at t=0)
    # In time: never more than mns requests between admission (≈ first token) and finish.
    e = res.engine
    for t in e.first_token_s:
        live = np.sum((e.first_token_s <= t) & (e.finish_s > t))
        assert live <= mns
    if mns == 1:  # one at a time, FCFS
        assert np.all(np.diff(e.finish_s) > 0)


def test_closed_loop_keeps_concurrency(tmp_path, target, pool):
    rs = load_scenario(write_scenario(tmp_path, "closed", mns=3)).with_spec(drafter="none")
    res = serve(rs, target, None, pool, 2, realtime=False, warmup_steps=0)
    e = res.engine
    for t in e.arrival_s:  # in the system (arrived, not finished) at each arrival: <= 2
        assert np.sum((e.arrival_s <= t) & (e.finish_s > t)) <= 2
    assert np.sum(e.arrival_s == 0.0) == 2


def test_requests_are_the_simulators(tmp_path, target, pool):
    rs = load_scenario(write_scenario(tmp_path, "open"))
    sim = simulate(rs, 5).engine
    res = serve(rs, target, NgramDrafter(1, 3), pool, 5, realtime=False, warmup_steps=0)
    assert res.engine.prompt_tokens.tolist() == sim.prompt_tokens.tolist()
    assert res.engine.output_tokens.tolist() == sim.output_tokens.tolist()
    # open loop: arrivals are the scheduled times
    np.testing.assert_allclose(res.engine.arrival_s, sim.arrival_s)


def test_greedy_sd_under_continuous_batching_is_lossless(tmp_path, target, pool):
    rs = load_scenario(write_scenario(tmp_path, "offline", mns=3))
    plain = serve(
        rs.with_spec(drafter="none", num_spec_tokens=0),
        target,
        None,
        pool,
        3,
        realtime=False,
        warmup_steps=0,
    )
    sd = serve(
        rs,
        target,
        ModelDrafter(target, 2, share_target_cache=True),
        pool,
        3,
        realtime=False,
        warmup_steps=0,
    )
    tree = rs.with_spec(drafter="ng", tree={"paths": [[0], [1], [0, 0]]})
    ng = serve(tree, target, NgramDrafter(1, 3), pool, 3, realtime=False, warmup_steps=0)
    assert sd.outputs == plain.outputs
    assert ng.outputs == plain.outputs
    assert sd.metrics["mean_accepted_len"] > 1.0


def test_realtime_open_loop_waits_for_arrivals(tmp_path, target, pool):
    rs = load_scenario(write_scenario(tmp_path, "open"))
    rs = rs.with_workload(arrival={"process": "poisson", "rate_per_s": 40.0}, num_requests=4)
    rs = rs.with_spec(drafter="none")
    res = serve(rs, target, None, pool, 0, realtime=True, warmup_steps=0)
    e = res.engine
    # no request starts before it arrives; the run lasts at least until the last arrival
    assert np.all(e.first_token_s >= e.arrival_s)
    assert res.metrics["duration_s"] >= e.arrival_s.max()


def test_incomparable_scenarios_are_refused(tmp_path, target, pool):
    rs = load_scenario(write_scenario(tmp_path, "offline", max_batched_tokens=16))
    with pytest.raises(InputError, match="max_batched_tokens"):
        check_comparable(rs, request_set(rs, 0))
    rs = load_scenario(
        write_scenario(tmp_path, "offline", kv_cache_tokens=60, preemption="recompute")
    ).with_spec(drafter="none")
    with pytest.raises(InputError, match="kv_cache_tokens"):
        serve(rs, target, None, pool, 0, realtime=False)
