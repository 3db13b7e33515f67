"""Capacity planning: the highest Poisson arrival rate one replica sustains under the SLOs.

Method. At an arrival rate λ the scenario's workload is replaced by ``requests`` requests
(default 5,000, the scenario's trace rows if fewer) arriving as a Poisson process at λ,
with the scenario's lengths (the first rows of its trace, or its length distributions);
the seed is the same at every rate (common random numbers). Each run is judged on its
*steady state* (:mod:`.steady`): the first quarter of the arrival span is warm-up, and a
config *sustains* λ when

- the ``slo.percentile`` (p99 unless set) of each SLO-bounded metric (TTFT, TPOT, E2E) is
  within its bound — over the requests after the warm-up and over the whole run as
  ``spectune simulate`` reports it (a trace's lengths drift along its rows, so neither
  implies the other) — and
- the server keeps up: departures keep pace with arrivals (>= 97%), the waiting queue does
  not grow, and the run completes >= 97% of the offered rate.

A run that starts empty flatters the server until its queues fill: the old default of 500
requests per rate (17 s of traffic at 30 req/s) never reached steady state and overstated
capacity by 40-70%. ``--requests`` trades time for a longer check.

Candidates at each rate: plain decoding plus, per drafter, the best chain k and the best
tree of the search space priced by the DES's step-cost model at the batch plain decoding
runs at there (:class:`~spectune.tuner.schedule.StepCosts`). Deciding whether a rate is
sustainable needs one config that sustains it: the last config that did comes first, then
the candidates best-priced first. Plain decoding is searched first and not tried again
above its maximum. At the reported maxima and the table's rates every candidate runs in
full (in parallel processes where CPUs allow) and the best is chosen as ``recommend``
would (SLOs first, then the objective: ``latency`` = TPOT at the SLOs' percentile).

Search. The first probe is the rate at which plain decoding would keep the engine busy
all the time (step-cost model: prefill in ``max_batched_tokens`` chunks plus decoding in a
full batch); the bracket grows or shrinks by 1.5x from there and is bisected until it is
within 4%. While the bracket is sought, a config is first screened with a run of a fifth
of the requests (the same first arrivals): one that misses the SLOs there by more than 20%
is not run in full (its queues would only have longer to fill). Feasibility is assumed to
fall with load; DES noise can break that near the edge, which the bisection resolves to
one side.

Confidence. Near the maximum, which side of an SLO a run lands on is partly luck of the
draw. The reported rate must hold for ``CONFIRM_SEEDS`` more seeds (other arrival,
length-order and acceptance draws) with the same config; if it does not, the rate backs
off by 2% until it does. The check at each seed is printed.

Replicas for a target rate X: ``ceil(X / λ_max)``, assuming a load balancer that splits the
traffic evenly at random (a split Poisson stream stays Poisson).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spectune.simulator.errors import InputError, SpectuneError
from spectune.simulator.scenario import ResolvedScenario

from .objective import rank
from .plan_result import PlanResult, Probe, RatePoint
from .prober import CONFIRM_SEEDS, DEFAULT_REQUESTS, SCREEN_MIN, Prober, shape
from .schedule import mean_lengths
from .space import NONE, Config
from .steady import KEEP_UP_TOL

MIN_RATE = 1e-3
MAX_STEPS = 20
STEP = 1.5  # bracket growth factor
SEARCH_TOL = 0.04  # the bisection stops within 4% (relative) ...
REL_TOL = 0.02  # ... and the seed confirmation backs off in 2% steps
FINE_BACKOFF = 10  # 2% back-off steps before they widen
SWEEP = (0.5, 1.25)  # table rates besides the two maxima, as fractions of the larger one


class Planner(Prober):
    """Bisects for the highest sustainable rate over a :class:`~.prober.Prober`'s probes
    (arguments as there); call :meth:`max_rate` for plain decoding first, set
    :attr:`plain_max`, then for SD, then :meth:`confirm` each maximum."""

    # ------------------------------------------------------------------ candidates
    def candidates(self, batch: float) -> list[Config]:
        """Per drafter: the best chain k and the best tree at ``batch`` (step-cost model),
        best-priced first."""
        b = max(1, round(batch))
        tree = self._evaluator.tree
        priced: list[tuple[float, Config]] = []
        for d in self.dims.searched_drafters():
            if d == NONE:
                continue
            shapes = self.dims.shapes(d)
            if "chain" in shapes:
                thr = [self.costs.throughput_tok_per_s(b, d, k) for k in self.dims.chain_ks]
                i = int(np.argmax(thr))
                priced.append((thr[i], Config(d, self.dims.chain_ks[i])))
            if "tree" in shapes:
                trees = [
                    Config(d, 0, bud, dep).normalized()
                    for bud in self.dims.tree_budgets
                    for dep in self.dims.depths_for(bud)
                ]
                thr = [self.costs.throughput_tok_per_s(b, d, 0, tree(c)) for c in trees]
                i = int(np.argmax(thr))
                priced.append((thr[i], trees[i]))
        priced.sort(key=lambda t: -t[0])
        return [c for _, c in priced]

    def plain(self, rate: float) -> Probe:
        return self.probe(rate, Config())

    def _candidates_at(self, rate: float) -> list[Config]:
        """The candidates priced at the batch plain decoding holds at ``rate`` (its steady
        window; above plain decoding's maximum, the batch there scaled by the rate and
        capped by ``max_num_seqs``: plain decoding is not run where it cannot keep up)."""
        at = rate
        if self.plain_max and rate > self.plain_max:
            at = self.plain_max
        short = self._key((float(at), Config(), max(SCREEN_MIN, self.requests // 5), self.seed))
        full = self._key((float(at), Config(), self.requests, self.seed))
        p = self.probes.get(full) or self.probes.get(short) or self.plain(at)
        batch = float(p.steady.metrics["mean_batch_size"]) or 1.0
        batch = min(batch * rate / at, float(self.rs.scenario.serving.max_num_seqs))
        return self.candidates(batch)

    def sustains(self, rate: float, sd: bool, *, screen: bool = True) -> bool:
        """Whether plain decoding (``sd`` False) or any candidate sustains ``rate``. Plain
        decoding is searched first: above its maximum it is not tried again."""
        above_plain = self.plain_max is not None and rate > self.plain_max
        if not (sd and above_plain) and self.feasible(rate, Config(), screen=screen):
            return True
        if not sd:
            return False
        cands = self._candidates_at(rate)
        if self.hint in cands:
            cands.insert(0, cands.pop(cands.index(self.hint)))
        for c in cands:  # the hint runs in full; other candidates are screened first
            if self.feasible(rate, c, screen=screen or c != self.hint):
                self.hint = c
                return True
        return False

    def points(self, rates: list[float]) -> list[RatePoint]:
        """Plain decoding and the best of *all* candidates at each rate (full runs)."""
        self.probe_many([(r, Config()) for r in rates])
        cands = {r: self._candidates_at(r) for r in rates}
        self.probe_many([(r, c) for r in rates for c in cands[r]])
        out = []
        for r in rates:
            probes = [self.plain(r), *(self.probe(r, c) for c in cands[r])]
            top = rank([p.evaluation for p in probes], self.objective)[0]
            out.append(RatePoint(r, probes[0], next(p for p in probes if p.evaluation is top)))
        return out

    # ------------------------------------------------------------------ the search
    def first_guess(self) -> float:
        """Where the bracket starts: the rate at which plain decoding's engine would be busy
        all the time — per request, its prompt prefilled in ``max_batched_tokens`` chunks
        plus its output decoded in a full batch (the step-cost model; ms -> s)."""
        sv = self.rs.scenario.serving
        prompt, output = mean_lengths(self.rs)
        chunk = max(1, min(sv.max_batched_tokens, round(prompt)))
        prefill_s = prompt * self.costs.target.forward_ms(1, chunk, prompt / 2) / chunk / 1e3
        decode_s = output * self.costs.step_ms(sv.max_num_seqs) / sv.max_num_seqs / 1e3
        guess = 1.0 / max(prefill_s + decode_s, 1e-9)
        return float(max(guess, 1.0)) if math.isfinite(guess) else 1.0

    def max_rate(self, sd: bool, start: float | None = None) -> float:
        """Highest sustainable rate at the plan's seed (0 when even ``MIN_RATE`` misses)."""
        hi = float(start or self.first_guess())
        if self.sustains(hi, sd):
            lo = hi
            for _ in range(MAX_STEPS):
                hi = lo * STEP
                if not self.sustains(hi, sd):
                    break
                lo = hi
            else:
                return lo  # sustains everything tried: report the largest
        else:
            while True:
                lo = hi / STEP
                if lo < MIN_RATE:
                    return 0.0
                if self.sustains(lo, sd):
                    break
                hi = lo
        while (hi - lo) > SEARCH_TOL * lo:  # near the edge a screening run rarely rules out
            mid = (lo + hi) / 2.0
            if self.sustains(mid, sd, screen=False):
                lo = mid
            else:
                hi = mid
        return lo

    def confirm(self, rate: float, sd: bool) -> tuple[float, list[Probe]]:
        """Back ``rate`` off by ``REL_TOL`` steps until one config — plain decoding, or with
        ``sd`` the best-ranked config that sustains it — holds at every seed.

        Returns:
            The confirmed rate and the config's runs there, one per seed (plan's first).
        """
        for step in range(1, 10_000):
            if sd:
                fails = self.fails_from
                cands = [
                    c for c in self._candidates_at(rate) if rate < fails.get(shape(c), math.inf)
                ]
                self.probe_many([(rate, c) for c in cands])
                probes = [self.probe(rate, c) for c in cands]
                ranked = rank([p.evaluation for p in probes], self.objective)
                order = [next(p for p in probes if p.evaluation is e) for e in ranked]
            else:
                order = [self.plain(rate)]
            for p in (p for p in order if p.sustains):
                runs = [p, *(self.probe(rate, p.config, seed=s) for s in self.seeds[1:])]
                if all(r.sustains for r in runs):
                    return rate, runs
            # 2% steps; after ``FINE_BACKOFF`` of them the seeds disagree by more than noise
            # near an edge, so the steps widen (25%) down to MIN_RATE.
            rate /= 1.0 + (REL_TOL if step <= FINE_BACKOFF else 0.25)
            if rate < MIN_RATE:
                break
        raise SpectuneError(
            f"no arrival rate held at every seed ({', '.join(map(str, self.seeds))}) with "
            f"{self.requests:,} requests per run; with so few the steady-state statistics "
            "are noise: raise --requests"
        )


def plan(
    rs: ResolvedScenario,
    *,
    qps: float | None = None,
    requests: int = DEFAULT_REQUESTS,
    seed: int | None = None,
    objective: str | None = None,
    sweep: tuple[float, ...] = SWEEP,
    simulate: Any = None,
    workers: int | None = None,
) -> PlanResult:
    """Capacity of one replica with and without SD, replicas for ``qps``, and a rate sweep
    (``sweep``: table rates as fractions of the larger maximum).

    Raises:
        InputError: no SLOs, a bad ``qps`` or ``requests``.
        SpectuneError: no rate is sustainable even with the best config.
    """
    if qps is not None and not (math.isfinite(qps) and qps > 0):
        raise InputError(f"must be > 0, got {qps}", source="--qps")
    if requests <= 0:
        raise InputError(f"must be > 0, got {requests}", source="--requests")
    p = Planner(
        rs, requests=requests, seed=seed, objective=objective, simulate=simulate, workers=workers
    )
    plain_max = p.max_rate(sd=False)
    checks_plain: list[Probe] = []
    if plain_max > 0:
        plain_max, checks_plain = p.confirm(plain_max, sd=False)
    p.plain_max = plain_max
    sd_max = p.max_rate(sd=True, start=plain_max * STEP if plain_max > 0 else None)
    if sd_max <= 0.0:
        closest = p.points([MIN_RATE * 2])[0].best
        raise SpectuneError(
            f"no arrival rate down to {MIN_RATE:g} req/s meets the SLOs, even with the best "
            f"config (closest: {closest.config.label()}, violation "
            f"+{closest.evaluation.violation * 100:.0f}%)"
        )
    if sd_max <= plain_max:  # speculation never helps: plain decoding is the best config
        sd_max, checks_sd = plain_max, checks_plain
    else:
        sd_max, checks_sd = p.confirm(sd_max, sd=True)
    top = max(sd_max, plain_max)
    rates = {sd_max, plain_max, *(f * top for f in sweep)}
    points = p.points(sorted(r for r in rates if r > 0))
    res = PlanResult(
        max_rate_plain=plain_max,
        max_rate_sd=sd_max,
        checks_plain=checks_plain,
        checks_sd=checks_sd,
        points=points,
        requests=p.requests,
        objective=p.objective,
        percentile=p.percentile,
        seeds=p.seeds,
        simulations=p.simulations,
    )
    if qps is not None:
        res.qps = qps
        res.replicas_sd = math.ceil(qps / sd_max)
        res.replicas_plain = math.ceil(qps / plain_max) if plain_max > 0 else None
    return res


__all__ = [
    "CONFIRM_SEEDS",
    "DEFAULT_REQUESTS",
    "KEEP_UP_TOL",
    "PlanResult",
    "Planner",
    "Probe",
    "plan",
]
