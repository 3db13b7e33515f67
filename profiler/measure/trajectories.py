"""Per-request acceptance records from the profiler's teacher-forced arrays.

Each measured request becomes a ``positions`` trajectory (docs/acceptance.md): from every
output position p = 1 .. O−1, the run of drafts a chain step starting there gets accepted
(capped at the profile's K), the drafts the drafter offers there (0 = an n-gram miss),
and, at T = 0, the rank of the target's token among the drafter's ranked candidates
(−1 = none). At T = 0 the record is exact (teacher forcing on the greedy trajectory); at
T > 0 each position's run is one seeded draw of sequential Bernoulli trials with the
measured acceptance probabilities.

Engine counters and per-k vectors are replays of these records
(:mod:`spectune.simulator.trajectory`), with the live engine's rule that a step never
drafts past the request's last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from spectune.simulator.trajectory import densify, pooled_per_position
from spectune.simulator.trajectory import replay_chain as replay_record
from spectune.simulator.trajectory_schema import Trajectory


class RequestAcceptance(Protocol):
    """What a record needs of :class:`.acceptance.RequestAcceptance` (one request's
    teacher-forced arrays)."""

    acc: np.ndarray  # [starts, K] P(draft i from start s accepted | 1..i-1 accepted)
    valid: np.ndarray  # [starts, K] bool
    rank_num: np.ndarray  # [starts, W]
    drafted: np.ndarray  # [starts] drafts offered


def runs(req: RequestAcceptance, rng: np.random.Generator | None = None) -> np.ndarray:
    """Accepted run from each start (int64 [S], capped at K): consecutive drafts accepted,
    exact at T = 0 (``acc`` is 0/1), one draw per draft with ``rng`` at T > 0."""
    acc = req.acc * req.valid
    ok = acc >= 1.0 if rng is None else rng.random(acc.shape) < acc
    return np.cumprod(ok, axis=1).sum(axis=1).astype(np.int64)


def match_rows(req: RequestAcceptance) -> np.ndarray:
    """Rank of the trajectory's token among the drafter's candidates at each start (−1 =
    not among them), from the greedy profile's ``rank_num`` (0/1)."""
    hit = req.rank_num >= 1.0
    return np.where(hit.any(1), hit.argmax(1), -1).astype(np.int64)


def positions_record(
    req: RequestAcceptance, rng: np.random.Generator | None = None, ranks: bool = True
) -> Trajectory:
    """The request's ``positions`` trajectory (module docstring); ``ranks`` at T = 0 only."""
    k = req.acc.shape[1]
    return Trajectory(
        form="positions",
        k=k,
        output_tokens=len(req.acc) + 1,
        accepted=runs(req, rng).tolist(),
        drafted=np.minimum(req.drafted, k).tolist(),
        rank=match_rows(req).tolist() if ranks else None,
    )


def replay_chain(
    req: RequestAcceptance, k: int, rng: np.random.Generator | None = None
) -> tuple[int, int, int, list[int]]:
    """Replay the live engine's chain drafting with ``k`` drafts on one request.

    The engine caps drafts so that accepted + bonus never pass the last token, and each
    step emits accepted + 1 tokens. At T = 0 the replay is exact.

    Returns:
        (steps with drafts, draft tokens, accepted tokens, accepted per position [k]).
    """
    return record_counts(positions_record(req, rng, ranks=False), k)


def record_counts(rec: Trajectory, k: int) -> tuple[int, int, int, list[int]]:
    """The live engine's counters for chain drafting with ``k`` over one record:
    (steps with drafts, draft tokens, accepted tokens, accepted per position [k])."""
    acc, dft, _ = replay_record(densify(rec), k, end=rec.output_tokens)
    per_pos = [int((acc >= i).sum()) for i in range(1, k + 1)]
    return int((dft > 0).sum()), int(dft.sum()), int(acc.sum()), per_pos


def visited_per_position(reqs: Sequence[RequestAcceptance], k: int) -> list[float]:
    """a_1..a_k over the steps greedy chain drafting with ``k`` visits, the live engine's
    cap at each request's end included; a step that could draft but found nothing (an
    n-gram miss) counts as a rejection. Positions never reached repeat the last value."""
    accepted, caps = [], []
    for r in reqs:
        rec = positions_record(r, ranks=False)
        acc, _, cap = replay_record(densify(rec), k, end=rec.output_tokens)
        accepted.append(acc)
        caps.append(cap)
    return pooled_per_position(accepted, k, caps, digits=4)
