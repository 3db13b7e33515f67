"""Trajectory replay: exact at the recorded shape, position-consistent at smaller k, the
length-bucket choice, wrap-around, trees, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectune.simulator.acceptance import AcceptanceModel, draw_steps
from spectune.simulator.schema import AcceptanceSpec
from spectune.simulator.trajectory import (
    choose_by_length,
    densify,
    length_buckets,
    pooled_per_position,
    replay_chain,
    replay_tree,
)
from spectune.simulator.trajectory_schema import Trajectory
from spectune.simulator.tree import Tree


def runs_from_matches(match: np.ndarray, cap: int) -> list[int]:
    """A deterministic drafter: run from position p = consecutive matches from p."""
    n = len(match)
    out = []
    for p in range(n):
        r = 0
        while p + r < n and match[p + r] and r < cap:
            r += 1
        out.append(min(r, n - p))
    return out


matches = st.lists(st.booleans(), min_size=2, max_size=80).map(np.array)


def positions_record(match: np.ndarray, cap: int = 8) -> Trajectory:
    # entry p-1 = position p; the request has len(match) + 1 tokens
    return Trajectory(
        form="positions",
        k=cap,
        output_tokens=len(match) + 1,
        accepted=runs_from_matches(match, cap),
    )


@settings(max_examples=80, deadline=None)
@given(match=matches, k=st.integers(1, 8))
def test_positions_replay_is_the_literal_walk(match: np.ndarray, k: int) -> None:
    rec = positions_record(match)
    acc, dft, cap = replay_chain(densify(rec), k)
    p, want = 1, []
    while p < rec.output_tokens:
        a = 0
        while a < k and p - 1 + a < len(match) and match[p - 1 + a]:
            a += 1
        want.append(a)
        p += a + 1
    assert acc.tolist() == want
    assert (dft == k).all() and (cap == k).all()


@settings(max_examples=80, deadline=None)
@given(
    acc=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    extra=st.integers(1, 10),
)
def test_steps_replay_at_the_recorded_k_reproduces_the_steps(acc: list[int], extra: int) -> None:
    out = 1 + sum(a + 1 for a in acc[:-1]) + extra  # the last step starts before the end
    rec = Trajectory(k=5, output_tokens=out, accepted=acc)
    got, _, _ = replay_chain(densify(rec), 5)
    assert got.tolist()[: len(acc)] == acc


@settings(max_examples=80, deadline=None)
@given(match=matches, k=st.integers(1, 7))
def test_steps_replay_at_smaller_k_follows_positions(match: np.ndarray, k: int) -> None:
    # Record what a k = 8 engine did, then replay at k < 8: the same as the full record's
    # replay at k, except where the walk lands on the bonus position of a fully accepted
    # recorded step (unknown there: counted as rejected, never more than the truth).
    truth = densify(positions_record(match))
    acc8, _, _ = replay_chain(truth, 8)
    steps = Trajectory(k=8, output_tokens=truth.output_tokens, accepted=acc8.tolist())
    got, _, _ = replay_chain(densify(steps), k)
    want, _, _ = replay_chain(truth, k)
    if (acc8 < 8).all():
        assert got.tolist() == want.tolist()


def test_undrafted_steps_are_spread_as_one_token_steps() -> None:
    rec = Trajectory(k=4, output_tokens=40, accepted=[4, 4, 4], undrafted_steps=3)
    acc, dft, _ = replay_chain(densify(rec), 4)
    assert (acc[dft > 0] == 4).all() and (dft == 0).sum() >= 3
    assert acc.sum() + len(acc) >= 39  # the walk covers the request


def test_pooled_per_position_is_the_mean_tokens_per_step() -> None:
    steps = [np.array([3, 0, 1, 3]), np.array([0, 0, 2])]
    a = pooled_per_position(steps, 3)
    assert 1 + np.cumprod(a).sum() == pytest.approx(1 + np.concatenate(steps).mean())
    # with caps: a step that could only take 1 draft does not count at position 2
    a_cap = pooled_per_position([np.array([1, 1])], 3, [np.array([3, 1])])
    assert a_cap[:2] == [1.0, 0.0]


def test_length_buckets_and_choice() -> None:
    assert length_buckets(np.array([1, 2, 3, 4, 7, 8, 200])).tolist() == [0, 1, 1, 2, 2, 3, 7]
    records = np.array([3, 5, 6, 100])  # buckets 1, 2, 2, 6
    rng = np.random.default_rng(0)
    pick = choose_by_length(records, np.full(2000, 4), rng)  # bucket 2: records 1 and 2
    assert set(pick.tolist()) == {1, 2}
    assert abs((pick == 1).mean() - 0.5) < 0.05
    assert set(choose_by_length(records, np.array([30]), rng).tolist()) == {3}  # nearest: 6
    # equally near buckets 1 and 2 from 0 -> the longer... bucket 1 is nearer to 0 here
    assert choose_by_length(records, np.array([1]), rng).tolist() == [0]
    # reproducible per seed
    a = choose_by_length(records, np.full(50, 5), np.random.default_rng(7))
    b = choose_by_length(records, np.full(50, 5), np.random.default_rng(7))
    assert a.tolist() == b.tolist()


def _spec(*trajs: dict, **extra) -> AcceptanceSpec:
    return AcceptanceSpec(per_position=[0.5], trajectories=list(trajs), **extra)


def test_draw_wraps_a_short_record_and_keeps_requests_apart() -> None:
    spec = _spec({"k": 2, "output_tokens": 6, "accepted": [2, 0, 1]})  # 3, 1, 2 tokens
    model = AcceptanceModel.for_chain(spec, 2)
    g = np.random.default_rng(0).spawn(2)
    d = draw_steps(model, np.array([10, 4]), *g)
    block0 = d.cum[d.off[0] : d.off[0] + 11].tolist()
    assert block0 == [0, 3, 4, 6, 9, 10, 12, 15, 16, 18, 21]  # 3, 1, 2 again and again
    assert d.cum[d.off[1] : d.off[1] + 5].tolist() == [0, 3, 4, 6, 9]
    assert d.drafted_cum is None  # a model drafter always drafts k


def test_identical_requests_share_one_record() -> None:
    spec = _spec(
        {"k": 2, "output_tokens": 20, "accepted": [2, 2, 2, 2]},
        {"k": 2, "output_tokens": 20, "accepted": [0] * 19},
    )
    model = AcceptanceModel.for_chain(spec, 2)
    d = draw_steps(model, np.full(30, 12), *np.random.default_rng(1).spawn(2), identical=True)
    blocks = d.cum.reshape(30, 13)
    assert (blocks == blocks[0]).all()


def test_tree_replay_walks_ranks() -> None:
    tree = Tree.from_paths([[0], [1], [0, 0], [1, 0]])
    ranks = [np.array([1, 0, 0, -1, 0, 0, 2, 0])]
    v = replay_tree(ranks, tree)
    # p=1: rank 1 (node [1]) then rank 0 under it ([1,0]) -> depth 2; p=4: -1 -> 0;
    # p=5: 0, 0 -> depth 2; p=8: last position, nothing after -> 0
    assert v.accepted[0].tolist() == [2, 0, 2, 0]
    assert v.checked_by_rank.tolist() == [5, 2]  # p=8 checks nothing (no room)
    assert v.accepted_by_rank.tolist() == [3, 1]
    rec = Trajectory(
        form="positions",
        k=8,
        output_tokens=9,
        accepted=[0, 2, 1, 0, 2, 1, 0, 0],
        rank=ranks[0].tolist(),
    )
    model = AcceptanceModel.for_tree(AcceptanceSpec(per_position=[0.5], trajectories=[rec]), tree)
    assert model.recorded is not None and model.recorded.accepted[0].tolist() == [2, 0, 2, 0]
    assert model.mean_tokens_per_step() == pytest.approx(1 + model.survival(np.zeros(1))[0].sum())


def test_fallbacks_warn() -> None:
    spec = _spec({"k": 2, "output_tokens": 6, "accepted": [2, 0, 1]})
    model = AcceptanceModel.for_chain(spec, 4)
    assert model.recorded is None and "up to 2 drafts, not k = 4" in model.warnings[0]
    tree = Tree.from_paths([[0], [1]])
    with pytest.raises(Exception, match="ranked"):
        AcceptanceModel.for_tree(spec, tree)  # no ranks and no ranked vector
    ok = AcceptanceModel.for_tree(spec.model_copy(update={"ranked": [0.5, 0.2]}), tree)
    assert ok.recorded is None and "no candidate ranks" in ok.warnings[0]
