"""Simulating configurations: metrics -> objective value and SLO violation, memoised.

An :class:`Evaluator` turns a :class:`~spectune.tuner.space.Config` into a resolved
scenario (``with_spec`` / ``with_serving``, no file re-read; the KV pool re-derived per
drafter when ``kv_cache_tokens: auto``), simulates it and keeps the result under the
config's *effective* key (drafter, k or the actual tree's paths, max_num_seqs; the
scenario's own cap counts as no override), so identical configurations run once.
Objective values and the SLO rule are defined in :mod:`.objective`'s docstring.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from spectune.simulator import analytic
from spectune.simulator.scenario import ResolvedScenario, auto_kv_cache_tokens
from spectune.simulator.schema import Slo
from spectune.simulator.tree import Tree

from .policies import policy_spec, schedule_bands
from .schedule import StepCosts
from .space import Config

T = TypeVar("T")
R = TypeVar("R")

OBJECTIVES = ("throughput", "goodput", "latency")
DIRECTIONS = {"throughput": "maximize", "goodput": "maximize", "latency": "minimize"}
PARETO = ("throughput", "latency")  # values of a --pareto trial, in this order
PARETO_DIRECTIONS = ("maximize", "minimize")


def percentile_value(metrics: dict[str, Any], key: str, percentile: int = 99) -> float:
    v = (metrics.get(key) or {}).get(f"p{percentile}")
    return float(v) if v is not None else math.nan


def percentile_key(metric: str, percentile: int) -> str:
    """The name of a metric at a percentile, unit last: ``tpot``, 90 -> ``tpot_p90_s``."""
    return f"{metric}_p{percentile}_s"


def slo_violation(metrics: dict[str, Any], slo: Slo) -> float:
    """max_i(pQ_i / slo_i) − 1 over the bounded metrics at the SLO's percentile Q;
    <= 0 meets the SLOs, -1 = no SLOs."""
    ratios = []
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        bound = getattr(slo, key)
        if bound:
            v = percentile_value(metrics, key, slo.percentile)
            ratios.append(v / bound if math.isfinite(v) else math.inf)
    if not ratios:
        return -1.0
    return max(ratios) - 1.0


def objective_value(metrics: dict[str, Any], objective: str, percentile: int = 99) -> float:
    """The metric an objective reads (NaN = nothing measured becomes the worst value);
    ``latency`` is TPOT at ``percentile`` (the scenario's ``slo.percentile``)."""
    if objective == "latency":
        v = percentile_value(metrics, "tpot_s", percentile)
        return v if math.isfinite(v) else math.inf
    key = "throughput_tok_per_s" if objective == "throughput" else "goodput_req_per_s"
    v = float(metrics.get(key) or 0.0)
    return v if math.isfinite(v) else 0.0


@dataclass(frozen=True)
class Evaluation:
    """One simulated configuration.

    Args:
        config: the configuration.
        key: its effective key (memo).
        metrics: the simulator's metrics (``spectune simulate --json`` contract).
        violation: SLO violation (<= 0 = meets the SLOs).
        num_requests: requests simulated (the fidelity).
        sim_s: wall seconds the simulation took (0 when it came from the memo).
        percentile: the SLOs' percentile, at which ``latency`` reads TPOT.
    """

    config: Config
    key: str
    metrics: dict[str, Any]
    violation: float
    num_requests: int
    sim_s: float = 0.0
    percentile: int = 99

    @property
    def feasible(self) -> bool:
        return self.violation <= 0.0

    def value(self, objective: str) -> float:
        return objective_value(self.metrics, objective, self.percentile)

    def sort_key(self, objective: str) -> tuple[int, float]:
        """Ascending = better: feasible first by value, then by smallest violation."""
        if not self.feasible:
            return (1, self.violation)
        v = self.value(objective)
        return (0, -v if DIRECTIONS[objective] == "maximize" else v)


def rank(evals: list[Evaluation], objective: str) -> list[Evaluation]:
    """Best first (see :meth:`Evaluation.sort_key`); ties keep the input order."""
    return sorted(evals, key=lambda e: e.sort_key(objective))


class Evaluator:
    """Simulates configurations of one scenario at one fidelity, memoised.

    Args:
        rs: the resolved scenario.
        seed: simulator seed.
        num_requests: simulate only the first N requests (None = the scenario's own).
        simulate: the simulator entry point (injectable for tests).
    """

    def __init__(
        self,
        rs: ResolvedScenario,
        *,
        seed: int = 0,
        num_requests: int | None = None,
        simulate: Any = None,
        engine: str | None = None,
    ):
        self.engine = engine  # the engine policies are simulated for (its batch count)
        self._bands: dict[tuple[str, int, int], list] = {}
        self._costs: StepCosts | None = None
        if simulate is None:
            from spectune.simulator import simulate as simulate
        self._simulate = simulate
        self.base = rs if num_requests is None else rs.with_workload(num_requests=num_requests)
        self.seed = seed
        self.memo: dict[str, Evaluation] = {}
        self.n_simulations = 0
        self.sim_seconds = 0.0
        self._trees: dict[tuple[str, int, int], Tree] = {}

    @property
    def num_requests(self) -> int | None:
        return self.base.scenario.workload.num_requests

    @property
    def percentile(self) -> int:
        """The SLOs' percentile: the one every objective, table and plot reads."""
        return int(self.base.scenario.slo.percentile)

    def tree(self, config: Config) -> Tree | None:
        """The optimal tree for a tree config (closed-form DP), None for chains."""
        if not config.is_tree:
            return None
        k = (config.drafter, int(config.tree_budget or 0), int(config.tree_depth or 0))
        if k not in self._trees:
            ranked = self.base.drafters[config.drafter].acceptance.ranked
            self._trees[k] = analytic.optimal_tree(ranked, k[1], k[2])
        return self._trees[k]

    def key(self, config: Config) -> str:
        """The effective identity of a config: trees by their actual paths."""
        c = config.normalized()
        tree = self.tree(c)
        mns = c.max_num_seqs
        if mns == self.base.scenario.serving.max_num_seqs:
            mns = None  # the scenario's own cap: the same simulation
        body: dict[str, Any] = {"drafter": c.drafter, "mns": mns}
        if tree is not None:
            body["tree"] = tree.paths()
        else:
            body["k"] = c.num_spec_tokens
        policy = self.policy(c)
        if policy is not None:
            body["policy"] = policy
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    def policy(self, config: Config) -> dict[str, Any] | None:
        """The ``spec.policy`` ``config`` runs (None: fixed k), as simulated and emitted."""
        c = config.normalized()
        if c.policy != "schedule" or not c.speculates or c.is_tree:
            return policy_spec(self.base, c, self.engine)
        cap = c.max_num_seqs or self.base.scenario.serving.max_num_seqs
        k = (c.drafter, c.num_spec_tokens, cap)
        if k not in self._bands:
            if self._costs is None:  # one step-cost model for every schedule priced here
                self._costs = StepCosts.from_scenario(self.base)
            self._bands[k] = schedule_bands(self.base, c, self._costs)
        return policy_spec(self.base, c, self.engine, self._bands[k])

    def scenario_for(
        self, config: Config, base: ResolvedScenario | None = None
    ) -> ResolvedScenario:
        """The resolved scenario running ``config`` (no file is re-read)."""
        rs = base or self.base
        c = config.normalized()
        if c.max_num_seqs is not None:
            rs = rs.with_serving(max_num_seqs=c.max_num_seqs)
        tree = self.tree(c)
        if not c.speculates:
            rs = rs.with_spec(drafter="none", num_spec_tokens=0, tree=None, policy=None)
        elif tree is not None:
            rs = rs.with_spec(
                drafter=c.drafter,
                num_spec_tokens=tree.max_depth,
                tree={"paths": tree.paths()},
                policy=None,
            )
        else:
            rs = rs.with_spec(
                drafter=c.drafter,
                num_spec_tokens=c.num_spec_tokens,
                tree=None,
                policy=self.policy(c),
            )
        if rs.scenario.serving.kv_cache_tokens == "auto":
            # The KV pool shrinks by the draft model's weights and cache: re-derive per drafter.
            kv = auto_kv_cache_tokens(rs.scenario, rs.target, rs.drafters, rs.source)
            rs = dataclasses.replace(rs, kv_cache_tokens=kv)
        return rs

    def cached(self, key: str) -> Evaluation | None:
        return self.memo.get(key)

    def remember(self, ev: Evaluation) -> None:
        self.memo.setdefault(ev.key, ev)

    def evaluate(
        self, config: Config, *, seed: int | None = None, base: ResolvedScenario | None = None
    ) -> Evaluation:
        """Simulate ``config`` (or return the memoised result for the default seed/base)."""
        key = self.key(config)
        memo_ok = seed is None and base is None
        if memo_ok and key in self.memo:
            return self.memo[key]
        ev = self._run(Job(config, seed, base))
        self._count(ev)
        if memo_ok:
            self.memo[key] = ev
        return ev

    def _run(self, job: Job) -> Evaluation:
        """One simulation, no memo and no counters (safe in a forked worker)."""
        rs = self.scenario_for(job.config, job.base)
        t0 = time.perf_counter()
        result = self._simulate(rs, self.seed if job.seed is None else job.seed)
        dt = time.perf_counter() - t0
        metrics = dict(result.metrics)
        return Evaluation(
            config=job.config.normalized(),
            key=self.key(job.config),
            metrics=metrics,
            violation=slo_violation(metrics, rs.scenario.slo),
            num_requests=int(metrics.get("num_requests") or 0),
            sim_s=dt,
            percentile=int(rs.scenario.slo.percentile),
        )

    def _count(self, ev: Evaluation) -> None:
        self.n_simulations += 1
        self.sim_seconds += ev.sim_s

    def evaluate_many(self, configs: list[Config], workers: int = 1) -> list[Evaluation]:
        """Evaluate several configs (memoised), the uncached ones in ``workers`` forked
        processes when there are two or more (simulations are independent pure calls).

        Returns:
            The evaluations, in the order of ``configs``.
        """
        todo: dict[str, Config] = {}
        for c in configs:
            key = self.key(c)
            if key not in self.memo and key not in todo:
                todo[key] = c
        for ev in self.evaluate_jobs([Job(c) for c in todo.values()], workers):
            self.memo.setdefault(ev.key, ev)
        return [self.evaluate(c) for c in configs]

    def evaluate_jobs(self, jobs: list[Job], workers: int = 1) -> list[Evaluation]:
        """Simulate each job (a config, optionally with its own seed and base scenario),
        in ``workers`` forked processes when there are two or more (see :func:`fork_map`);
        nothing is memoised here.

        Returns:
            The evaluations, in the order of ``jobs``.
        """
        out = fork_map(self._run, jobs, workers)
        for ev in out:
            self._count(ev)
        return out


@dataclass(frozen=True)
class Job:
    """One simulation for :meth:`Evaluator.evaluate_jobs`: ``config`` under ``seed`` (None =
    the evaluator's) on ``base`` (None = the evaluator's scenario at its fidelity)."""

    config: Config
    seed: int | None = None
    base: ResolvedScenario | None = None


_FORK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def fork_map(fn: Callable[[T], R], items: Sequence[T], workers: int = 1) -> list[R]:
    """``[fn(x) for x in items]``, in ``workers`` forked processes when there are two or more
    items and workers (simulations are independent pure calls). The workers inherit ``fn``
    and ``items`` from the parent (nothing but an index and the result is pickled), so
    ``fn`` may be a closure; it must not rely on side effects reaching the parent.

    Returns:
        The results, in the order of ``items``.
    """
    n = min(workers, len(items))
    if n < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(x) for x in items]
    global _FORK
    _FORK = (fn, items)
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            return list(pool.map(_fork_call, range(len(items))))
    finally:
        _FORK = None


def _fork_call(i: int) -> Any:
    assert _FORK is not None
    fn, items = _FORK
    return fn(items[i])


def default_workers() -> int:
    """Processes for batches of final simulations: the CPUs this process may use, <= 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))
