"""Acceptance model: closed-form agreement, sampling law vs a literal walk, spread rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectune.simulator.acceptance import AcceptanceModel, draw_request_steps, shift_probs
from spectune.simulator.analytic import (
    accepted_dist_chain,
    accepted_dist_tree,
    expected_tokens_chain,
    expected_tokens_tree,
)
from spectune.simulator.errors import InputError
from spectune.simulator.schema import AcceptanceSpec
from spectune.simulator.tree import Tree

TREE = Tree.from_paths([[0], [1], [2], [0, 0], [0, 1], [1, 0], [0, 0, 0], [0, 1, 0]])
probs = st.floats(0.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(per=st.lists(probs, min_size=1, max_size=6), k=st.integers(0, 8))
def test_chain_mean_is_the_closed_form(per: list[float], k: int) -> None:
    model = AcceptanceModel.for_chain(AcceptanceSpec(per_position=per), k)
    assert model.depth == k
    assert model.mean_tokens_per_step() == pytest.approx(expected_tokens_chain(per, k))


@settings(max_examples=50, deadline=None)
@given(ranked=st.lists(probs, min_size=1, max_size=4))
def test_tree_survival_is_the_closed_form(ranked: list[float]) -> None:
    model = AcceptanceModel.for_tree(AcceptanceSpec(per_position=[0.5], ranked=ranked), TREE)
    assert model.mean_tokens_per_step() == pytest.approx(expected_tokens_tree(TREE, ranked))
    surv = np.concatenate([[1.0], model.survival(np.zeros(1))[0], [0.0]])
    np.testing.assert_allclose(surv[:-1] - surv[1:], accepted_dist_tree(TREE, ranked), atol=1e-12)


def walk_chain(rng: np.random.Generator, a: list[float], n: int) -> np.ndarray:
    """Literal sequential Bernoulli: accept draft i with a_i until the first rejection."""
    out = np.zeros(n, dtype=int)
    for s in range(n):
        for ai in a:
            if rng.random() >= ai:
                break
            out[s] += 1
    return out


def walk_tree(rng: np.random.Generator, tree: Tree, p: list[float], n: int) -> np.ndarray:
    """Literal ranked walk: at each accepted node try its children in rank order, the
    rank-r one accepted with p_r given the earlier ranks were rejected."""
    out = np.zeros(n, dtype=int)
    for s in range(n):
        node, depth = -1, 0
        while True:
            nxt = None
            for child in tree.children(node):
                r = tree.ranks[child]
                if rng.random() < (p[r] if r < len(p) else 0.0):
                    nxt = child
                    break
            if nxt is None:
                break
            node, depth = nxt, depth + 1
        out[s] = depth
    return out


def test_sampling_law_matches_a_literal_walk() -> None:
    # The sampler's one-uniform rule must have the walk's distribution: compare the
    # empirical distributions of both with each other and with the closed form.
    n = 40_000
    rng = np.random.default_rng(1)
    per = [0.9, 0.7, 0.5, 0.8]
    chain = AcceptanceModel.for_chain(AcceptanceSpec(per_position=per), 4)
    fast = chain.sample_accepted(chain.survival(np.zeros(1)), rng.random(n))
    slow = walk_chain(rng, per, n)
    want = accepted_dist_chain(per, 4)
    for got in (fast, slow):
        freq = np.bincount(got, minlength=5) / n
        assert np.all(np.abs(freq - want) <= 4 * np.sqrt(want * (1 - want) / n) + 1e-9)

    ranked = [0.6, 0.5, 0.3]
    tree = AcceptanceModel.for_tree(AcceptanceSpec(per_position=[0.5], ranked=ranked), TREE)
    fast = tree.sample_accepted(tree.survival(np.zeros(1)), rng.random(n))
    slow = walk_tree(rng, TREE, ranked, n)
    want = accepted_dist_tree(TREE, ranked)
    for got in (fast, slow):
        freq = np.bincount(got, minlength=4) / n
        assert np.all(np.abs(freq - want) <= 4 * np.sqrt(want * (1 - want) / n) + 1e-9)


def test_shift_keeps_probabilities_order_and_fixed_points() -> None:
    p = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    out = shift_probs(p, np.array([-3.0, 0.0, 0.7, 5.0]))
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(out[1], p, atol=1e-9)  # δ = 0 is the identity
    assert np.all(out[:, 0] == 0.0) and np.all(out[:, -1] == 1.0)
    assert np.all(np.diff(out, axis=1) >= 0)  # positions keep their order
    assert np.all(np.diff(out[:, 2]) > 0)  # larger shift, larger acceptance


def test_spread_draws_beta_levels_around_the_mean() -> None:
    spec = AcceptanceSpec(per_position=[0.8, 0.7, 0.6], spread=0.1)
    model = AcceptanceModel.for_chain(spec, 3)
    shifts = model.request_shifts(np.random.default_rng(0), 100_000)
    levels = 1 / (1 + np.exp(-(np.log(0.7 / 0.3) + shifts)))  # back to the level scale
    assert levels.mean() == pytest.approx(0.7, abs=0.002)
    assert levels.std() == pytest.approx(0.1, rel=0.02)
    surv = model.survival(shifts[:1000])
    assert np.all((surv >= 0) & (surv <= 1)) and np.all(np.diff(surv, axis=1) <= 0)
    assert not model.warnings


def test_spread_too_wide_for_a_beta_is_capped_with_a_warning() -> None:
    model = AcceptanceModel.for_chain(AcceptanceSpec(per_position=[0.9], spread=0.4), 2)
    assert model.warnings and "capped" in model.warnings[0]
    assert np.all(np.isfinite(model.request_shifts(np.random.default_rng(0), 100)))


def test_per_request_samples_are_resampled() -> None:
    spec = AcceptanceSpec(per_position=[0.6], per_request=[0.2, 0.6, 1.0])
    model = AcceptanceModel.for_chain(spec, 1)
    surv = model.survival(model.request_shifts(np.random.default_rng(0), 3000))[:, 0]
    # Center = mean of the samples (0.6): a request at level 0.6 gets a_1 = 0.6, the
    # extremes map to ~0 and ~1.
    values = np.unique(np.round(surv, 6))
    assert len(values) == 3 and values[1] == pytest.approx(0.6)
    assert values[0] < 0.25 and values[2] > 0.999


def test_tree_needs_ranked_acceptance() -> None:
    with pytest.raises(InputError, match="ranked"):
        AcceptanceModel.for_tree(AcceptanceSpec(per_position=[0.5]), TREE)


def test_pre_drawn_steps() -> None:
    out = np.array([1, 5, 12])
    g = [np.random.default_rng(s) for s in (0, 1)]
    cum, off, _ = draw_request_steps(None, out, *g)
    assert off.tolist() == [0, 2, 8]
    for r in range(3):
        np.testing.assert_array_equal(cum[off[r] : off[r] + out[r] + 1], np.arange(out[r] + 1))
    spec = AcceptanceSpec(per_position=[0.7, 0.5], spread=0.2)
    model = AcceptanceModel.for_chain(spec, 3)
    cum, off, surv = draw_request_steps(model, out, *g)
    assert surv.shape == (3, 3)
    for r in range(3):
        block = cum[off[r] : off[r] + out[r] + 1]
        assert block[0] == 0 and np.all((np.diff(block) >= 1) & (np.diff(block) <= 4))
    full = AcceptanceModel.for_chain(AcceptanceSpec(per_position=[1.0]), 3)
    cum, off, _ = draw_request_steps(full, out, *g)
    np.testing.assert_array_equal(cum[off[2] : off[2] + 13], 4 * np.arange(13))
