"""From a configuration to an objective value: resolve, simulate, score, memoise, screen.

Objectives (units in the names of the metrics they read):

- ``throughput``: output tokens per second (``throughput_tok_per_s``), maximised;
- ``goodput``: requests per second that meet every SLO (``goodput_req_per_s``), maximised;
- ``latency``: p99 time per output token (``tpot_s.p99``, seconds), minimised;
- ``auto`` (the default): ``latency`` for open-loop workloads, where every config that
  keeps up delivers the offered load and throughput cannot tell them apart, else
  ``throughput``.

SLOs are a constraint, not a penalty folded into the value: a config *meets the SLOs*
when the p99 of each metric the scenario bounds (TTFT, TPOT, E2E) is within its bound.
Its violation ``max_i(p99_i / slo_i) − 1`` (<= 0 = met) is given to Optuna with
``trial.set_constraint("slo", v)``, so TPE / NSGA-II prefer feasible trials, and ranking
puts every feasible config before every infeasible one, infeasible ones by smallest
violation (the "closest config" reported when none meets the SLOs).

Memo: identical configurations (TPE proposes duplicates on small discrete spaces; resumed
or parallel studies repeat them) are simulated once. The key is the *effective* config
(drafter, k, the actual tree's paths, max_num_seqs), first looked up in this process,
then among the study's completed trials (other workers, earlier runs).

Pruning (``Screen``, closed-form layer; never used by ``--exhaustive`` or ``--pareto``):
before simulating, a config's batch-1 speedup bound ``u`` is priced with the DES's own
step costs (speculation pays most at batch 1 and less as the batch grows). A trial is
pruned when (1) ``u < 1`` and plain decoding is in the search (it cannot beat plain
decoding at any load), or (2) the optimistic value — plain decoding's value scaled by
``u`` (throughput × u, or p99 TPOT / u) — is worse than the best feasible value so far by
more than a 10 % margin. Rule 2 is a heuristic bound (queueing is not in it); the margin
keeps it conservative. The bound is reported as the trial's intermediate value. DES
progress is not reported as intermediate values: ``simulate`` has no progress hook, and
the two-fidelity scheme (short trace prefix during search, full trace for the top few)
plays that role.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import optuna

from spectune.simulator import analytic
from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario, auto_kv_cache_tokens
from spectune.simulator.schema import Slo
from spectune.simulator.tree import Tree

from .schedule import StepCosts
from .space import NONE, Config, SearchDims, suggest_config

OBJECTIVES = ("throughput", "goodput", "latency")
DIRECTIONS = {"throughput": "maximize", "goodput": "maximize", "latency": "minimize"}
PARETO = ("throughput", "latency")  # values of a --pareto trial, in this order
PARETO_DIRECTIONS = ("maximize", "minimize")


def resolve_objective(name: str | None, rs: ResolvedScenario) -> str:
    """The objective to optimise (``auto`` resolved from the workload mode).

    Raises:
        InputError: an unknown objective.
    """
    name = (name or getattr(rs.scenario.search, "objective", None) or "auto").lower()
    if name == "auto":
        return "latency" if rs.scenario.workload.mode == "open" else "throughput"
    if name not in OBJECTIVES:
        raise InputError(
            f"unknown objective {name!r} (choose throughput, goodput, latency or auto)",
            source="--objective",
        )
    return name


def p99(metrics: dict[str, Any], key: str) -> float:
    v = (metrics.get(key) or {}).get("p99")
    return float(v) if v is not None else math.nan


def slo_violation(metrics: dict[str, Any], slo: Slo) -> float:
    """max_i(p99_i / slo_i) − 1 over the bounded metrics; <= 0 meets the SLOs, -1 = no SLOs."""
    ratios = []
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        bound = getattr(slo, key)
        if bound:
            v = p99(metrics, key)
            ratios.append(v / bound if math.isfinite(v) else math.inf)
    if not ratios:
        return -1.0
    return max(ratios) - 1.0


def objective_value(metrics: dict[str, Any], objective: str) -> float:
    """The metric an objective reads (NaN = nothing measured becomes the worst value)."""
    if objective == "latency":
        v = p99(metrics, "tpot_s")
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
    """

    config: Config
    key: str
    metrics: dict[str, Any]
    violation: float
    num_requests: int
    sim_s: float = 0.0

    @property
    def feasible(self) -> bool:
        return self.violation <= 0.0

    def value(self, objective: str) -> float:
        return objective_value(self.metrics, objective)

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
    ):
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
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

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
            rs = rs.with_spec(drafter="none", num_spec_tokens=0, tree=None)
        elif tree is not None:
            rs = rs.with_spec(
                drafter=c.drafter, num_spec_tokens=tree.max_depth, tree={"paths": tree.paths()}
            )
        else:
            rs = rs.with_spec(drafter=c.drafter, num_spec_tokens=c.num_spec_tokens, tree=None)
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
        rs = self.scenario_for(config, base)
        t0 = time.perf_counter()
        result = self._simulate(rs, self.seed if seed is None else seed)
        dt = time.perf_counter() - t0
        self.n_simulations += 1
        self.sim_seconds += dt
        metrics = dict(result.metrics)
        ev = Evaluation(
            config=config.normalized(),
            key=key,
            metrics=metrics,
            violation=slo_violation(metrics, rs.scenario.slo),
            num_requests=int(metrics.get("num_requests") or 0),
            sim_s=dt,
        )
        if memo_ok:
            self.memo[key] = ev
        return ev

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
        n = min(workers, len(todo))
        if n >= 2 and "fork" in multiprocessing.get_all_start_methods():
            global _POOL_EVALUATOR
            _POOL_EVALUATOR = self
            ctx = multiprocessing.get_context("fork")
            try:
                with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
                    for ev in pool.map(_pool_evaluate, list(todo.values())):
                        self.memo[ev.key] = ev
                        self.n_simulations += 1
                        self.sim_seconds += ev.sim_s
            finally:
                _POOL_EVALUATOR = None
        return [self.evaluate(c) for c in configs]


_POOL_EVALUATOR: Evaluator | None = None


def _pool_evaluate(config: Config) -> Evaluation:
    """Run in a forked worker: the parent's evaluator is inherited, not pickled."""
    assert _POOL_EVALUATOR is not None
    return _POOL_EVALUATOR.evaluate(config)


def default_workers() -> int:
    """Processes for batches of final simulations: the CPUs this process may use, <= 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


class Screen:
    """Closed-form pruning of hopeless trials (rules in the module docstring).

    Args:
        costs: the DES's step-cost model for this scenario.
        plain: plain decoding's evaluation at the search fidelity.
        objective: the objective name.
        plain_searched: whether plain decoding is itself a candidate.
        margin: relative slack of rule 2.
    """

    def __init__(
        self,
        costs: StepCosts,
        plain: Evaluation,
        objective: str,
        *,
        plain_searched: bool,
        margin: float = 0.10,
    ):
        self.costs = costs
        self.plain = plain
        self.objective = objective
        self.plain_searched = plain_searched
        self.margin = margin

    def bound(self, config: Config, tree: Tree | None) -> float:
        """Batch-1 speedup bound of ``config`` over plain decoding."""
        return self.costs.speedup(1, config.drafter, config.num_spec_tokens, tree)

    def reason(self, config: Config, tree: Tree | None, best: float | None) -> str | None:
        """Why ``config`` is hopeless, or None to simulate it."""
        if not config.speculates:
            return None
        u = self.bound(config, tree)
        if u < 1.0 and self.plain_searched:
            return f"batch-1 speedup bound {u:.3f} < 1: cannot beat plain decoding"
        if best is None or self.objective == "goodput":
            return None
        base = self.plain.value(self.objective)
        if not math.isfinite(base) or base <= 0:
            return None
        if self.objective == "latency":
            optimistic = base / u
            if optimistic > best * (1.0 + self.margin):
                return f"optimistic p99 TPOT {optimistic:.4g} s > best {best:.4g} s + margin"
        else:
            optimistic = base * u
            if optimistic < best * (1.0 - self.margin):
                return f"optimistic throughput {optimistic:.4g} < best {best:.4g} − margin"
        return None


class TrialObjective:
    """The Optuna objective: suggest a config, simulate it (memoised), record, score.

    Args:
        evaluator: simulates configs.
        dims: the search space.
        objective: objective name (ignored with ``pareto``).
        pareto: return (throughput, p99 TPOT) for NSGA-II instead of one value.
        screen: closed-form pruning, or None.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        dims: SearchDims,
        objective: str,
        *,
        pareto: bool = False,
        screen: Screen | None = None,
    ):
        self.evaluator = evaluator
        self.dims = dims
        self.objective = objective
        self.pareto = pareto
        self.screen = screen
        self.best: float | None = None
        self.pruned = 0

    def _from_study(self, trial: optuna.Trial, key: str) -> Evaluation | None:
        # The study's fingerprint pins scenario and fidelity, so a completed trial with the
        # same key is the same simulation.
        done = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        for t in done:
            if t.user_attrs.get("config_key") == key and "metrics" in t.user_attrs:
                ev = evaluation_from_attrs(t.user_attrs)
                if ev is not None:
                    self.evaluator.remember(ev)
                    return ev
        return None

    def _update_best(self, ev: Evaluation) -> None:
        if not ev.feasible:
            return
        v = ev.value(self.objective)
        if self.best is None:
            self.best = v
        elif DIRECTIONS[self.objective] == "maximize":
            self.best = max(self.best, v)
        else:
            self.best = min(self.best, v)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        config = suggest_config(trial, self.dims)
        key = self.evaluator.key(config)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("config_key", key)
        ev = self.evaluator.cached(key) or self._from_study(trial, key)
        trial.set_user_attr("cached", ev is not None)
        if ev is None:
            if self.screen is not None:
                reason = self.screen.reason(config, self.evaluator.tree(config), self.best)
                if reason is not None:
                    u = self.screen.bound(config, self.evaluator.tree(config))
                    trial.report(u, step=0)
                    trial.set_user_attr("pruned_by", reason)
                    self.pruned += 1
                    raise optuna.TrialPruned(reason)
            ev = self.evaluator.evaluate(config)
        self._update_best(ev)
        record(trial, ev)
        if self.pareto:
            return (ev.value("throughput"), ev.value("latency"))
        return ev.value(self.objective)


def record(trial: optuna.Trial, ev: Evaluation) -> None:
    """Store an evaluation on a trial: full metrics as user attributes, SLO as constraint."""
    trial.set_user_attr("metrics", _jsonable(ev.metrics))
    trial.set_user_attr("slo_violation", float(ev.violation))
    trial.set_user_attr("feasible", ev.feasible)
    trial.set_user_attr("num_requests", ev.num_requests)
    trial.set_user_attr("sim_s", round(ev.sim_s, 4))
    v = ev.violation if math.isfinite(ev.violation) else 1e9
    trial.set_constraint("slo", float(v))


def evaluation_from_attrs(attrs: dict[str, Any]) -> Evaluation | None:
    """Rebuild an :class:`Evaluation` from a finished trial's user attributes."""
    try:
        config = Config.from_dict(attrs["config"])
        return Evaluation(
            config=config,
            key=attrs["config_key"],
            metrics=attrs["metrics"],
            violation=float(attrs["slo_violation"]),
            num_requests=int(attrs.get("num_requests", 0)),
            sim_s=float(attrs.get("sim_s", 0.0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _jsonable(obj: Any) -> Any:
    """Metrics as plain JSON types (storages serialise user attributes as JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


__all__ = [
    "DIRECTIONS",
    "NONE",
    "OBJECTIVES",
    "Evaluation",
    "Evaluator",
    "Screen",
    "TrialObjective",
    "rank",
    "resolve_objective",
    "slo_violation",
]
