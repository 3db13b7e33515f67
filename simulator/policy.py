"""Speculation policies: the draft length k of each engine iteration, chosen at run time.

A policy sees what an engine sees: the number of sequences in the last iteration and the
accepted drafts it observed itself (never the pre-drawn future). The engine asks
:meth:`Policy.decide` before every iteration, tells it what each run of iterations
accepted (:meth:`Policy.observe`), and, before planning a run of decode-only iterations,
asks :meth:`Policy.horizon` how many of them keep the same k: an iteration after which the
policy may change k is a decision point, so event skipping stays iteration-exact.

Draws at any k from one set of draws. The engine pre-draws every request's steps at the
largest k the policy may choose (``kmax``). A chain step accepts L = #{d : U < S[d]} of
kmax drafts; at k <= kmax the same uniform accepts min(L, k) (S is the same survival
vector, cut at k), so :func:`draws_at` turns the kmax draws into exact draws at k for every
k, with the same random numbers (a step's draw does not depend on the k it runs at). A
drafter that proposed d <= kmax drafts proposes min(d, k) at k.

The policies themselves (vLLM's batch-size schedule, TensorRT-LLM's lookup and acceptance
gate, SGLang's EMA tiers, the goodput rule) live in :mod:`.policy_rules`, each citing the
engine code it follows.

The decision lags one iteration, as in vLLM (the k drafted at the end of iteration t is
verified in iteration t + 1 and chosen from iteration t's scheduled requests); the DES
prices an iteration's draft and verify passes together at that k.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .acceptance import StepDraws
from .stepcost import StepCost


def draws_at(draws: StepDraws, k: int, kmax: int) -> StepDraws:
    """The draws at ``k`` from the draws at ``kmax`` (module docstring).

    Args:
        draws: draws at kmax (cumulative per request block, leading slot 0).
        k: 0 <= k <= kmax.
        kmax: the draft length the draws were made at.

    Returns:
        Draws at k: the same object when k == kmax; drafted counts whenever the kmax draws
        had them.
    """
    if k == kmax:
        return draws
    cum = draws.cum
    total = cum.shape[0]
    lead = np.zeros(total, dtype=bool)
    lead[draws.off] = True
    starts = np.maximum.accumulate(np.where(lead, np.arange(total), 0))
    tok = np.diff(cum, prepend=0)
    tok[lead] = 0
    tok_k = np.where(lead, 0, np.minimum(tok - 1, k) + 1)

    def block_cum(vals: np.ndarray) -> np.ndarray:
        c = np.cumsum(vals)
        return c - c[starts]

    if draws.drafted_cum is None:
        return StepDraws(block_cum(tok_k), draws.off)
    d = np.diff(draws.drafted_cum, prepend=0)
    d[lead] = 0
    d_k = np.minimum(d, k)
    steps = (d_k > 0).astype(np.int64)
    return StepDraws(block_cum(tok_k), draws.off, block_cum(d_k), block_cum(steps))


class Seen(NamedTuple):
    """What an engine's own counters report after each of ``n`` iterations."""

    accepted: list[int]  # [n] accepted drafts summed over the decode batch
    rejected: list[int]  # [n] sequences that drafted and accepted fewer than they drafted
    drafted: list[int]  # [n] drafted tokens summed over the decode batch

    def head(self, m: int) -> Seen:
        """The first ``m`` iterations."""
        return Seen(self.accepted[:m], self.rejected[:m], self.drafted[:m])


class Policy:
    """Chooses k per iteration (module docstring). Subclasses implement :meth:`decide`;
    those that learn from accepted counts set :attr:`observes` and implement
    :meth:`observe` and :meth:`horizon` (stepping a copy of their state over the run).

    Attributes:
        kmax: the largest k the policy may choose (the draws are made at it).
        counts: which batch size ``decide`` is given: ``scheduled`` (the sequences in
            the last iteration, vLLM), ``decoding`` (the decode batch about to run,
            SGLang) or ``running`` (the requests admitted before this iteration's
            scheduling, TensorRT-LLM). In a decode-only run all three are the batch.
    """

    observes = False
    counts = "scheduled"

    def __init__(self, kmax: int):
        self.kmax = int(kmax)

    def decide(self, batch: int) -> int:
        """k for the next iteration, given the batch size it counts by."""
        raise NotImplementedError

    def observe(self, batch: int, k: int, seen: Seen) -> None:
        """Book a run of iterations at ``k`` with ``batch`` decoding sequences."""

    def horizon(self, batch: int, k: int, seen: Seen) -> int:
        """Of the next ``n`` decode-only iterations (``batch`` sequences, all at ``k``), how
        many run before the policy may choose another k: m in 1..n such that the decisions
        after iterations 1..m-1 (having observed them) all return k. Here: a policy that
        does not observe decides by the batch size alone, constant over a run."""
        return len(seen.accepted) if self.decide(batch) == k else 1


class Speculation:
    """A policy with the per-step draws and the iteration pricer at each k it picks
    (built lazily, kept for the run).

    Args:
        policy: the policy.
        draws: the draws at ``policy.kmax``.
        cost_for: k -> the iteration pricer of a chain of k (k = 0: plain decoding),
            memoised by the caller.
    """

    def __init__(self, policy: Policy, draws: StepDraws, cost_for: Callable[[int], StepCost]):
        self.policy = policy
        self._draws = {policy.kmax: draws}
        self._kmax_draws = draws
        self._cost_for = cost_for

    def draws(self, k: int) -> StepDraws:
        d = self._draws.get(k)
        if d is None:
            d = self._draws[k] = draws_at(self._kmax_draws, k, self.policy.kmax)
        return d

    def cost(self, k: int) -> StepCost:
        return self._cost_for(k)  # the caller's pricers, built once per k


def reference_step_ms(
    cost_for: Callable[[int], StepCost], prompt_tokens: np.ndarray, output_tokens: np.ndarray
) -> Callable[[int, int], float]:
    """(batch, k) -> ms of one decode iteration at the workload's mean decode context
    (mean prompt + half the mean output): the cost table a policy consults, as an engine
    consults step costs it profiled at fixed shapes, not the live contexts."""
    ctx = np.array([float(np.mean(prompt_tokens)) + float(np.mean(output_tokens)) / 2.0])

    def step_ms(batch: int, k: int) -> float:
        return float(cost_for(k).decode_ms(batch, ctx)[0])

    return step_ms


def policy_summary(spec: Any) -> dict[str, Any]:
    """The policy as the scenario gives it (``spec.policy``; fixed when unset)."""
    return {"kind": "fixed"} if spec is None else spec.model_dump()


def k_summary(k_hist: list[int] | None, fixed_k: int) -> dict[str, Any]:
    """How often each k ran (iterations), the mean k and the share without speculation."""
    if k_hist is None:
        return {"iterations_by_k": None, "mean_k": float(fixed_k), "off_share": 0.0}
    total = sum(k_hist)
    return {
        "iterations_by_k": {k: c for k, c in enumerate(k_hist) if c},
        "mean_k": sum(k * c for k, c in enumerate(k_hist)) / total if total else 0.0,
        "off_share": k_hist[0] / total if total else 0.0,
    }
