"""Where speculation stops paying: plain decoding and each drafter across load (``spectune
sweep``).

At each level of one load axis the scenario is simulated with plain decoding and with
every drafter of ``search.drafters`` at every chain length of ``search.num_spec_tokens``
(chains; trees are left to ``recommend``), and with each speculation policy of
``policies`` (default: the batch-size schedule, SGLang's adaptive mode and the goodput
rule, :mod:`spectune.tuner.policies`) at the drafter's largest k. Per drafter and metric
the best fixed k at that level, and each policy, is compared with plain decoding; the
*crossover* is the first level from which it no longer beats plain decoding (speedup <=
1): throughput (higher is better), TPOT p50, TPOT at the SLOs' percentile and TTFT p50
(lower is better).

Load axes:

- ``load``: open loop, the scenario's arrivals sped up ``x`` times (a trace's
  ``time_scale``, a Poisson rate's multiple);
- ``concurrency``: a closed loop of that many clients;
- ``batch``: offline (every request at t = 0) with ``max_num_seqs`` = the level.

Each level simulates the first ``requests`` requests of the workload (a trace's prefix
keeps its arrival pattern), the same seed everywhere (common random numbers), all runs in
parallel processes where CPUs allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario

from .evaluate import Evaluation, Evaluator, Job, default_workers, percentile_value
from .space import NONE, Config, SearchDims, policy_label

AXES = ("load", "concurrency", "batch")
DEFAULT_POLICIES = ("schedule", "sglang_adaptive", "goodput")
DEFAULT_REQUESTS = 1000
MAX_LEVELS = 32


@dataclass(frozen=True)
class Metric:
    key: str  # metric name in a simulation's metrics
    q: int | None  # percentile, None for a scalar
    higher_is_better: bool
    label: str

    def of(self, ev: Evaluation) -> float:
        if self.q is None:
            return float(ev.metrics.get(self.key) or 0.0)
        return percentile_value(ev.metrics, self.key, self.q)


def metrics_for(percentile: int) -> list[Metric]:
    out = [
        Metric("throughput_tok_per_s", None, True, "output tok/s"),
        Metric("tpot_s", 50, False, "TPOT p50"),
    ]
    if percentile != 50:
        out.append(Metric("tpot_s", percentile, False, f"TPOT p{percentile}"))
    out.append(Metric("ttft_s", 50, False, "TTFT p50"))
    return out


@dataclass
class Level:
    """Every run at one level of the axis."""

    level: float
    plain: Evaluation
    runs: dict[str, list[Evaluation]]  # drafter -> one per k, in k order
    # drafter -> policy -> its run at the drafter's largest k
    policy_runs: dict[str, dict[str, Evaluation]] = field(default_factory=dict)


@dataclass
class SweepResult:
    axis: str
    levels: list[Level]
    drafters: list[str]
    ks: list[int]
    metrics: list[Metric]
    requests: int
    simulations: int
    seed: int
    policies: tuple[str, ...] = ()

    def best(self, lv: Level, drafter: str, m: Metric, policy: str = "fixed") -> Evaluation:
        """The drafter's best fixed k on ``m`` at this level, or its run with ``policy``."""
        if policy != "fixed":
            return lv.policy_runs[drafter][policy]
        runs = lv.runs[drafter]
        pick = max if m.higher_is_better else min
        return pick(runs, key=m.of)

    def speedup(self, lv: Level, drafter: str, m: Metric, policy: str = "fixed") -> float:
        """> 1 when the drafter's best k (or ``policy``) beats plain decoding on ``m``."""
        b, p = m.of(self.best(lv, drafter, m, policy)), m.of(lv.plain)
        if m.higher_is_better:
            return b / p if p > 0 else math.inf
        return p / b if b > 0 else math.inf

    def crossover(self, drafter: str, m: Metric, policy: str = "fixed") -> float | None:
        """The first level from which the drafter (its best fixed k, or ``policy``) no
        longer beats plain decoding (None: it pays at every level swept)."""
        for lv in self.levels:
            if self.speedup(lv, drafter, m, policy) <= 1.0:
                return lv.level
        return None

    def lines(self) -> list[tuple[str, str, str]]:
        """(drafter, policy, label) of every line compared with plain decoding."""
        out = []
        for d in self.drafters:
            out.append((d, "fixed", f"{d} (best k)"))
            k = max(self.ks)
            out += [(d, p, f"{d} k<={k}, {policy_label(p)}") for p in self.policies]
        return out


def level_scenario(
    rs: ResolvedScenario, axis: str, level: float, requests: int
) -> ResolvedScenario:
    """The scenario at one level of ``axis`` (module docstring), ``requests`` requests."""
    wl = rs.scenario.workload
    if axis == "load":
        if wl.mode != "open":
            raise InputError(
                f"--load scales open-loop arrivals; this workload is {wl.mode} (use "
                "--concurrency or --batch)",
                source=rs.source,
                field="workload.mode",
            )
        if rs.trace_path is not None:
            out = rs.with_workload(time_scale=float(wl.time_scale) * level, num_requests=requests)
        else:
            arrival = wl.arrival.model_dump()
            arrival["rate_per_s"] = float(arrival["rate_per_s"]) * level
            out = rs.with_workload(arrival=arrival, num_requests=requests)
        return out
    if axis == "concurrency":
        return rs.with_workload(mode="closed", concurrency=int(level), num_requests=requests)
    return rs.with_workload(mode="offline", num_requests=requests).with_serving(
        max_num_seqs=int(level)
    )


def sweep(
    rs: ResolvedScenario,
    axis: str,
    levels: list[float],
    *,
    requests: int = DEFAULT_REQUESTS,
    seed: int | None = None,
    workers: int | None = None,
    simulate: Any = None,
    policies: tuple[str, ...] = DEFAULT_POLICIES,
) -> SweepResult:
    """Plain decoding, every drafter's chains and its ``policies`` at each level (module
    docstring).

    Raises:
        InputError: an unknown axis, bad levels, no drafter to compare, a workload the
            axis cannot scale.
    """
    if axis not in AXES:
        raise InputError(f"unknown axis {axis!r} (axes: {', '.join(AXES)})", source="--axis")
    flag = f"--{axis}"
    if not levels or len(levels) > MAX_LEVELS:
        raise InputError(f"give 1..{MAX_LEVELS} levels", source=flag)
    for v in levels:
        if not (math.isfinite(v) and v > 0) or (axis != "load" and v != int(v)):
            kind = "a positive number" if axis == "load" else "a positive integer"
            raise InputError(f"each level must be {kind}, got {v:g}", source=flag)
    if requests <= 0:
        raise InputError(f"must be > 0, got {requests}", source="--requests")
    dims = SearchDims.from_scenario(rs)
    drafters = [d for d in dims.searched_drafters() if d != NONE]
    ks = sorted({int(k) for k in rs.scenario.search.num_spec_tokens if int(k) > 0})
    if not drafters or not ks:
        raise InputError(
            "nothing to compare with plain decoding: search.drafters and "
            "search.num_spec_tokens name no drafter / k > 0",
            source=rs.source,
            field="search",
        )
    seed = rs.scenario.seed if seed is None else seed
    trace = rs.trace()
    n = requests if trace is None else min(requests, len(trace.prompt_tokens))
    levels = sorted(set(levels))
    bases = [level_scenario(rs, axis, lv, n) for lv in levels]
    configs = [Config()] + [Config(drafter=d, num_spec_tokens=k) for d in drafters for k in ks]
    configs += [Config(d, max(ks), policy=p) for d in drafters for p in policies]
    ev = Evaluator(rs, seed=seed, simulate=simulate)
    jobs = [Job(c, base=b) for b in bases for c in configs]
    runs = ev.evaluate_jobs(jobs, default_workers() if workers is None else workers)
    out = []
    per = len(configs)
    for i, lv in enumerate(levels):
        chunk = runs[i * per : (i + 1) * per]
        by: dict[str, list[Evaluation]] = {d: [] for d in drafters}
        pol: dict[str, dict[str, Evaluation]] = {d: {} for d in drafters}
        for e in chunk[1:]:
            if e.config.policy == "fixed":
                by[e.config.drafter].append(e)
            else:
                pol[e.config.drafter][e.config.policy] = e
        out.append(Level(lv, chunk[0], by, pol))
    return SweepResult(
        axis=axis,
        levels=out,
        drafters=drafters,
        ks=ks,
        metrics=metrics_for(int(rs.scenario.slo.percentile)),
        requests=n,
        simulations=len(jobs),
        seed=seed,
        policies=tuple(policies),
    )
