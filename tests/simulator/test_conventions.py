"""Acceptance conventions: every conversion round-trips, and the worked numbers hold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectune.simulator.analytic import conventions as cv
from spectune.simulator.analytic import expected_tokens_chain, expected_tokens_tree
from spectune.simulator.errors import InputError
from spectune.simulator.tree import Tree

probs = st.lists(st.floats(0.01, 0.99), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(a=probs)
def test_conditional_unconditional_round_trip(a: list[float]) -> None:
    u = cv.unconditional_from_conditional(a)
    assert np.all(np.diff(u) <= 0)
    assert cv.conditional_from_unconditional(u) == pytest.approx(a, rel=1e-9)
    # ...and the other way round
    assert cv.unconditional_from_conditional(cv.conditional_from_unconditional(u)) == (
        pytest.approx(u, rel=1e-9)
    )


@settings(max_examples=60, deadline=None)
@given(a=probs, k=st.integers(1, 8))
def test_length_rate_round_trip(a: list[float], k: int) -> None:
    al = cv.acceptance_length(a, k)
    assert al == pytest.approx(1.0 + sum(cv.unconditional_from_conditional(a + [a[-1]] * 8)[:k]))
    r = cv.vllm_acceptance_rate(al, k)
    assert cv.length_from_rate(r, k) == pytest.approx(al)


@settings(max_examples=60, deadline=None)
@given(a=st.floats(0.0, 1.0), k=st.integers(1, 12))
def test_fit_iid_inverts_the_chain(a: float, k: int) -> None:
    al = float(expected_tokens_chain([a], k))
    fitted = cv.fit_iid_from_length(al, k)
    assert float(expected_tokens_chain([fitted], k)) == pytest.approx(al, abs=1e-9)
    if 0.02 < a < 0.98:
        assert fitted == pytest.approx(a, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(p=probs)
def test_sequoia_round_trip_and_tree_value(p: list[float]) -> None:
    s = cv.sequoia_from_ranked(p)
    assert sum(s) <= 1.0 + 1e-12
    assert cv.ranked_from_sequoia(s) == pytest.approx(p, rel=1e-6)
    # One level of width w: E = 1 + Σ s_r (the accepted child is one of them).
    tree = Tree.from_paths([[r] for r in range(len(p))])
    assert expected_tokens_tree(tree, p) == pytest.approx(1.0 + sum(s))


def test_worked_example_rate_is_not_per_position() -> None:
    # a_i = 0.8 at k = 4: AL = 1 + .8 + .64 + .512 + .4096 = 3.3616; vLLM's rate (AL-1)/k
    # = 0.5904; taking that rate as a_i would predict 2.27 tokens per step.
    al = cv.acceptance_length([0.8], 4)
    assert al == pytest.approx(3.3616)
    r = cv.vllm_acceptance_rate(al, 4)
    assert r == pytest.approx(0.5904)
    assert cv.acceptance_length([r], 4) == pytest.approx(2.2663, abs=1e-4)
    assert cv.acceptance_length([cv.fit_iid_from_length(al, 4)], 4) == pytest.approx(al)


def test_counts_with_short_drafts() -> None:
    # 10 drafts; position 1 drafted by all 10, accepted by 6; position 2 drafted by only
    # 4 of them (short n-gram matches), accepted by 3: a_2 = 3 / min(6, 4).
    a = cv.conditional_from_counts([6, 3], 10, [10, 4])
    assert a == pytest.approx([0.6, 0.75])
    assert cv.conditional_from_counts([6, 3], 10, None) == pytest.approx([0.6, 0.5])


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: cv.conditional_from_unconditional([0.5, 0.6]), "cannot rise"),
        (lambda: cv.ranked_from_sequoia([0.7, 0.5]), "sum to <= 1"),
        (lambda: cv.fit_iid_from_length(6.0, 4), "[1, k + 1 = 5]"),
        (lambda: cv.fit_iid_from_length(0.5, 4), "acceptance_length"),
        (lambda: cv.length_from_rate(59.0, 4), "not percent"),
        (lambda: cv.unconditional_from_conditional([1.2]), "per_position"),
        (lambda: cv.conditional_from_counts([5, 6], 10, None), "only 5 drafts"),
        (lambda: cv.vllm_acceptance_rate(2.0, 0), "k"),
    ],
)
def test_bad_input(call, needle: str) -> None:
    with pytest.raises(InputError) as e:
        call()
    assert needle in str(e.value)
