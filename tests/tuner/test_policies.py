"""Speculation policies in the tuner: the space, the simulated spec, what recommend prints
and what it emits are the same thing."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from tunerkit import tiny_scenario, write_tiny

from spectune.cli import main
from spectune.commands.recommend_emit import engine_output, schedule_row
from spectune.simulator import load_scenario
from spectune.tuner.evaluate import Evaluator
from spectune.tuner.export import capabilities
from spectune.tuner.export.common import capped_schedule, clean_schedule
from spectune.tuner.schedule import StepCosts, best_k_schedule
from spectune.tuner.search import SearchSettings, run_search
from spectune.tuner.space import Config, SearchDims, config_params, grid, suggest_config

POLICIES = ["fixed", "schedule", "cutoff", "sglang_adaptive"]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    search = {**tiny_scenario()["search"], "policies": POLICIES, "tree_budgets": []}
    search["num_spec_tokens"] = [0, 1, 3, 5]
    # A busy closed loop: batches from 1 to 24, where the best k falls with the batch.
    workload = {
        "mode": "closed",
        "concurrency": 24,
        "num_requests": 96,
        "prompt_tokens": {"dist": "constant", "value": 100},
        "output_tokens": {"dist": "uniform", "low": 40, "high": 80},
    }
    return write_tiny(tmp_path, {"search": search, "workload": workload})


def test_config_round_trips_and_labels() -> None:
    c = Config("small", 3, policy="cutoff", policy_arg=8)
    assert Config.from_dict(c.to_dict()) == c
    assert c.label() == "small k=3, no SD above batch 8"
    assert Config("small", 3, policy="schedule", policy_arg=4).normalized().policy_arg is None
    assert Config("none", 0, policy="schedule").normalized() == Config()
    assert Config("small", 0, 4, 2, policy="goodput").normalized().policy == "fixed"


def test_space_offers_each_policy_and_maps_back(tiny: Path) -> None:
    dims = SearchDims.from_scenario(load_scenario(tiny))
    assert dims.policies == tuple(POLICIES)
    assert dims.cutoffs == (1, 2, 4, 8, 16, 32)  # below the cap of 64
    configs = grid(dims)
    chains = [c for c in configs if c.speculates]
    per_k = 3 + len(dims.cutoffs)  # fixed, schedule, adaptive + one cutoff per batch size
    assert len(chains) == 2 * 3 * per_k  # 2 drafters x 3 chain lengths
    for c in configs:  # every config is reachable by the sampler and maps back to itself
        trial = optuna.trial.FixedTrial(config_params(c, dims))
        assert suggest_config(trial, dims) == c


def test_simulated_policy_is_the_config_s(tiny: Path) -> None:
    rs = load_scenario(tiny)
    ev = Evaluator(rs)
    sched = Config("small", 5, policy="schedule")
    spec = ev.scenario_for(sched).scenario.spec
    assert spec.policy is not None and spec.policy.kind == "batch_schedule"
    priced = best_k_schedule(StepCosts.from_scenario(rs), "small", [1, 3, 5], 64).bands
    assert [tuple(b) for b in spec.policy.bands] == capped_schedule(clean_schedule(priced))[0]
    cut = ev.scenario_for(Config("small", 3, policy="cutoff", policy_arg=8)).scenario.spec
    assert [tuple(b) for b in cut.policy.bands] == [(1, 8, 3), (9, 64, 0)]  # type: ignore[union-attr]
    keys = {ev.key(Config("small", 3, policy=p, policy_arg=8)) for p in POLICIES}
    assert len(keys) == 4  # each policy is its own simulation
    # The engine's batch count follows the engine the config is emitted for.
    counts = Evaluator(rs, engine="sglang").policy(sched)
    assert counts is not None and counts["counts"] == "decoding"


def test_recommend_emits_the_row_it_reports(tiny: Path) -> None:
    # The emitted config and the reported row are the same object, and the engine config
    # carries the very bands that object simulated.
    rs = load_scenario(tiny)
    out = run_search(rs, SearchSettings(trials=25, band_samples=0, engine="vllm"))
    caps = capabilities("vllm", None)
    em = engine_output(rs, out, caps)
    if caps.why_not(_choice(rs, out, out.best)) is None:
        assert em.evaluation is out.best
    row = schedule_row(out)
    assert row is not None
    em = engine_output(rs, out, caps, with_schedule=True)
    assert em.evaluation is row
    simulated = [list(b) for b in row.metrics["config"]["policy"]["bands"]]
    spec = em.config.payload["speculative_config"]
    assert spec["num_speculative_tokens_per_batch_size"] == simulated
    assert spec["num_speculative_tokens"] == max(k for *_, k in simulated)


def _choice(rs, out, ev):
    from spectune.commands.recommend_emit import spec_choice

    return spec_choice(rs, out, ev)


def test_recommend_json_pick_matches_emitted_policy(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["recommend", str(tiny), "--trials", "25", "--json", "--emit", "trtllm"]
    assert main(args) == 0
    d = json.loads(capsys.readouterr().out)
    picked = d["recommendation"]["policy"]
    assert d["emit"]["emitted_policy"] == picked or d["emit"]["messages"]
    labels = [c["label"] for c in d["comparisons"]]
    assert any(lab.startswith("batch-size schedule") for lab in labels)
    assert any(lab.startswith("SGLang adaptive default") for lab in labels)
    assert any(lab.startswith("goodput per step") for lab in labels)


def test_scenario_spec_row_is_the_scenario_s_policy(tiny: Path) -> None:
    from spectune.tuner.search import spec_config

    rs = load_scenario(tiny)
    assert spec_config(rs) == Config("small", 3)
    adaptive = rs.with_spec(policy={"kind": "sglang_adaptive"})
    assert spec_config(adaptive) == Config("small", 3, policy="sglang_adaptive")
    # bands the search space cannot express: no "scenario spec" row rather than a wrong one
    banded = rs.with_spec(policy={"kind": "batch_schedule", "bands": [[1, 4, 2]]})
    assert spec_config(banded) is None
