"""The search space: define-by-run suggestions, the exhaustive grid, params round trip."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from tunerkit import write_tiny

from spectune.simulator.errors import InputError
from spectune.simulator.scenario import load_scenario
from spectune.tuner.space import NONE, Config, SearchDims, config_params, grid, suggest_config


def dims_of(tmp_path: Path, **search) -> SearchDims:
    base = {
        "drafters": ["none", "small", "ngram"],
        "num_spec_tokens": [0, 1, 2, 3],
        "tree_budgets": [4, 8],
        "tree_depths": [2, 3, 9],
    }
    base.update(search)
    return SearchDims.from_scenario(load_scenario(write_tiny(tmp_path, {"search": base})))


def test_grid_counts_and_normalises(tmp_path: Path) -> None:
    dims = dims_of(tmp_path)
    configs = grid(dims)
    # none + small k 1..3 + ngram k 1..3 + small trees: budget 4 -> depths {2,3,4},
    # budget 8 -> {2,3,8}; ngram gets no trees (kind ngram, width-1 ranking).
    assert len(configs) == 1 + 3 + 3 + 6
    assert len(set(configs)) == len(configs)
    assert Config() in configs
    assert all(c.tree_depth <= c.tree_budget for c in configs if c.is_tree)
    assert not any(c.is_tree and c.drafter == "ngram" for c in configs)
    assert dims.tree_drafters == frozenset({"small"})


def test_normalized_forms() -> None:
    assert Config("small", 0).normalized() == Config()
    assert Config(NONE, 5).normalized() == Config()
    assert Config("small", 0, 4, 9).normalized() == Config("small", 0, 4, 4)
    assert Config("small", 3, 8, 2).normalized().num_spec_tokens == 0
    c = Config("small", 0, 8, 3, 32)
    assert Config.from_dict(c.to_dict()) == c


def test_params_round_trip_every_grid_point(tmp_path: Path) -> None:
    dims = dims_of(tmp_path, max_num_seqs=[16, 32, 64])
    configs = grid(dims)
    assert len(configs) == 13 * 3
    for c in configs:
        trial = optuna.trial.FixedTrial(config_params(c, dims))
        assert suggest_config(trial, dims) == c


def test_define_by_run_stays_in_the_grid(tmp_path: Path) -> None:
    dims = dims_of(tmp_path)
    allowed = set(grid(dims))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()

    def obj(trial: optuna.Trial) -> float:
        c = suggest_config(trial, dims)
        seen.add(c)
        # Per-drafter parameter names: a trial only carries its own drafter's params.
        assert all(c.drafter in name for name in trial.params if ":" in name)
        return 0.0

    study.optimize(obj, n_trials=80)
    assert seen <= allowed
    assert len(seen) > len(allowed) // 2


def _k_distribution(dims: SearchDims) -> optuna.distributions.BaseDistribution:
    study = optuna.create_study()
    study.enqueue_trial({"drafter": "small"})
    trial = study.ask()
    c = suggest_config(trial, dims)
    assert c.drafter == "small" and c.num_spec_tokens in dims.chain_ks
    return trial.distributions["num_spec_tokens:small"]


def test_uneven_choices_are_categorical_even_ones_ints(tmp_path: Path) -> None:
    uneven = _k_distribution(dims_of(tmp_path, num_spec_tokens=[1, 2, 4, 8], tree_budgets=[]))
    assert isinstance(uneven, optuna.distributions.CategoricalDistribution)
    even = _k_distribution(dims_of(tmp_path, num_spec_tokens=[2, 4, 6], tree_budgets=[]))
    assert isinstance(even, optuna.distributions.IntDistribution)
    assert (even.low, even.high, even.step) == (2, 6, 2)


@pytest.mark.parametrize(
    ("search", "field"),
    [
        ({"drafters": []}, "search"),
        ({"drafters": ["small"], "num_spec_tokens": [0], "tree_budgets": []}, "search"),
        ({"drafters": ["none", "nope"]}, "search.drafters.1"),
    ],
)
def test_empty_or_unknown_space(tmp_path: Path, search: dict, field: str) -> None:
    with pytest.raises(InputError) as e:
        dims_of(tmp_path, **search)
    assert e.value.field == field
