"""From a configuration to an objective value: resolve, simulate, score, memoise, screen.

Objectives (units in the names of the metrics they read):

- ``throughput``: output tokens per second (``throughput_tok_per_s``), maximised;
- ``goodput``: requests per second that meet every SLO (``goodput_req_per_s``), maximised;
- ``latency``: time per output token at the SLOs' percentile Q (``slo.percentile``, p99
  by default; ``tpot_s.pQ``, seconds), minimised — the same percentile the SLOs, tables,
  JSON keys (``tpot_pQ_s``) and plots use;
- ``auto`` (the default): ``latency`` for open-loop workloads, where every config that
  keeps up delivers the offered load and throughput cannot tell them apart, else
  ``throughput``.

SLOs are a constraint, not a penalty folded into the value: a config *meets the SLOs*
when the pQ of each metric the scenario bounds (TTFT, TPOT, E2E) is within its bound.
Its violation ``max_i(pQ_i / slo_i) − 1`` (<= 0 = met) is given to Optuna with
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
``u`` (throughput × u, or pQ TPOT / u) — is worse than the best feasible value so far by
more than a 10 % margin. Rule 2 is a heuristic bound (queueing is not in it); the margin
keeps it conservative. The bound is reported as the trial's intermediate value. DES
progress is not reported as intermediate values: ``simulate`` has no progress hook, and
the two-fidelity scheme (short trace prefix during search, full trace for the top few)
plays that role.
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario
from spectune.simulator.tree import Tree

from .evaluate import (
    DIRECTIONS,
    OBJECTIVES,
    PARETO,
    PARETO_DIRECTIONS,
    Evaluation,
    Evaluator,
    default_workers,
    objective_value,
    rank,
    slo_violation,
)
from .schedule import StepCosts
from .space import NONE, Config, SearchDims, suggest_config


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
                pct = self.plain.percentile
                return f"optimistic p{pct} TPOT {optimistic:.4g} s > best {best:.4g} s + margin"
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
        pareto: return (throughput, pQ TPOT) for NSGA-II instead of one value.
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
                ev = evaluation_from_attrs(t.user_attrs, self.evaluator.percentile)
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
            if self.screen is not None and config.policy == "fixed":
                # (the closed form bounds a fixed k; a policy's k varies with the batch)
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


def evaluation_from_attrs(attrs: dict[str, Any], percentile: int = 99) -> Evaluation | None:
    """Rebuild an :class:`Evaluation` from a finished trial's user attributes (the study's
    fingerprint pins the scenario, so ``percentile`` is the scenario's ``slo.percentile``)."""
    try:
        config = Config.from_dict(attrs["config"])
        return Evaluation(
            config=config,
            key=attrs["config_key"],
            metrics=attrs["metrics"],
            violation=float(attrs["slo_violation"]),
            num_requests=int(attrs.get("num_requests", 0)),
            sim_s=float(attrs.get("sim_s", 0.0)),
            percentile=percentile,
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
    "PARETO",
    "PARETO_DIRECTIONS",
    "Evaluation",
    "Evaluator",
    "Screen",
    "TrialObjective",
    "default_workers",
    "objective_value",
    "rank",
    "resolve_objective",
    "slo_violation",
]
