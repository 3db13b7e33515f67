"""Best draft length per batch-size band, from the simulator's per-step costs.

Method (documented choice): the DES prices every decode iteration as the draft phase plus
one verify forward of ``B × (nodes + 1)`` tokens plus the per-step overhead, and emits
``B × tokens-per-step`` tokens. At a fixed batch size B (what a band of an engine's
schedule means) the steady-state decode throughput of a config is therefore

    throughput(B, k) = B · E[tokens/step](k) / step_ms(B, k),

with the same latency models (:class:`~spectune.simulator.latency.LatencyModel`), the same
iteration pricer (:func:`~spectune.simulator.api.iteration_pricer`: host overheads, the
drafter's terms, the engine's draft-pass rules) and the same per-step draws (their mean,
from :func:`~spectune.simulator.acceptance.draw_steps`) as the DES. For each
band the k maximising it wins (ties to the smaller k; k = 0 = do not speculate). No
queueing enters at a fixed batch, so no DES run is needed; the context per sequence is
the workload's mean prompt plus half its mean output (tokens).

Iterations are priced by the DES's own :class:`~spectune.simulator.stepcost.StepCost`
(draft passes by drafter kind, verify pass, overhead), so the schedule and the DES agree.

Bands double: [1], [2], [3-4], [5-8], ... up to ``max_num_seqs``; each band is priced at
its geometric-mean batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spectune.simulator.acceptance import AcceptanceModel, draw_steps
from spectune.simulator.api import iteration_pricer
from spectune.simulator.latency import LatencyModel
from spectune.simulator.scenario import ResolvedScenario
from spectune.simulator.stepcost import StepCost
from spectune.simulator.tree import Tree

Band = tuple[int, int, int]


def batch_bands(max_batch: int) -> list[tuple[int, int]]:
    """Doubling bands covering 1..max_batch: (1,1), (2,2), (3,4), (5,8), ..."""
    bands: list[tuple[int, int]] = []
    lo = 1
    hi = 1
    while lo <= max_batch:
        bands.append((lo, min(hi, max_batch)))
        lo = hi + 1
        hi *= 2
    return bands


def mean_lengths(rs: ResolvedScenario, sample: int = 2000) -> tuple[float, float]:
    """Mean (prompt, output) tokens per request: the first ``sample`` trace rows, or the
    length distributions' means."""
    wl = rs.scenario.workload
    tr = rs.trace()
    if tr is not None:
        n = min(len(tr.prompt_tokens), wl.num_requests or len(tr.prompt_tokens), sample)
        p = float(np.mean(np.maximum(tr.prompt_tokens[:n], 1)))
        o = float(np.mean(np.maximum(tr.output_tokens[:n], 1)))
        return p, o
    return _dist_mean(wl.prompt_tokens), _dist_mean(wl.output_tokens)


def mean_context_tokens(rs: ResolvedScenario, sample: int = 2000) -> float:
    """Mean context per sequence during decode: mean prompt + half the mean output."""
    p, o = mean_lengths(rs, sample)
    return p + o / 2.0


def _dist_mean(d: object) -> float:
    if d is None:
        return 0.0
    kind = d.dist  # type: ignore[attr-defined]
    if kind == "constant":
        return float(d.value)  # type: ignore[attr-defined]
    if kind == "uniform":
        return (d.low + d.high) / 2.0  # type: ignore[attr-defined]
    mean = float(d.mean)  # type: ignore[attr-defined]
    cap = d.max  # type: ignore[attr-defined]
    return min(mean, float(cap)) if cap else mean


@dataclass
class StepCosts:
    """Per-step decode cost and yield of a config at a fixed batch size.

    Build with :meth:`from_scenario`; query with :meth:`step_ms`, :meth:`tokens_per_step`,
    :meth:`throughput_tok_per_s`.
    """

    rs: ResolvedScenario
    context_tokens: float
    target: LatencyModel
    drafters: dict[str, LatencyModel | None]
    seed: int = 0
    _tokens: dict[tuple, float] = field(default_factory=dict)

    @classmethod
    def from_scenario(cls, rs: ResolvedScenario, seed: int = 0) -> StepCosts:
        target = LatencyModel.from_profile(rs.target)
        drafters = {
            name: LatencyModel.from_profile(d.latency) if d.latency is not None else None
            for name, d in rs.drafters.items()
        }
        return cls(rs, mean_context_tokens(rs), target, drafters, seed)

    def step_cost(self, drafter: str = "none", k: int = 0, tree: Tree | None = None) -> StepCost:
        """The DES's own iteration pricer for this config
        (:func:`~spectune.simulator.api.iteration_pricer`)."""
        shape = tree if tree is not None else Tree.chain(max(k, 0))
        name = None if drafter == "none" else drafter
        return iteration_pricer(self.rs, name, shape, self.target, self.drafters.get(drafter))

    def step_ms(
        self, batch: int, drafter: str = "none", k: int = 0, tree: Tree | None = None
    ) -> float:
        """Milliseconds of one decode-only iteration of ``batch`` sequences.

        Args:
            batch: sequences in the running batch.
            drafter: drafter name or ``"none"``.
            k: chain length (ignored with a tree).
            tree: a static tree, or None for a chain.
        """
        cost = self.step_cost(drafter, k, tree)
        return float(cost.decode_ms(batch, np.array([self.context_tokens]))[0])

    def tokens_per_step(self, drafter: str = "none", k: int = 0, tree: Tree | None = None) -> float:
        """Expected tokens a sequence emits per step (bonus included), as the DES draws
        them: the mean over 256 seeded requests of 128 steps each of the same per-step
        draws (:func:`~spectune.simulator.acceptance.draw_steps`: replayed trajectories
        when the profile has them, else the vectors with the requests' spread)."""
        if drafter == "none" or (tree is None and k <= 0):
            return 1.0
        key = (drafter, k, tree)
        if key not in self._tokens:
            d = self.rs.drafters[drafter]
            spec, kind = d.acceptance, d.spec.kind
            model = (
                AcceptanceModel.for_tree(spec, tree, kind)
                if tree is not None
                else AcceptanceModel.for_chain(spec, k, kind)
            )
            n, steps = 256, 128
            seeds = np.random.SeedSequence([self.seed, 7]).spawn(2)
            rngs = [np.random.default_rng(q) for q in seeds]
            draws = draw_steps(model, np.full(n, steps, dtype=np.int64), *rngs)
            self._tokens[key] = float(draws.cum[draws.off + steps].sum()) / (n * steps)
        return self._tokens[key]

    def throughput_tok_per_s(
        self, batch: int, drafter: str = "none", k: int = 0, tree: Tree | None = None
    ) -> float:
        """Steady-state decode output tokens per second at a fixed batch size."""
        return (
            batch
            * self.tokens_per_step(drafter, k, tree)
            * 1000.0
            / self.step_ms(batch, drafter, k, tree)
        )

    def speedup(self, batch: int, drafter: str, k: int = 0, tree: Tree | None = None) -> float:
        """Throughput relative to plain decoding at the same batch size."""
        return self.throughput_tok_per_s(batch, drafter, k, tree) / self.throughput_tok_per_s(batch)


@dataclass(frozen=True)
class Schedule:
    """Best k per batch-size band for one drafter.

    Args:
        drafter: the drafter the schedule is for.
        bands: ``(lo, hi, k)`` inclusive, k = 0 = do not speculate.
        speedups: the priced speedup over plain decoding of each band's k (same order).
        method: how it was computed.
    """

    drafter: str
    bands: tuple[Band, ...]
    speedups: tuple[float, ...]
    method: str = "per-step cost model of the DES at fixed batch size"

    def k_at(self, batch: int) -> int:
        for lo, hi, k in self.bands:
            if lo <= batch <= hi:
                return k
        return self.bands[-1][2] if self.bands else 0

    def to_dict(self) -> dict:
        return {
            "drafter": self.drafter,
            "method": self.method,
            "bands": [
                {"batch_lo": lo, "batch_hi": hi, "num_spec_tokens": k, "speedup": round(s, 4)}
                for (lo, hi, k), s in zip(self.bands, self.speedups, strict=True)
            ],
        }


def best_k_schedule(
    costs: StepCosts,
    drafter: str,
    ks: Sequence[int],
    max_batch: int,
) -> Schedule:
    """The best k (0 = plain) for each doubling batch band up to ``max_batch``.

    Args:
        costs: the step-cost model.
        drafter: drafter name (chains).
        ks: candidate positive draft lengths.
        max_batch: the serving cap (max_num_seqs).

    Returns:
        The :class:`Schedule`.
    """
    cands = sorted({0, *(int(k) for k in ks if k > 0)})
    bands: list[Band] = []
    speedups: list[float] = []
    for lo, hi in batch_bands(max_batch):
        b = max(1, round(math.sqrt(lo * hi)))
        plain = costs.throughput_tok_per_s(b)
        thr = [costs.throughput_tok_per_s(b, drafter, k) if k else plain for k in cands]
        i = int(np.argmax(np.asarray(thr) >= max(thr) * (1 - 1e-9)))  # first (smallest k) max
        bands.append((lo, hi, cands[i]))
        speedups.append(thr[i] / plain)
    return Schedule(drafter, tuple(bands), tuple(speedups))
