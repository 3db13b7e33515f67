"""Probing one config at one arrival rate: a Poisson run of the scenario's requests,
judged on its steady state (:mod:`.steady`), memoised per rate, config, requests and seed,
with a screening run and a monotone feasibility memo to skip hopeless simulations.
Rates in requests per second. The method is described in :mod:`.plan`."""

from __future__ import annotations

import math
from typing import Any

from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario

from .evaluate import Evaluation, Evaluator, default_workers, fork_map, slo_violation
from .objective import resolve_objective
from .plan_result import Probe, run_summary
from .schedule import StepCosts
from .space import Config, SearchDims
from .steady import steady_state

DEFAULT_REQUESTS = 5000
SCREEN_MIN = 500  # requests of a screening run
SCREEN_MARGIN = 0.2  # a screening run missing the SLOs by more than this rules a config out
CONFIRM_SEEDS = 2  # further seeds the reported rates must hold for

Job = tuple[float, Config, int, int]  # rate, config, requests, seed


class Prober:
    """Simulates configs at arrival rates and judges them (see the module docstring).

    Args:
        rs: the resolved scenario (needs SLOs).
        requests: requests per simulated rate (capped by the trace's rows).
        seed: simulator seed (one arrival pattern for every rate).
        objective: ranking among configs that meet the SLOs (None = auto).
        simulate: injectable simulator (must return the engine result).
        workers: processes for batches of probes (None = the CPUs, <= 4).
    """

    def __init__(
        self,
        rs: ResolvedScenario,
        *,
        requests: int = DEFAULT_REQUESTS,
        seed: int | None = None,
        objective: str | None = None,
        simulate: Any = None,
        workers: int | None = None,
    ):
        slo = rs.scenario.slo
        if not (slo.ttft_s or slo.tpot_s or slo.e2e_s):
            raise InputError(
                "plan needs SLOs (slo.ttft_s, slo.tpot_s or slo.e2e_s) to define what a "
                "replica sustains",
                source=rs.source,
                field="slo",
            )
        if simulate is None:
            from spectune.simulator import simulate as simulate
        self._simulate = simulate
        self.rs = rs
        trace = rs.trace()
        self.requests = requests if trace is None else min(requests, len(trace.prompt_tokens))
        self.seed = rs.scenario.seed if seed is None else seed
        self.seeds = tuple(self.seed + i for i in range(1 + CONFIRM_SEEDS))
        self.percentile = int(slo.percentile)
        self.dims = SearchDims.from_scenario(rs)
        self.objective = resolve_objective(objective, self.scenario_at(1.0))
        self.costs = StepCosts.from_scenario(rs, self.seed)
        self.workers = default_workers() if workers is None else workers
        self._evaluator = Evaluator(rs)  # config keys and trees (the same at every rate)
        self.probes: dict[tuple, Probe] = {}
        self.hint: Config | None = None  # the config that last sustained a rate
        self.plain_max: float | None = None  # set once plain decoding has been searched
        self.holds_to: dict[str, float] = {}  # per drafter/shape: highest rate it sustained
        self.fails_from: dict[str, float] = {}  # ... and lowest rate it missed
        self.simulations = 0

    def scenario_at(self, rate: float, requests: int | None = None) -> ResolvedScenario:
        return self.rs.with_workload(
            mode="open",
            arrival={"process": "poisson", "rate_per_s": float(rate), "cv": 1.0},
            num_requests=requests or self.requests,
            concurrency=None,
        )

    # ------------------------------------------------------------------ probes
    def probe(
        self, rate: float, config: Config, *, seed: int | None = None, requests: int | None = None
    ) -> Probe:
        """Simulate ``config`` at ``rate`` and judge its steady state (memoised)."""
        job = (float(rate), config, requests or self.requests, self.seed if seed is None else seed)
        if self._key(job) not in self.probes:
            self._store(job, self._run(job))
        return self.probes[self._key(job)]

    def probe_many(self, pairs: list[tuple[float, Config]]) -> None:
        """Probe the (rate, config) pairs not simulated yet (full runs, the plan's seed), in
        parallel processes."""
        jobs: dict[tuple, Job] = {}
        for r, c in pairs:
            job = (float(r), c, self.requests, self.seed)
            jobs.setdefault(self._key(job), job)
        todo = [j for k, j in jobs.items() if k not in self.probes]
        for job, p in zip(todo, fork_map(self._run, todo, self.workers), strict=True):
            self._store(job, p)

    def _key(self, job: Job) -> tuple:
        rate, config, requests, seed = job
        return (rate, self._evaluator.key(config), requests, seed)

    def _store(self, job: Job, p: Probe) -> None:
        self.simulations += 1
        self.probes[self._key(job)] = p

    def _run(self, job: Job) -> Probe:
        """One simulation and its verdict (no memo: safe in a forked worker)."""
        rate, config, requests, seed = job
        rs = self._evaluator.scenario_for(config, self.scenario_at(rate, requests))
        result = self._simulate(rs, seed)
        st = steady_state(result.engine, rs.scenario.slo, rate)
        slo = rs.scenario.slo
        violation = max(
            slo_violation(st.metrics, slo),  # steady state
            slo_violation(result.metrics, slo),  # the whole run, as `simulate` reports it
            st.keep_up_shortfall(),
        )
        evaluation = Evaluation(
            config=config.normalized(),
            key=self._evaluator.key(config),
            metrics=st.metrics,
            violation=violation,
            num_requests=st.arrivals,
            percentile=self.percentile,
        )
        return Probe(rate, seed, evaluation, st, run_summary(result.metrics))

    def feasible(self, rate: float, config: Config, *, screen: bool = True) -> bool:
        """Whether ``config`` sustains ``rate`` at the plan's seed, screened first by a
        short run unless ``screen`` is off (module docstring). A config that missed at some
        rate is taken to miss above it, and one that sustained a rate to sustain below it
        (feasibility falls with load), so those are not simulated again; the memo is per
        drafter and shape (chain or tree), as the priced best k or tree shifts with load."""
        key = shape(config)
        if rate >= self.fails_from.get(key, math.inf):
            return False
        if rate <= self.holds_to.get(key, 0.0):
            return True
        n = max(SCREEN_MIN, self.requests // 5)
        full = self._key((float(rate), config, self.requests, self.seed))
        ok = not (
            screen
            and full not in self.probes
            and n < self.requests
            and self.probe(rate, config, requests=n).evaluation.violation > SCREEN_MARGIN
        )
        ok = ok and self.probe(rate, config).sustains
        if ok:
            self.holds_to[key] = max(rate, self.holds_to.get(key, 0.0))
        else:
            self.fails_from[key] = min(rate, self.fails_from.get(key, math.inf))
        return ok


def shape(config: Config) -> str:
    """A config's drafter and shape: what the monotone feasibility memo is kept per."""
    return f"{config.drafter}/{'tree' if config.is_tree else 'chain'}"
