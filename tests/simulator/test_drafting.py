"""Drafter semantics and per-request trajectories in the DES: exact times of n-gram steps
without a match, correlation inside requests, benchmark-protocol (identical) workloads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import write_yaml
from simkit import base_scenario, make_rs, write_profiles

from spectune.simulator import api
from spectune.simulator.latency import ConstantLatency


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_profiles(tmp_path_factory.mktemp("profiles"))


def profile(folder: Path, name: str, kind: str, acceptance: dict[str, Any]) -> dict[str, Any]:
    """Write an acceptance profile; return scenario ``changes`` pointing drafter ``kind``'s
    entry of base_scenario at it."""
    write_yaml(
        folder / f"{name}.yaml",
        {
            "schema": "spectune/acceptance/v1",
            "target": "t",
            "drafter": name,
            "drafter_kind": kind,
            "dataset": "test",
            "temperature": 0.0,
            "acceptance": acceptance,
        },
    )
    drafters = copy.deepcopy(base_scenario()["drafters"])
    for d in drafters:
        if d["kind"] == kind:
            d["acceptance"] = {"profile": f"{name}.yaml"}
    return {"drafters": drafters}


def one_request(output: int) -> dict[str, Any]:
    return {"workload": {"num_requests": 1, "output_tokens": {"dist": "constant", "value": output}}}


# ---------------------------------------------------------------------------- exact time


def test_ngram_step_without_a_match_verifies_one_token_exact_times(folder: Path) -> None:
    # Prompt 10, output 8, n-gram k = 4 at 0.5 ms per drafted token; forward = 10 + 1 ms
    # per token. Recorded steps: 2 accepted of 4; no match (nothing drafted); 3 of 4.
    # Prefill 20 ms; a drafting step verifies 5 tokens (15 ms) + 4 x 0.5 ms of lookup =
    # 17 ms; the step without a match verifies 1 token (11 ms) and costs no draft time.
    # Tokens: 1 (prefill) + 3 + 1 + 4 -> 9, cut at 8.
    traj = {"k": 4, "output_tokens": 8, "accepted": [2, 0, 3], "drafted": [4, 0, 4]}
    changes = {
        **profile(folder, "ng-miss", "ngram", {"per_position": [0.5], "trajectories": [traj]}),
        **one_request(8),
        "spec": {"drafter": "ngram", "num_spec_tokens": 4},
    }
    changes["drafters"][1]["draft_ms_per_token"] = 0.5
    rs = make_rs(folder, changes)
    res = api.simulate(rs, target_latency=ConstantLatency(10.0, 1.0), log=True)
    times = [0.020, 0.037, 0.048, 0.065]
    want = [("arrive", 0.0, 0), ("admit", 0.0, 0), ("iteration", times[0], 1)]
    want += [("first_token", times[0], 0)] + [("iteration", t, 1) for t in times[1:]]
    want += [("finish", times[-1], 0)]
    got = res.engine.log
    assert [(e, r) for e, _, r in got] == [(e, r) for e, _, r in want]
    assert [t for _, t, _ in got] == pytest.approx([t for _, t, _ in want], abs=1e-12)
    m = res.metrics
    # vLLM's counting: 2 drafting steps accepted 5 -> 1 + 5 / 2; 5 of 8 drafts accepted.
    assert m["mean_accepted_len"] == pytest.approx(3.5)
    assert m["acceptance_rate"] == pytest.approx(5 / 8)


def test_compact_match_probability_zero_is_plain_decoding(folder: Path) -> None:
    # match_probability 0: every step proposes nothing, so an n-gram config costs and
    # emits exactly what plain decoding does.
    changes = {
        **profile(folder, "ng-never", "ngram", {"per_position": [0.9], "match_probability": 0.0}),
        **one_request(6),
    }
    lat = ConstantLatency(10.0, 1.0)
    plain = api.simulate(make_rs(folder, changes), target_latency=lat, log=True)
    changes["spec"] = {"drafter": "ngram", "num_spec_tokens": 3}
    never = api.simulate(make_rs(folder, changes), target_latency=lat, log=True)
    assert never.engine.log == plain.engine.log
    assert never.metrics["mean_accepted_len"] == 1.0


def test_match_probability_mean_tokens_and_cost(folder: Path) -> None:
    # Compact form: a step drafts with probability 0.6, then accepts a_i = 1.0 of k = 3:
    # tokens per step 0.6 x 4 + 0.4 x 1 = 2.8; vLLM's mean accepted length counts the
    # drafting steps only: 4.
    changes = {
        **profile(folder, "ng-06", "ngram", {"per_position": [1.0], "match_probability": 0.6}),
        "workload": {"num_requests": 200, "output_tokens": {"dist": "constant", "value": 400}},
        "spec": {"drafter": "ngram", "num_spec_tokens": 3},
    }
    m = api.simulate(make_rs(folder, changes), target_latency=ConstantLatency(10.0, 1.0)).metrics
    tokens = m["output_tokens"] - m["num_requests"]  # the prefill's tokens excluded
    assert tokens / m["decode_steps"] == pytest.approx(2.8, rel=0.02)
    assert m["mean_accepted_len"] == pytest.approx(4.0)


# ---------------------------------------------------------------------------- correlation


def _pair(k: int, out: int) -> tuple[list[dict], list[dict]]:
    """Two sets of steps trajectories with the same pooled per-position acceptance:
    ``split`` = half the requests accept every draft, half none; ``mixed`` = every request
    spends half its tokens in full steps and half in rejected ones."""
    full, none = [k] * (out // (k + 1)), [0] * out
    split = [
        {"k": k, "output_tokens": out + 1, "accepted": full},
        {"k": k, "output_tokens": out + 1, "accepted": none},
    ]
    half = [k] * (out // (2 * (k + 1))) + [0] * (out // 2)
    rng = np.random.default_rng(3)
    mixed = [{"k": k, "output_tokens": out + 1, "accepted": rng.permutation(half).tolist()}]
    return split, mixed


def test_same_pooled_rates_different_correlation_are_told_apart(folder: Path) -> None:
    from spectune.simulator.trajectory import densify, pooled_per_position, replay_chain
    from spectune.simulator.trajectory_schema import Trajectory

    k, out = 4, 200
    split, mixed = _pair(k, out)
    pooled = [
        pooled_per_position([replay_chain(densify(Trajectory(**t)), k)[0] for t in ts], k)
        for ts in (split, mixed)
    ]
    assert pooled[0] == pytest.approx(pooled[1], abs=0.01)  # same pooled a_1..a_4
    metrics = []
    for name, ts in (("split", split), ("mixed", mixed)):
        changes = {
            **profile(folder, f"corr-{name}", "ngram", {"per_position": [0.5], "trajectories": ts}),
            "workload": {
                "mode": "offline",
                "num_requests": 256,
                "output_tokens": {"dist": "constant", "value": out},
            },
            "serving": {"max_num_seqs": 256},
            "spec": {"drafter": "ngram", "num_spec_tokens": k},
        }
        # a decode step costs ~10 ms whatever the batch (the memory-bound regime)
        lat = ConstantLatency(10.0, 0.001)
        metrics.append(api.simulate(make_rs(folder, changes), target_latency=lat).metrics)
    split_m, mixed_m = metrics
    # Pooled over steps both give about the same tokens per step (5/3; the split one up
    # to which record each of its 256 requests drew)...
    assert mixed_m["mean_tokens_per_step"] == pytest.approx(5 / 3, rel=0.01)
    assert split_m["mean_tokens_per_step"] == pytest.approx(5 / 3, rel=0.1)
    # ...but per request they differ: the split workload's slow half decodes one token per
    # step (TPOT ~ a whole step, 10 ms), the mixed one's requests all take 120 steps for
    # 199 tokens (~6 ms); its fast half 40 steps (~2 ms).
    assert split_m["tpot_s"]["p99"] > 1.5 * mixed_m["tpot_s"]["p99"]
    assert split_m["tpot_s"]["p50"] != pytest.approx(mixed_m["tpot_s"]["p50"], rel=0.1)


def test_suffix_drafter_draft_lengths(folder: Path) -> None:
    # Suffix decoding (kind suffix): a drafting step proposes d = 1 or 3 tokens (equally
    # likely), capped at k = 2, every one accepted: tokens per step 1 + (1 + 2) / 2 = 2.5,
    # and the verify width follows the drafts.
    suffix = {"name": "sfx", "kind": "suffix", "acceptance": {"profile": "sfx.yaml"}}
    changes = profile(
        folder, "sfx", "suffix", {"per_position": [1.0], "draft_lengths": [0.5, 0, 0.5]}
    )
    changes["drafters"] = [*changes["drafters"], suffix]
    changes["workload"] = {"num_requests": 100, "output_tokens": {"dist": "constant", "value": 300}}
    changes["spec"] = {"drafter": "sfx", "num_spec_tokens": 2}
    m = api.simulate(make_rs(folder, changes), target_latency=ConstantLatency(10.0, 1.0)).metrics
    tokens = m["output_tokens"] - m["num_requests"]
    assert tokens / m["decode_steps"] == pytest.approx(2.5, rel=0.02)
    assert m["acceptance_rate"] == pytest.approx(1.0)
