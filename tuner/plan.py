"""Capacity planning: the highest Poisson arrival rate one replica sustains under the SLOs.

Method. At an arrival rate λ the scenario's workload is replaced by ``requests`` requests
(default 500) arriving as a Poisson process at λ, with the scenario's lengths (the first
rows of its trace, or its length distributions); the seed is the same at every rate, so
rates differ only by the time scale of one arrival pattern (common random numbers). A
replica *sustains* λ when the config's ``slo.percentile`` (p99 by default) of each
SLO-bounded metric (TTFT, TPOT, E2E) is within its bound — queueing shows up in TTFT/E2E,
so a bound on one of them also rules out rates the replica cannot keep up with.

At each rate the candidates are plain decoding plus, per drafter, the best chain k and
the best tree of the search space priced by the DES's step-cost model at the batch size
plain decoding runs at there (:class:`~spectune.tuner.schedule.StepCosts`); the
candidates are simulated and the best is chosen as ``recommend`` would (SLOs first, then
the objective, ``latency`` = p99 TPOT by default). "Without SD" is plain decoding
alone; "with SD" lets every rate use its best config (plain decoding included, as a k = 0
schedule would).

The rate is bracketed by doubling/halving from 1 req/s and then bisected (``iterations``,
default 7: the bracket shrinks 128×). Feasibility is assumed to fall with load; DES noise
can break that near the edge, which the bisection then resolves to one side.

Replicas for a target rate X: ``ceil(X / λ_max)``, assuming a load balancer that splits the
traffic evenly at random (a split Poisson stream stays Poisson).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectune.simulator.errors import InputError, SpectuneError
from spectune.simulator.scenario import ResolvedScenario

from .objective import Evaluation, Evaluator, rank, resolve_objective
from .schedule import StepCosts
from .space import NONE, Config, SearchDims

MIN_RATE = 1e-3
MAX_DOUBLINGS = 14


@dataclass
class RatePoint:
    """Plain decoding and the best config at one arrival rate."""

    rate_per_s: float
    plain: Evaluation
    best: Evaluation

    def row(self, objective: str) -> dict[str, Any]:
        def part(e: Evaluation) -> dict[str, Any]:
            m = e.metrics
            return {
                "config": e.config.label(),
                "meets_slos": e.feasible,
                "goodput_req_per_s": float(m.get("goodput_req_per_s") or 0.0),
                "throughput_tok_per_s": float(m.get("throughput_tok_per_s") or 0.0),
                "tpot_p99_s": float((m.get("tpot_s") or {}).get("p99") or math.nan),
                "ttft_p99_s": float((m.get("ttft_s") or {}).get("p99") or math.nan),
            }

        return {"rate_per_s": self.rate_per_s, "plain": part(self.plain), "sd": part(self.best)}


@dataclass
class PlanResult:
    """What ``spectune plan`` reports."""

    max_rate_plain: float
    max_rate_sd: float
    config_at_max: str
    points: list[RatePoint]
    requests: int
    objective: str
    qps: float | None = None
    replicas_plain: int | None = None
    replicas_sd: int | None = None
    simulations: int = 0
    notes: list[str] = field(default_factory=list)


class Planner:
    """Evaluates rates (memoised) and bisects for the sustainable maximum.

    Args:
        rs: the resolved scenario (needs SLOs).
        requests: requests per simulated rate.
        seed: simulator seed (one arrival pattern for every rate).
        objective: ranking among configs that meet the SLOs (None = auto).
        simulate: injectable simulator.
    """

    def __init__(
        self,
        rs: ResolvedScenario,
        *,
        requests: int = 500,
        seed: int | None = None,
        objective: str | None = None,
        simulate: Any = None,
    ):
        slo = rs.scenario.slo
        if not (slo.ttft_s or slo.tpot_s or slo.e2e_s):
            raise InputError(
                "plan needs SLOs (slo.ttft_s, slo.tpot_s or slo.e2e_s) to define what a "
                "replica sustains",
                source=rs.source,
                field="slo",
            )
        self.rs = rs
        self.requests = requests
        self.seed = rs.scenario.seed if seed is None else seed
        self.dims = SearchDims.from_scenario(rs)
        self.objective = resolve_objective(objective, self.scenario_at(1.0))
        self.costs = StepCosts.from_scenario(rs, self.seed)
        self._simulate = simulate
        self.cache: dict[float, RatePoint] = {}
        self.simulations = 0

    def scenario_at(self, rate: float) -> ResolvedScenario:
        return self.rs.with_workload(
            mode="open",
            arrival={"process": "poisson", "rate_per_s": float(rate), "cv": 1.0},
            num_requests=self.requests,
            concurrency=None,
        )

    def candidates(self, batch: float, ev: Evaluator) -> list[Config]:
        """Per drafter: the best chain k and the best tree at ``batch`` (step-cost model)."""
        b = max(1, round(batch))
        out: list[Config] = []
        for d in self.dims.searched_drafters():
            if d == NONE:
                continue
            shapes = self.dims.shapes(d)
            if "chain" in shapes:
                thr = [self.costs.throughput_tok_per_s(b, d, k) for k in self.dims.chain_ks]
                out.append(Config(d, self.dims.chain_ks[int(np.argmax(thr))]))
            if "tree" in shapes:
                trees = [
                    Config(d, 0, bud, dep).normalized()
                    for bud in self.dims.tree_budgets
                    for dep in self.dims.depths_for(bud)
                ]
                thr = [self.costs.throughput_tok_per_s(b, d, 0, ev.tree(c)) for c in trees]
                out.append(trees[int(np.argmax(thr))])
        return out

    def at(self, rate: float) -> RatePoint:
        """Plain decoding and the best config at ``rate`` (memoised)."""
        rate = float(rate)
        if rate in self.cache:
            return self.cache[rate]
        ev = Evaluator(self.scenario_at(rate), seed=self.seed, simulate=self._simulate)
        plain = ev.evaluate(Config())
        batch = float(plain.metrics.get("mean_batch_size") or 1.0)
        evals = [plain, *(ev.evaluate(c) for c in self.candidates(batch, ev))]
        self.simulations += ev.n_simulations
        point = RatePoint(rate, plain, rank(evals, self.objective)[0])
        self.cache[rate] = point
        return point

    def max_rate(self, sd: bool, iterations: int = 7) -> float:
        """Highest sustainable rate (0 when even ``MIN_RATE`` misses the SLOs)."""

        def ok(rate: float) -> bool:
            p = self.at(rate)
            return (p.best if sd else p.plain).feasible

        lo, hi = 0.0, 1.0
        if ok(hi):
            for _ in range(MAX_DOUBLINGS):
                lo, hi = hi, hi * 2.0
                if not ok(hi):
                    break
            else:
                return lo  # sustains everything tried: report the largest
        else:
            while hi > MIN_RATE:
                hi, lo = hi, hi / 2.0
                if ok(lo):
                    break
                hi = lo
            else:
                return 0.0
        for _ in range(iterations):
            mid = (lo + hi) / 2.0
            if ok(mid):
                lo = mid
            else:
                hi = mid
        return lo


def plan(
    rs: ResolvedScenario,
    *,
    qps: float | None = None,
    requests: int = 500,
    seed: int | None = None,
    objective: str | None = None,
    sweep: int = 6,
    iterations: int = 7,
    simulate: Any = None,
) -> PlanResult:
    """Capacity of one replica with and without SD, replicas for ``qps``, and a rate sweep.

    Raises:
        InputError: no SLOs, a bad ``qps`` or ``requests``.
        SpectuneError: no rate is sustainable even with the best config.
    """
    if qps is not None and not (math.isfinite(qps) and qps > 0):
        raise InputError(f"must be > 0, got {qps}", source="--qps")
    if requests <= 0:
        raise InputError(f"must be > 0, got {requests}", source="--requests")
    p = Planner(rs, requests=requests, seed=seed, objective=objective, simulate=simulate)
    sd_max = p.max_rate(sd=True, iterations=iterations)
    if sd_max <= 0.0:
        closest = p.at(MIN_RATE * 2).best
        raise SpectuneError(
            f"no arrival rate down to {MIN_RATE:g} req/s meets the SLOs, even with the best "
            f"config (closest: {closest.config.label()}, violation "
            f"+{closest.violation * 100:.0f}%)"
        )
    plain_max = p.max_rate(sd=False, iterations=iterations)
    top = max(sd_max, plain_max)
    for r in np.linspace(0.25 * top, 1.5 * top, sweep):
        p.at(float(r))
    points = sorted(p.cache.values(), key=lambda x: x.rate_per_s)
    res = PlanResult(
        max_rate_plain=plain_max,
        max_rate_sd=sd_max,
        config_at_max=p.at(sd_max).best.config.label(),
        points=points,
        requests=requests,
        objective=p.objective,
        simulations=p.simulations,
    )
    if qps is not None:
        res.qps = qps
        res.replicas_sd = math.ceil(qps / sd_max)
        res.replicas_plain = math.ceil(qps / plain_max) if plain_max > 0 else None
    return res
