"""Per-request acceptance trajectories: the contract (``acceptance.trajectories`` of an
acceptance profile; docs/acceptance.md has the full page, with examples).

A trajectory is one recorded request, in one of two forms:

- ``steps``: what an engine did — one entry per verify step that drafted, in order:
  ``accepted[j]`` drafts accepted at step j (bonus excluded; a tree: the accepted path's
  depth), ``drafted[j]`` drafts proposed (default ``k``). This is vLLM's
  ``per_step_accepted`` / ``per_step_drafted`` (``--per-request-spec-decode-metrics
  detailed``). ``position[j]`` = output tokens generated before step j (the prefill's
  token counts, so the first decode step is at 1); when omitted it is derived as
  ``1, then + accepted + 1``. Steps that drafted nothing (an n-gram miss) are either
  recorded with ``drafted = 0`` or, as vLLM does, left out and counted in
  ``undrafted_steps``.
- ``positions``: what the drafter would do from *every* output position 1 ..
  ``output_tokens - 1``, as spectune's profiler measures it (exact by teacher forcing at
  T = 0): ``accepted[i]`` = the run of consecutive drafts accepted from position ``i + 1``
  (capped at ``k``), ``drafted[i]`` = drafts the drafter offers there (0 = no match), and
  optionally ``rank[i]`` = the rank of the target's token among the drafter's top
  candidates (-1 = none), from which any static tree can be replayed.

Units: tokens and steps (integers). Validation errors name the field, e.g.
``acceptance.trajectories.3.accepted.5: must be <= k (8), got 9``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .schema_base import MAX_SPEC_TOKENS, MAX_TOKENS, MAX_TREE_NODES, Frozen, NonNegInt

MAX_TRAJECTORY_STEPS = 100_000  # entries in one trajectory's arrays
MAX_TRAJECTORIES = 100_000  # trajectories in one profile

Ints = Annotated[list[NonNegInt], Field(max_length=MAX_TRAJECTORY_STEPS)]
Ranks = Annotated[list[Annotated[int, Field(ge=-1)]], Field(max_length=MAX_TRAJECTORY_STEPS)]


class Trajectory(Frozen):
    """One recorded request's acceptance, step by step (module docstring)."""

    form: Literal["steps", "positions"] = "steps"
    """steps: an engine's verify steps (vLLM per-request detailed metrics); positions: a
    run from every output position (spectune's profiler)."""
    k: Annotated[int, Field(gt=0, le=MAX_SPEC_TOKENS)]
    """steps: the draft length the engine ran with (num_spec_tokens; a tree: its node
    count); positions: the cap of every recorded run."""
    output_tokens: Annotated[int, Field(gt=1, le=MAX_TOKENS)]
    """Tokens the request generated (the prefill's first token included)."""
    prompt_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] | None = None
    """Prompt length, when known (for choosing trajectories by length)."""
    accepted: Ints = Field(min_length=1)
    """steps: accepted drafts per verify step (bonus excluded; a tree: accepted depth);
    positions: accepted run from each output position 1, 2, ... (capped at k)."""
    drafted: Ints | None = None
    """Drafts proposed per step / offered at each position (0 = nothing to propose);
    default k everywhere."""
    position: Ints | None = None
    """steps only: output tokens generated before each step (strictly increasing, >= 1);
    default 1, then + accepted + 1."""
    rank: Ranks | None = None
    """positions only: rank of the target's token among the drafter's ranked candidates
    at each position (0 = top; -1 = not among them): replays any static tree."""
    tree: Annotated[list[list[NonNegInt]], Field(max_length=MAX_TREE_NODES)] | None = None
    """steps only: the static tree the engine verified (paths of ranks); ``accepted`` is
    then the accepted path's depth."""
    undrafted_steps: NonNegInt = 0
    """steps only: decode steps left out of the arrays because nothing was drafted (vLLM
    records drafting steps only)."""

    @model_validator(mode="after")
    def _consistent(self) -> Trajectory:
        n = len(self.accepted)
        for name in ("drafted", "position", "rank"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(
                    f"@{name}: must have one entry per accepted entry ({n}), got {len(arr)}"
                )
        if self.drafted is not None:
            for i, d in enumerate(self.drafted):
                if d > self.k:
                    raise ValueError(f"@drafted.{i}: must be <= k ({self.k}), got {d}")
        cap = self.drafted if self.drafted is not None else [self.k] * n
        for i, (a, d) in enumerate(zip(self.accepted, cap, strict=True)):
            if a > d:
                what = f"drafted ({d})" if self.drafted is not None else f"k ({self.k})"
                raise ValueError(f"@accepted.{i}: must be <= {what}, got {a}")
        if self.form == "positions":
            self._check_positions(n)
        else:
            self._check_steps(n)
        return self

    def _check_positions(self, n: int) -> None:
        for name in ("position", "tree"):
            if getattr(self, name) is not None:
                raise ValueError(f"@{name}: only a steps trajectory has it")
        if self.undrafted_steps:
            raise ValueError("@undrafted_steps: only a steps trajectory has it")
        if n > self.output_tokens - 1:
            raise ValueError(
                f"@accepted: one entry per output position 1..{self.output_tokens - 1} at "
                f"most, got {n}: the trajectory is longer than its request"
            )
        for i, a in enumerate(self.accepted):
            room = self.output_tokens - (i + 1)  # tokens left from position i + 1
            if a > room:
                raise ValueError(
                    f"@accepted.{i}: a run of {a} from position {i + 1} passes the "
                    f"request's last token ({self.output_tokens} tokens)"
                )

    def _check_steps(self, n: int) -> None:
        if self.rank is not None:
            raise ValueError("@rank: only a positions trajectory has it")
        if self.tree is not None:
            from .tree import Tree  # a tree's own errors name their problem

            try:
                tree = Tree.from_paths(self.tree)
            except Exception as e:  # InputError: re-raised as a field error
                raise ValueError(f"@tree: {getattr(e, 'message', e)}") from None
            for i, a in enumerate(self.accepted):
                if a > tree.max_depth:
                    raise ValueError(
                        f"@accepted.{i}: must be <= the tree's depth ({tree.max_depth}), got {a}"
                    )
        pos = self.step_positions()
        for i in range(1, n):
            if pos[i] <= pos[i - 1]:
                raise ValueError(f"@position.{i}: must increase, got {pos[i]} after {pos[i - 1]}")
        if pos[0] < 1:
            raise ValueError("@position.0: must be >= 1 (the prefill emits the first token)")
        if pos[-1] >= self.output_tokens:
            field = "position" if self.position is not None else "accepted"
            raise ValueError(
                f"@{field}: step {n - 1} starts at output position {pos[-1]} but the request "
                f"has {self.output_tokens} tokens: the trajectory is longer than its request"
            )

    def step_positions(self) -> list[int]:
        """Output tokens generated before each step (given, or derived)."""
        if self.position is not None:
            return list(self.position)
        out, p = [], 1
        for a in self.accepted:
            out.append(p)
            p += a + 1
        return out
