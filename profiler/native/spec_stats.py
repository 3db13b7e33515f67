"""Counters and times of speculative-decoding steps, in vLLM's vocabulary.

Per step (:class:`StepResult`) and accumulated (:class:`SpecStats`):

- ``num_drafts``: sequences that proposed at least one draft token in a step (vLLM counts
  one "draft" per speculating request per step);
- ``num_draft_tokens``: draft tokens proposed (chain drafts, or present tree nodes);
- ``num_accepted_tokens``: draft tokens accepted (bonus / recovered tokens excluded);
- ``accepted_per_position[i]``: drafts whose position ``i + 1`` (tree: depth ``i + 1``)
  was accepted; ``drafted_per_position[i]``: drafts that had a token at that position;
- mean accepted length = ``1 + num_accepted_tokens / num_drafts`` (bonus included);
- times: ``prefill_ms``, ``draft_ms``, ``verify_ms`` (the target's forward),
  ``overhead_ms`` (everything else in the step: acceptance maths, cache commits,
  bookkeeping) and ``total_ms``, wall clock.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

__all__ = ["SpecStats", "StepResult"]


@dataclass
class StepResult:
    """What one engine step did.

    Attributes:
        new_tokens: per request, the tokens emitted in this step (a prefill emits the
            request's first token).
        finished: requests that finished in this step (max_new_tokens or EOS).
        num_prefills, prefill_tokens: requests prefilled and their prompt tokens.
        batch_size: sequences in the draft + verify part; query_tokens: tokens per
            sequence in the verify forward (1 + drafts or 1 + tree nodes).
        the counters and times of the module docstring.
    """

    new_tokens: dict[Hashable, list[int]] = field(default_factory=dict)
    finished: list[Hashable] = field(default_factory=list)
    num_prefills: int = 0
    prefill_tokens: int = 0
    batch_size: int = 0
    query_tokens: int = 0
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)
    drafted_per_position: list[int] = field(default_factory=list)
    prefill_ms: float = 0.0
    draft_ms: float = 0.0
    verify_ms: float = 0.0
    overhead_ms: float = 0.0
    total_ms: float = 0.0

    @classmethod
    def empty(cls, num_positions: int) -> StepResult:
        return cls(
            accepted_per_position=[0] * num_positions, drafted_per_position=[0] * num_positions
        )

    def count(
        self,
        drafted: Sequence[int],
        accepted: Sequence[int],
        num_draft_tokens: int | None = None,
    ) -> None:
        """Add the verification outcome of the step's sequences.

        Args:
            drafted: per sequence, how many positions (chain) or levels (tree) it drafted.
            accepted: per sequence, accepted draft tokens.
            num_draft_tokens: draft tokens proposed, when not ``sum(drafted)`` (trees).
        """
        self.num_drafts += sum(1 for d in drafted if d > 0)
        self.num_draft_tokens += sum(drafted) if num_draft_tokens is None else num_draft_tokens
        self.num_accepted_tokens += sum(accepted)
        for d, a in zip(drafted, accepted, strict=True):
            for i in range(d):
                self.drafted_per_position[i] += 1
            for i in range(a):
                self.accepted_per_position[i] += 1

    @property
    def num_new_tokens(self) -> int:
        return sum(len(t) for t in self.new_tokens.values())


@dataclass
class SpecStats:
    """Counters and times summed over steps (see the module docstring).

    Args:
        num_positions: draft positions (k, or the tree's node count as an upper bound).
    """

    num_positions: int
    num_steps: int = 0
    num_decode_steps: int = 0
    num_seq_steps: int = 0
    num_prefills: int = 0
    num_generated_tokens: int = 0
    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = field(default_factory=list)
    drafted_per_position: list[int] = field(default_factory=list)
    prefill_ms: float = 0.0
    draft_ms: float = 0.0
    verify_ms: float = 0.0
    overhead_ms: float = 0.0
    total_ms: float = 0.0

    def __post_init__(self) -> None:
        self.accepted_per_position = self.accepted_per_position or [0] * self.num_positions
        self.drafted_per_position = self.drafted_per_position or [0] * self.num_positions

    def update(self, step: StepResult) -> None:
        """Add one step."""
        self.num_steps += 1
        self.num_decode_steps += step.batch_size > 0
        self.num_seq_steps += step.batch_size
        self.num_prefills += step.num_prefills
        self.num_generated_tokens += step.num_new_tokens
        self.num_drafts += step.num_drafts
        self.num_draft_tokens += step.num_draft_tokens
        self.num_accepted_tokens += step.num_accepted_tokens
        for i, (a, d) in enumerate(
            zip(step.accepted_per_position, step.drafted_per_position, strict=True)
        ):
            self.accepted_per_position[i] += a
            self.drafted_per_position[i] += d
        self.prefill_ms += step.prefill_ms
        self.draft_ms += step.draft_ms
        self.verify_ms += step.verify_ms
        self.overhead_ms += step.overhead_ms
        self.total_ms += step.total_ms

    @property
    def mean_accepted_len(self) -> float:
        """1 + accepted / drafts (vLLM's; bonus included); 1.0 when nothing was drafted."""
        return 1.0 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else 1.0

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (nan when nothing was drafted)."""
        if not self.num_draft_tokens:
            return float("nan")
        return self.num_accepted_tokens / self.num_draft_tokens

    @property
    def acceptance_per_position(self) -> list[float]:
        """vLLM's per-position rate: accepted at position i / drafts."""
        if not self.num_drafts:
            return [float("nan")] * self.num_positions
        return [a / self.num_drafts for a in self.accepted_per_position]

    @property
    def conditional_acceptance(self) -> list[float]:
        """a_i = P(position i accepted | positions < i accepted and i was drafted)."""
        out = []
        reached = self.num_drafts
        for a, d in zip(self.accepted_per_position, self.drafted_per_position, strict=True):
            # Sequences that reached position i with a draft there: drafted there and all
            # earlier positions accepted, i.e. min(reached, drafted).
            base = min(reached, d)
            out.append(a / base if base else float("nan"))
            reached = a
        return out

    @property
    def tokens_per_seq_step(self) -> float:
        """Decode tokens per sequence per decode step (prefill tokens excluded)."""
        decode_tokens = self.num_generated_tokens - self.num_prefills
        return decode_tokens / self.num_seq_steps if self.num_seq_steps else float("nan")

    def to_dict(self) -> dict:
        """Plain dict for JSON output: counters, derived rates, times (ms) per decode step."""
        per = max(self.num_decode_steps, 1)
        return {
            "num_steps": self.num_steps,
            "num_decode_steps": self.num_decode_steps,
            "num_prefills": self.num_prefills,
            "num_generated_tokens": self.num_generated_tokens,
            "num_drafts": self.num_drafts,
            "num_draft_tokens": self.num_draft_tokens,
            "num_accepted_tokens": self.num_accepted_tokens,
            "accepted_per_position": list(self.accepted_per_position),
            "drafted_per_position": list(self.drafted_per_position),
            "mean_accepted_len": self.mean_accepted_len,
            "acceptance_rate": self.acceptance_rate,
            "acceptance_per_position": self.acceptance_per_position,
            "conditional_acceptance": self.conditional_acceptance,
            "tokens_per_seq_step": self.tokens_per_seq_step,
            "prefill_ms_total": self.prefill_ms,
            "draft_ms_per_step": self.draft_ms / per,
            "verify_ms_per_step": self.verify_ms / per,
            "overhead_ms_per_step": self.overhead_ms / per,
            "total_ms": self.total_ms,
        }
