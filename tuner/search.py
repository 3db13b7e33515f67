"""The recommendation pipeline behind ``spectune recommend``.

1. Search at *search fidelity*: the first ``search_requests`` requests of the workload
   (default 600 — a prefix keeps the trace's real arrival pattern; about 0.1 s per
   simulation on the shipped Azure example). TPE (default), NSGA-II (``--pareto``) or
   the whole grid (``--exhaustive``), in an Optuna study (see :mod:`.study`).
   TPE is warm-started with plain decoding and the closed-form layer's top few configs
   (the DES's step-cost model at the batch size plain decoding runs at; see
   :func:`warm_start`), enqueued once when the study is new.
2. Re-simulate at *final fidelity* (the whole workload by default): the top
   ``top_n`` configurations of the search, plain decoding, a common engine default
   (k = 5 chain, the value in vLLM's and SGLang's docs examples) on the search's top
   drafter and the scenario's own ``spec``, as one batch of simulations run in parallel
   processes (fork) where CPUs allow. The best at final fidelity is the recommendation.
   With ``--pareto`` the whole search-fidelity front (up to ``PARETO_FINAL_MAX`` configs)
   is re-simulated, and the front reported is the one among final-fidelity runs.
3. Confidence band: the final top configurations are re-run ``band_samples`` times at
   final fidelity, each with another seed (arrivals/lengths/acceptance draws) and a
   resampled acceptance level (one logit shift per drafter, N(0, 0.15²), ~±3 points at
   a = 0.7, standing for the error of a measured acceptance profile). Reported: the
   pick's objective range over the samples relative to its own nominal value, and how
   often it stays ahead of the runner-up.

Fidelity: everything reported beside the pick (the comparison table, the Pareto front,
the band, the JSON) comes from final-fidelity runs; only ``searched`` (the study's
trials, drawn in ``--plot``'s left panel, which says so) is at search fidelity.

Errors: an empty space or unknown objective raise :class:`InputError`; when no
configuration meets the SLOs, :class:`NoFeasibleConfig` carries the full outcome so the
CLI prints the closest config before exiting 2.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from spectune.simulator.errors import InputError, SpectuneError
from spectune.simulator.scenario import ResolvedScenario

from . import study as st
from .band import confidence_band
from .jobs import Helpers, Job, helping
from .objective import (
    DIRECTIONS,
    PARETO_DIRECTIONS,
    Evaluation,
    Evaluator,
    Screen,
    TrialObjective,
    default_workers,
    evaluation_from_attrs,
    rank,
    resolve_objective,
)
from .policies import policy_rows
from .schedule import StepCosts
from .space import NONE, Config, SearchDims, config_params, grid

DEFAULT_SEARCH_REQUESTS = 600
DEFAULT_TRIALS = 30
ENGINE_DEFAULT_K = 5  # vLLM's and SGLang's documented examples speculate 5 tokens
PARETO_FINAL_MAX = 8  # search-front configs re-simulated at final fidelity (--pareto)


@dataclass(frozen=True)
class SearchSettings:
    """Knobs of :func:`run_search` (CLI flags of ``spectune recommend``)."""

    objective: str | None = None
    trials: int | None = None
    exhaustive: bool = False
    pareto: bool = False
    seed: int | None = None  # simulator seed (and sampler seed unless sampler_seed is set)
    sampler_seed: int | None = None
    storage: str | None = None
    study_name: str | None = None
    search_requests: int | None = None
    final_requests: int | None = None  # None = the whole workload
    top_n: int = 2
    band_samples: int = 4
    workers: int | None = None  # processes for the final simulations (default: CPUs, <= 4)
    screen: bool = True
    progress: bool | None = None
    # Many workers (:mod:`.jobs`): the scenario file and --set overrides are stored with the
    # study so that other processes can rebuild it; ``helpers`` starts local worker
    # processes on the study (a shared storage) while this one searches; a worker may stop
    # after worker_limit trials.
    scenario_file: str | None = None
    overrides: tuple[str, ...] = ()
    helpers: Helpers | None = None
    worker_limit: int | None = None
    # The engine speculation policies are simulated for (its batch-size count):
    # recommend --emit's engine; None = vLLM's.
    engine: str | None = None


@dataclass
class SearchOutcome:
    """Everything ``recommend`` reports."""

    objective: str
    direction: str
    best: Evaluation
    plain: Evaluation
    defaults: dict[str, Evaluation]
    finalists: list[Evaluation]
    searched: list[Evaluation]  # the study's trials, at search fidelity
    pareto_front: list[Evaluation]  # at final fidelity
    band: dict[str, Any]  # at final fidelity
    grid_size: int
    trials: int
    simulations: int
    pruned: int
    search_requests: int
    final_requests: int
    study_name: str
    storage: str | None
    wall_s: float
    evaluator: Evaluator = field(repr=False)


class NoFeasibleConfig(SpectuneError):
    """No configuration meets the SLOs; ``outcome`` holds the closest one as ``best``."""

    def __init__(self, message: str, outcome: SearchOutcome):
        super().__init__(message)
        self.outcome = outcome


def total_requests(rs: ResolvedScenario) -> int:
    """Requests the scenario simulates (trace rows capped by ``num_requests``)."""
    wl = rs.scenario.workload
    tr = rs.trace()
    if tr is not None:
        n = len(tr.prompt_tokens)
        return min(n, wl.num_requests) if wl.num_requests else n
    return int(wl.num_requests or 0)


def fingerprint(rs: ResolvedScenario, objective: str, search_n: int, seed: int) -> str:
    body = rs.scenario.model_dump(mode="json", by_alias=True)
    blob = json.dumps([body, objective, search_n, seed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def spec_config(rs: ResolvedScenario) -> Config | None:
    """The scenario's own ``spec`` as a Config (None for explicit tree paths and for a
    policy the search space cannot express: the row would not be the scenario's spec)."""
    spec = rs.scenario.spec
    if spec.tree is not None:
        if spec.tree.paths is not None:
            return None
        return Config(spec.drafter, 0, spec.tree.budget, spec.tree.depth).normalized()
    pol = spec.policy
    if pol is None or pol.kind == "fixed":
        return Config(spec.drafter, spec.num_spec_tokens).normalized()
    if pol.kind == "sglang_adaptive" and pol == type(pol)():
        return Config(spec.drafter, spec.num_spec_tokens, policy="sglang_adaptive")
    if pol.kind == "goodput" and pol == type(pol)():
        return Config(spec.drafter, spec.num_spec_tokens, policy="goodput")
    return None


def warm_start(
    rs: ResolvedScenario,
    dims: SearchDims,
    configs: list[Config],
    plain: Evaluation,
    evaluator: Evaluator,
    k: int,
    seed: int = 0,
) -> list[Config]:
    """The closed-form layer's top ``k`` configs, to enqueue before TPE samples.

    Every grid config is priced with the DES's step-cost model at the batch size plain
    decoding ran at (:class:`StepCosts`, decode tokens per second per sequence at that
    batch — the same order as TPOT at a fixed batch); the ``k`` best distinct effective
    configs (trees that come out identical count once) come first, at the scenario's own
    max_num_seqs. Queueing and tails are not in the model, which is why TPE goes on.
    """
    costs = StepCosts.from_scenario(rs, seed)
    batch = max(1, round(float(plain.metrics.get("mean_batch_size") or 1.0)))
    own = rs.scenario.serving.max_num_seqs
    cap = (
        None
        if not dims.max_num_seqs
        else (own if own in dims.max_num_seqs else max(dims.max_num_seqs))
    )
    scored: dict[str, tuple[float, Config]] = {}
    for c in configs:
        if not c.speculates:
            continue
        c = Config(c.drafter, c.num_spec_tokens, c.tree_budget, c.tree_depth, cap)
        key = evaluator.key(c)
        if key not in scored:
            thr = costs.throughput_tok_per_s(batch, c.drafter, c.num_spec_tokens, evaluator.tree(c))
            scored[key] = (thr, c)
    ranked = sorted(scored.values(), key=lambda t: -t[0])
    return [c for _, c in ranked[:k]]


def _open(rs, s, objective, search_n, seed, sampler_seed, kind, n_trials):
    st.quiet_optuna()
    storage = st.make_storage(s.storage)
    name = s.study_name or f"{Path(rs.source.split(' ')[0]).stem}-{objective}-{kind}"
    directions = PARETO_DIRECTIONS if s.pareto else (DIRECTIONS[objective],)
    fp = fingerprint(rs, "pareto" if s.pareto else objective, search_n, seed)
    sampler = st.make_sampler(kind, sampler_seed, n_trials)
    owner = (
        f"scenario '{rs.scenario.name or '?'}' ({rs.source}), objective {objective}, "
        f"{search_n} requests per trial, seed {seed}"
    )
    job = None
    if s.scenario_file is not None:
        job = Job(
            kind="recommend",
            file=str(Path(s.scenario_file).resolve()),
            overrides=tuple(s.overrides),
            settings={
                "objective": objective,
                "trials": n_trials,
                "exhaustive": s.exhaustive,
                "pareto": s.pareto,
                "seed": seed,
                "sampler_seed": sampler_seed,
                "search_requests": search_n,
            },
        ).to_attr()
    study = st.open_study(name, storage, directions, sampler, fp, owner=owner, job=job)
    return study, name


def _collect(study: optuna.Study, percentile: int) -> tuple[list[Evaluation], int]:
    evals: dict[str, Evaluation] = {}
    pruned = 0
    for t in study.get_trials(deepcopy=False, states=st.FINISHED):
        if t.state == optuna.trial.TrialState.PRUNED:
            pruned += 1
            continue
        ev = evaluation_from_attrs(t.user_attrs, percentile)
        if ev is not None:
            evals.setdefault(ev.key, ev)
    return list(evals.values()), pruned


def pareto_front(evals: list[Evaluation]) -> list[Evaluation]:
    """Feasible configs (all, when none is) not dominated in (throughput ↑, pQ TPOT ↓)."""
    pool = [e for e in evals if e.feasible] or evals
    pts = [(e.value("throughput"), e.value("latency")) for e in pool]
    front = []
    for i, (thr, lat) in enumerate(pts):
        dominated = any((t2 >= thr and l2 <= lat) and (t2 > thr or l2 < lat) for t2, l2 in pts)
        if not dominated:
            front.append(pool[i])
    return sorted(front, key=lambda e: -e.value("throughput"))


@dataclass
class Stage:
    """The search stage's state (what :func:`search_stage` returns)."""

    dims: SearchDims
    objective: str
    seed: int
    total: int
    search_n: int
    configs: list[Config]
    evaluator: Evaluator
    study: optuna.Study
    study_name: str
    plain: Evaluation
    evals: list[Evaluation]
    pruned: int
    ran: int = 0  # trials this process ran
    budget: int = 0  # the study's trial budget


def search_stage(rs: ResolvedScenario, s: SearchSettings, simulate: Any = None) -> Stage:
    """Step 1 of the pipeline: the study at search fidelity (module docstring).

    Raises:
        InputError: empty search space, unknown objective, bad storage.
    """
    dims = SearchDims.from_scenario(rs)
    objective = resolve_objective(s.objective, rs)
    seed = rs.scenario.seed if s.seed is None else s.seed
    total = total_requests(rs)
    search_n = min(total, s.search_requests or DEFAULT_SEARCH_REQUESTS)
    search = Evaluator(
        rs,
        seed=seed,
        num_requests=search_n if search_n < total else None,
        simulate=simulate,
        engine=s.engine,
    )
    configs = grid(dims)
    n_trials = s.trials or min(len(configs), DEFAULT_TRIALS)
    plain = search.evaluate(Config())

    kind = "grid" if s.exhaustive else "nsga2" if s.pareto else "tpe"
    sampler_seed = seed if s.sampler_seed is None else s.sampler_seed
    study, name = _open(rs, s, objective, search_n, seed, sampler_seed, kind, n_trials)
    screen = None
    if s.screen and not (s.exhaustive or s.pareto):
        screen = Screen(
            StepCosts.from_scenario(rs, seed),
            plain,
            objective,
            plain_searched=NONE in dims.searched_drafters(),
        )
    trial_obj = TrialObjective(search, dims, objective, pareto=s.pareto, screen=screen)
    if s.exhaustive:
        n_trials = len(configs)
        with _helpers(s, name):
            ran = st.run_queue(
                study,
                trial_obj,
                [config_params(c, dims) for c in configs],
                progress=s.progress,
                limit=s.worker_limit,
            )
    else:
        if not s.pareto and st.claim_setup(study):  # one worker enqueues the warm start
            k = max(3, min(8, n_trials // 4))
            warm = [Config(), *warm_start(rs, dims, configs, plain, search, k, seed)]
            st.enqueue_missing(study, [config_params(c, dims) for c in warm])
        with _helpers(s, name):
            ran = st.run(study, trial_obj, n_trials, progress=s.progress, limit=s.worker_limit)
    evals, pruned = _collect(study, search.percentile)
    for e in evals:  # trials from earlier runs / other workers: same scenario and fidelity
        search.remember(e)
    return Stage(
        dims,
        objective,
        seed,
        total,
        search_n,
        configs,
        search,
        study,
        name,
        plain,
        evals or [plain],
        pruned,
        ran,
        n_trials,
    )


def _helpers(s: SearchSettings, study_name: str) -> AbstractContextManager[None]:
    """Local worker processes (``s.helpers``) on the study while this one works."""
    if s.helpers is not None and (s.storage is None or s.scenario_file is None):
        raise InputError(
            "several workers need a storage they share and the scenario file",
            source="--workers",
        )
    return helping(s.helpers, study_name, s.storage or "")


def run_search(rs: ResolvedScenario, s: SearchSettings, simulate: Any = None) -> SearchOutcome:
    """Search, re-simulate the finalists, band the pick (see the module docstring).

    Raises:
        InputError: empty search space, unknown objective, bad storage.
        NoFeasibleConfig: no configuration meets the SLOs.
    """
    t0 = time.perf_counter()
    stage = search_stage(rs, s, simulate)
    dims, objective, seed, search = stage.dims, stage.objective, stage.seed, stage.evaluator
    total, search_n, evals = stage.total, stage.search_n, stage.evals
    final_n = min(total, s.final_requests or total)
    final = (
        search
        if final_n == search_n
        else Evaluator(
            rs,
            seed=seed,
            num_requests=final_n if final_n < total else None,
            simulate=simulate,
            engine=s.engine,
        )
    )
    ranked = rank(evals, objective)
    front = pareto_front(evals) if s.pareto else []

    # ---- final fidelity: finalists, plain decoding, engine defaults
    finalists_cfg: list[Config] = []
    source = front if s.pareto else ranked
    cap = max(s.top_n, PARETO_FINAL_MAX) if s.pareto else s.top_n
    for e in source:
        if e.config not in finalists_cfg:
            finalists_cfg.append(e.config)
        if len(finalists_cfg) >= cap:
            break
    # The k=5 default goes on the search's top drafter, so every final simulation is
    # known up front and runs as one batch (in parallel where CPUs allow).
    top = ranked[0].config
    ref_drafter = (
        top.drafter
        if top.speculates
        else next((d for d in dims.searched_drafters() if d != NONE), None)
    )
    extra: dict[str, Config] = {}
    if ref_drafter is not None:
        extra[f"k={ENGINE_DEFAULT_K} chain (engine docs' default)"] = Config(
            ref_drafter, ENGINE_DEFAULT_K
        )
    own = spec_config(rs)
    if own is not None and own.speculates:
        extra[f"scenario spec ({own.label()})"] = own
    extra.update(policy_rows(top, ref_drafter, ENGINE_DEFAULT_K))
    batch = [Config(), *finalists_cfg, *extra.values()]
    workers = s.workers if s.workers is not None else default_workers()
    done = final.evaluate_many(batch, workers)
    plain_final = done[0]
    # Every configuration simulated at final fidelity competes for the pick: the search's
    # order at its (shorter) fidelity can differ, e.g. when the prefix misses later bursts.
    # A policy the search space does not list is shown, not picked.
    unique = {e.key: e for e in done if e.config.policy in ("fixed", *dims.policies)}
    finalists = rank(list(unique.values()), objective)
    best = finalists[0]
    defaults = dict(zip(extra, done[1 + len(finalists_cfg) :], strict=True))
    fixed = [e for e in finalists if e.config.speculates and e.config.policy == "fixed"]
    if fixed and "fixed" in dims.policies and len(dims.policies) > 1:
        defaults[f"best fixed k ({fixed[0].config.label()})"] = fixed[0]

    if s.pareto:  # the front among final-fidelity runs, not the search's
        front = pareto_front(finalists)
    band = confidence_band(
        finalists, objective, final, seed, s.band_samples, requests=final_n, workers=workers
    )
    outcome = SearchOutcome(
        objective="pareto" if s.pareto else objective,
        direction=DIRECTIONS[objective],
        best=best,
        plain=plain_final,
        defaults=defaults,
        finalists=finalists,
        searched=ranked,
        pareto_front=front,
        band=band,
        grid_size=len(stage.configs),
        trials=st.count_finished(stage.study),
        simulations=search.n_simulations + (final.n_simulations if final is not search else 0),
        pruned=stage.pruned,
        search_requests=search_n,
        final_requests=final_n,
        study_name=stage.study_name,
        storage=s.storage,
        wall_s=time.perf_counter() - t0,
        evaluator=final,
    )
    if not best.feasible:
        raise NoFeasibleConfig(no_feasible_message(rs, best), outcome)
    return outcome


def no_feasible_message(rs: ResolvedScenario, closest: Evaluation) -> str:
    slo = rs.scenario.slo
    parts = []
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E")):
        bound = getattr(slo, key)
        if bound:
            got = (closest.metrics.get(key) or {}).get(f"p{slo.percentile}")
            parts.append(
                f"p{slo.percentile} {label} {got:.3g} s vs {bound:g} s"
                if got is not None
                else label
            )
    return (
        "no configuration meets the SLOs; the closest is "
        f"{closest.config.label()} ({'; '.join(parts)})"
    )
