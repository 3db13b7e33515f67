"""Replaying recorded acceptance trajectories at any draft shape (docs/acceptance.md).

A recorded request (:class:`~.trajectory_schema.Trajectory`) becomes a :class:`Dense`
record over its output positions p = 1 .. O−1 (p = tokens generated before a step; the
prefill emitted token 0):

- ``run[p−1]``: drafts a chain step starting at p would get accepted, known up to ``cap``;
- ``drafted[p−1]``: drafts the drafter offers there (0 = nothing: an n-gram miss);
- ``rank[p−1]`` (optional): rank of the target's token at p among the drafter's ranked
  candidates (−1 = none), which is what a static tree's walk needs.

A ``positions`` trajectory is that record already. A ``steps`` trajectory (an engine's
verify steps at its k) is densified: at a recorded step's position the run is its
accepted count; inside an accepted run the run continues to that run's end (a
deterministic drafter sees the same prefix there); the position of a rejected draft has
run 0, and so has the one unknown, the bonus position of a fully accepted step. Steps the
engine did not record because nothing was drafted (``undrafted_steps``) are spread evenly
over the record as one-token steps.

Replay of a chain of k (:func:`replay_chain`): from p = 1, a step drafts
d = min(k, drafted) and accepts a = min(run, d), emitting a + 1 tokens, until the
record's end. No draft is capped by the request's end (vLLM drafts k and cuts the output)
unless ``end`` is given (spectune's live engine: accepted + bonus never pass ``end``).
Trees (:func:`replay_tree`): the walk descends into the child whose rank equals the
recorded rank at each depth. Units: tokens, steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .trajectory_schema import Trajectory
from .tree import Tree


@dataclass(frozen=True)
class Dense:
    """One trajectory over its output positions (module docstring)."""

    output_tokens: int
    cap: int  # runs are known up to this many drafts
    run: np.ndarray  # int64 [O-1]
    drafted: np.ndarray  # int64 [O-1]
    rank: np.ndarray | None = None  # int64 [O-1]
    tree: Tree | None = None  # a steps record of a tree engine: replays that tree only
    tree_steps: np.ndarray | None = None  # its accepted depth per recorded step


def densify(tr: Trajectory) -> Dense:
    """The dense record of one trajectory (module docstring)."""
    n_pos = tr.output_tokens - 1
    acc = np.asarray(tr.accepted, dtype=np.int64)
    drafted = np.asarray(tr.drafted if tr.drafted is not None else [tr.k] * len(acc), np.int64)
    if tr.form == "positions":
        run = np.zeros(n_pos, dtype=np.int64)
        dft = np.zeros(n_pos, dtype=np.int64)
        run[: len(acc)] = acc
        dft[: len(acc)] = drafted
        rank = None
        if tr.rank is not None:
            rank = np.full(n_pos, -1, dtype=np.int64)
            rank[: len(acc)] = tr.rank
        return Dense(tr.output_tokens, tr.k, run, dft, rank)
    if tr.tree is not None:
        tree = Tree.from_paths(tr.tree)
        z = np.zeros(n_pos, dtype=np.int64)
        return Dense(tr.output_tokens, tr.k, z, z, None, tree, acc)
    pos = np.asarray(tr.step_positions(), dtype=np.int64)
    if tr.undrafted_steps and tr.position is None:
        pos = _with_misses(acc, tr.undrafted_steps)
    run = np.zeros(n_pos, dtype=np.int64)
    dft = np.zeros(n_pos, dtype=np.int64)  # positions no step covers: nothing drafted
    for p, a, d in zip(pos.tolist(), acc.tolist(), drafted.tolist(), strict=True):
        last = min(p + a, n_pos)  # the run covers p..p+a (p+a: rejected or bonus)
        idx = np.arange(p, last + 1)
        run[idx - 1] = np.minimum(p + a - idx, tr.k)
        dft[idx - 1] = d
    return Dense(tr.output_tokens, tr.k, run, dft)


def _with_misses(acc: np.ndarray, misses: int) -> np.ndarray:
    """Positions of the recorded steps when ``misses`` one-token steps (not recorded) are
    spread evenly among them: miss m goes before recorded step ⌊m·(S+1)/misses⌋."""
    n = len(acc)
    before = np.zeros(n + 1, dtype=np.int64)  # misses right before step j (j = n: after)
    np.add.at(before, (np.arange(misses) * (n + 1)) // misses, 1)
    pos = np.empty(n, dtype=np.int64)
    p = 1
    for j in range(n):
        p += int(before[j])
        pos[j] = p
        p += int(acc[j]) + 1
    return pos


def replay_chain(
    d: Dense, k: int, end: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chain drafting with ``k`` drafts over one record.

    Args:
        d: the dense record.
        k: drafts per step (k <= ``d.cap``).
        end: stop after this many output tokens and cap each step's drafts so that
            accepted + bonus never pass it (the live engine's rule); None = the record's
            own length, uncapped.

    Returns:
        (accepted [S], drafted [S], cap [S]) per step: tokens emitted = accepted + 1;
        drafted = min(cap, drafts offered); cap = the drafts the step could take (k, or
        fewer at ``end``).
    """
    n = len(d.run)
    stop = n + 1 if end is None else min(end, n + 1)
    run, dft = d.run.tolist(), d.drafted.tolist()
    acc_out: list[int] = []
    dft_out: list[int] = []
    cap_out: list[int] = []
    p = 1
    while p < stop:
        cap = k if end is None else min(k, stop - p - 1)
        drafts = min(cap, dft[p - 1])
        a = min(run[p - 1], drafts)
        acc_out.append(a)
        dft_out.append(drafts)
        cap_out.append(cap)
        p += a + 1
    return tuple(np.asarray(x, dtype=np.int64) for x in (acc_out, dft_out, cap_out))  # type: ignore[return-value]


@dataclass
class TreeVisits:
    """What greedy drafting with one static tree visits over a set of records."""

    accepted: list[np.ndarray]  # per record, accepted depth per step
    checked_by_rank: np.ndarray  # [W] visited checks of a rank-r child
    accepted_by_rank: np.ndarray  # [W] of which accepted

    @property
    def steps(self) -> int:
        return sum(len(a) for a in self.accepted)

    @property
    def accepted_tokens(self) -> int:
        """Drafts accepted (bonus tokens excluded)."""
        return int(sum(int(a.sum()) for a in self.accepted))

    def ranked(self) -> list[float]:
        """p_r over the visited checks (a rank never checked gets 0)."""
        return [
            round(float(x / y), 4) if y else 0.0
            for x, y in zip(self.accepted_by_rank, self.checked_by_rank, strict=True)
        ]


def replay_tree(ranks: list[np.ndarray], tree: Tree, end: int | None = None) -> TreeVisits:
    """Greedy static-tree drafting over records of ranks (rank of the target's token
    among the drafter's candidates at each position, −1 = none): from the position where
    the last step stopped, walk the children in rank order, descending into the child
    whose rank is the recorded one; never past a record's last position.

    ``end``: stop each record after this many tokens while still checking drafts past it
    (a tree step is not capped; its tokens are cut when appended): the records must then
    reach ``end`` + the tree's depth.
    """
    children: dict[int, list[tuple[int, int]]] = {}
    for i, (par, rank) in enumerate(zip(tree.parents, tree.ranks, strict=True)):
        children.setdefault(int(par), []).append((int(rank), i))
    for kids in children.values():
        kids.sort()
    width = max(tree.ranks, default=0) + 1
    out = TreeVisits([], np.zeros(width, dtype=np.int64), np.zeros(width, dtype=np.int64))
    for m in ranks:
        m_l = m.tolist()
        n = len(m_l)
        stop = n if end is None else min(n, end - 1)  # entry 0 = position 1
        steps: list[int] = []
        s = 0
        while s < stop:
            node, a = -1, 0
            while a < n - s - 1 and node in children:
                nxt = None
                for rank, child in children[node]:
                    out.checked_by_rank[rank] += 1
                    if m_l[s + a] == rank:
                        out.accepted_by_rank[rank] += 1
                        nxt = child
                        break
                if nxt is None:
                    break
                node, a = nxt, a + 1
            steps.append(a)
            s += a + 1
        out.accepted.append(np.asarray(steps, dtype=np.int64))
    return out


def pooled_per_position(
    accepted: list[np.ndarray], k: int, caps: list[np.ndarray] | None = None, digits: int = 6
) -> list[float]:
    """a_1..a_k over every replayed step: a_i = #(a >= i) / #(a >= i − 1 and cap >= i)
    (cap = the drafts a step could take; default k), so a step that could draft but drafted
    nothing counts as a rejection at position 1 and 1 + Σ_i Π_{j≤i} a_j is the pooled
    tokens per step. A position no step reached repeats the last value.

    Args:
        accepted: per record, accepted drafts per step.
        k: positions returned.
        caps: per record, each step's cap (:func:`replay_chain`), or None.
        digits: rounding of the result.
    """
    if not accepted or k < 1:
        return [0.0] * max(k, 0)
    a = np.concatenate(accepted)
    c = np.concatenate(caps) if caps is not None else np.full(a.shape, k)
    out: list[float] = []
    for i in range(1, k + 1):
        reached = int(((a >= i - 1) & (c >= i)).sum())
        if reached:
            out.append(round(float((a >= i).sum() / reached), digits))
        else:
            out.append(out[-1] if out else 0.0)
    return out


def length_buckets(lengths: np.ndarray) -> np.ndarray:
    """Output-length bucket of each length: ⌊log2(n)⌋ (1 → 0, 2–3 → 1, 4–7 → 2, ...)."""
    return np.floor(np.log2(np.maximum(np.asarray(lengths, dtype=float), 1.0))).astype(np.int64)


def choose_by_length(
    record_lengths: np.ndarray, request_lengths: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One record per request, uniform among the records in the request's length bucket
    (the nearest non-empty bucket, the longer on a tie), one uniform per request.

    Returns:
        int64 [N] record indices.
    """
    rec_b = length_buckets(record_lengths)
    req_b = length_buckets(request_lengths)
    order = np.argsort(rec_b, kind="stable")
    buckets, first, count = np.unique(rec_b[order], return_index=True, return_counts=True)
    # nearest non-empty bucket: distance, then prefer the longer (larger) bucket
    dist = np.abs(req_b[:, None] - buckets[None, :]) * 2 - (buckets[None, :] > req_b[:, None])
    pick = np.argmin(dist, axis=1)
    u = rng.random(len(request_lengths))
    within = np.minimum((u * count[pick]).astype(np.int64), count[pick] - 1)
    return order[first[pick] + within]


# --------------------------------------------------------------------------- a profile's set

_DENSE: dict[int, tuple[object, list[Dense]]] = {}  # id(trajectories) -> (list kept alive, records)
_REPLAYS: dict[tuple[int, object], RecordedSteps | str] = {}


def _dense_records(trajectories: list[Trajectory]) -> list[Dense]:
    hit = _DENSE.get(id(trajectories))
    if hit is not None and hit[0] is trajectories:
        return hit[1]
    if len(_DENSE) >= 16:
        _DENSE.clear()
        _REPLAYS.clear()
    records = [densify(t) for t in trajectories]
    _DENSE[id(trajectories)] = (trajectories, records)
    return records


@dataclass(frozen=True)
class RecordedSteps:
    """A profile's trajectories replayed at one draft shape: per record, its steps.

    Attributes:
        lengths: [R] output tokens of each record.
        accepted, drafted: per record, accepted and drafted drafts per replayed step.
        per_position: pooled a_i of a chain (:func:`pooled_per_position`), or the tree's
            pooled ranked p_r.
    """

    lengths: np.ndarray
    accepted: list[np.ndarray]
    drafted: list[np.ndarray]
    per_position: list[float]

    def draw(
        self, output_tokens: np.ndarray, rng: np.random.Generator, identical: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every request's steps, as cumulative counts (see
        :func:`~.acceptance.draw_request_steps`): each request replays one record chosen
        by :func:`choose_by_length` (one draw; ``identical``: the first request's record
        for all), again from its start when the request outlives it.

        Returns:
            (cum tokens, off, cum drafted tokens, cum drafting steps), the cumulative
            arrays int64 [Σ(out + 1)] with 0 at each request's leading slot.
        """
        out = np.asarray(output_tokens, dtype=np.int64)
        if identical and out.size:
            idx = np.repeat(choose_by_length(self.lengths, out[:1], rng), out.size)
        else:
            idx = choose_by_length(self.lengths, out, rng)
        t_len = np.array([len(a) for a in self.accepted], dtype=np.int64)
        t_off = np.concatenate(([0], np.cumsum(t_len)[:-1]))
        flat_tok = np.concatenate(self.accepted) + 1
        flat_dft = np.concatenate(self.drafted)
        lens = out + 1
        off = np.zeros(out.shape[0], dtype=np.int64)
        if out.shape[0]:
            off[1:] = np.cumsum(lens)[:-1]
        starts = np.repeat(off, lens)
        rec = np.repeat(idx, lens)
        step = np.arange(starts.shape[0], dtype=np.int64) - starts - 1  # -1 at the lead slot
        src = t_off[rec] + np.mod(step, t_len[rec])
        lead = step < 0
        cums = []
        for vals in (flat_tok[src], flat_dft[src], (flat_dft[src] > 0).astype(np.int64)):
            vals[lead] = 0
            c = np.cumsum(vals)
            cums.append(c - c[starts])
        return cums[0], off, cums[1], cums[2]


def recorded_steps(
    trajectories: list[Trajectory], k: int, tree: Tree | None
) -> RecordedSteps | str:
    """The trajectories replayed at a chain of ``k`` (``tree`` None) or at ``tree``, or
    why they cannot be (a string for a warning): a k above a record's cap, a tree that a
    record cannot replay (no ranks, or a steps record of another tree)."""
    records = _dense_records(trajectories)  # first: it may clear both caches
    key = (id(trajectories), k if tree is None else tuple(map(tuple, tree.paths())))
    hit = _REPLAYS.get(key)
    if hit is not None:
        return hit
    result = _replay_all(records, k, tree)
    _REPLAYS[key] = result
    return result


def _replay_all(records: list[Dense], k: int, tree: Tree | None) -> RecordedSteps | str:
    lengths = np.array([d.output_tokens for d in records], dtype=np.int64)
    if tree is None:
        if any(d.tree is not None for d in records):
            return "some trajectories are a tree engine's steps, not a chain's"
        top = min(d.cap for d in records)
        if k > top:
            return f"the trajectories know runs up to {top} drafts, not k = {k}"
        steps = [replay_chain(d, k) for d in records]
        acc = [s[0] for s in steps]
        return RecordedSteps(lengths, acc, [s[1] for s in steps], pooled_per_position(acc, k))
    if all(d.tree is not None and d.tree == tree for d in records):
        acc = [d.tree_steps for d in records if d.tree_steps is not None]
        nodes = [np.full(len(a), tree.num_nodes, dtype=np.int64) for a in acc]
        return RecordedSteps(lengths, acc, nodes, [])
    if any(d.rank is None for d in records):
        return "the trajectories record no candidate ranks for this tree"
    visits = replay_tree([d.rank for d in records if d.rank is not None], tree)
    nodes = [np.full(len(a), tree.num_nodes, dtype=np.int64) for a in visits.accepted]
    return RecordedSteps(lengths, visits.accepted, nodes, visits.ranked())
