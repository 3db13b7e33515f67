"""``simulate(scenario, seed) -> SimResult``: the discrete-event simulator as one library call.

Pure and deterministic: the same resolved scenario and seed give the same result. Four
random streams are spawned from ``numpy.random.SeedSequence(seed)``, one per purpose, in a
fixed order: arrival gaps, request lengths, per-request acceptance levels, per-step
acceptance draws. Changing one part of a scenario (say the draft length) therefore leaves
the other streams, and the requests, unchanged.

Configuration rules:

- ``spec.drafter: none``, ``num_spec_tokens: 0`` without a tree, or an empty tree all mean
  plain decoding, and give identical results (no draft cost, one token per step, and a
  ``kv_cache_tokens: auto`` capacity computed without a drafter, since no drafter loads).
- With ``spec.tree``, the tree decides the draft shape and ``num_spec_tokens`` is ignored
  (``paths`` as given; ``budget``/``depth`` build the optimal tree from the drafter's
  ranked acceptance, depth defaulting to the budget).
- ``kv_cache_tokens: auto`` is derived for the spec being simulated (the drafter's weights
  and, for a draft model, its KV cache share the memory).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .acceptance import AcceptanceModel, draw_steps
from .analytic import optimal_tree
from .engine import Engine, EngineResult
from .engine_rules import rules as engine_rules
from .errors import InputError
from .latency import ForwardLatency, LatencyModel
from .metrics import compute_metrics
from .policy import Speculation, k_summary, policy_summary, reference_step_ms
from .policy_rules import build_policy
from .scenario import ResolvedScenario, auto_kv_cache_tokens
from .scheduler import Scheduler
from .schema import LatencyProfile, SpecConfig
from .stepcost import StepCost, step_overheads
from .tree import Tree
from .workload import build_requests

STREAMS = ("arrivals", "lengths", "acceptance_levels", "acceptance_steps")


@dataclass(frozen=True)
class SimResult:
    """Result of one simulation.

    Attributes:
        metrics: the JSON contract of ``spectune simulate --json`` (see
            :mod:`~spectune.simulator.metrics`), plus ``config``, ``warnings``,
            ``wall_s`` and ``events_per_s``.
        engine: the raw per-request arrays and counters (not serialised).
    """

    metrics: dict[str, Any]
    engine: EngineResult | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The metrics as a JSON-ready dict."""
        return dict(self.metrics)


# Latency models are rebuilt per profile object at most once per process: a tuner calls
# simulate() hundreds of times on the same profiles. Keyed by id() with the profile kept
# alive in the value, so an id cannot be reused while cached.
_MODELS: dict[int, tuple[LatencyProfile, LatencyModel]] = {}


def _latency_model(profile: LatencyProfile, source: str) -> LatencyModel:
    hit = _MODELS.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    if len(_MODELS) >= 32:
        _MODELS.clear()
    model = LatencyModel.from_profile(profile, source=source)
    _MODELS[id(profile)] = (profile, model)
    return model


def tree_level_queries(widths: list[int], mode: str = "incremental") -> tuple[int, ...]:
    """Query tokens of each draft pass for a tree with ``widths`` nodes per depth: the root,
    then per level the previous level's nodes (``incremental``) or all nodes above it
    (``refeed``). A chain gives ``(1,) * k`` either way."""
    if not widths:
        return ()
    if mode == "refeed" and max(widths) > 1:  # a chain commits each draft: never refed
        return (1, *np.cumsum(widths[:-1]).tolist())
    return (1, *widths[:-1])


def resolve_tree(rs: ResolvedScenario) -> Tree:
    """The draft shape the scenario's spec asks for (the empty tree = plain decoding).

    Raises:
        InputError: a tree without ranked acceptance, or bad tree paths.
    """
    spec = rs.scenario.spec
    if spec.drafter == "none":
        return Tree.chain(0)
    if spec.tree is None:
        return Tree.chain(spec.num_spec_tokens)
    if spec.tree.paths is not None:
        return Tree.from_paths(spec.tree.paths)
    acc = rs.drafters[spec.drafter].acceptance
    if acc.ranked is None:
        raise InputError(
            f"tree budget needs ranked acceptance for drafter '{spec.drafter}'",
            source=rs.source,
            field="spec.tree.budget",
        )
    budget = int(spec.tree.budget or 0)
    return optimal_tree(acc.ranked, budget, int(spec.tree.depth or budget))


def iteration_pricer(
    rs: ResolvedScenario,
    drafter: str | None,
    tree: Tree,
    target: ForwardLatency,
    draft: ForwardLatency | None = None,
) -> StepCost:
    """The DES's pricer of one iteration with ``drafter`` drafting ``tree`` (the empty tree
    or no drafter: plain decoding): the serving and profile host overheads, the drafter's
    own terms, the engine's draft-pass rules (``serving.engine``). Everything that prices
    iterations outside the DES (the batch-size schedule, the tuner's screen, the capacity
    prober) uses this, so they price what the DES runs.

    Args:
        rs: the scenario (serving, target profile's host overhead, drafters).
        drafter: a drafter's name, or None.
        tree: the draft shape (``Tree.chain(k)`` for a chain).
        target: the target's forward latency.
        draft: the drafter's forward latency (draft models and heads).
    """
    sc = rs.scenario
    spec = rs.drafters[drafter].spec if drafter and drafter != "none" and tree.num_nodes else None
    kind = spec.kind if spec else None
    overhead_ms, overhead_per_seq_ms = step_overheads(
        sc.serving, spec, tree, rs.target.host_overhead
    )
    mode = spec.tree_draft if spec else "incremental"
    levels = tree_level_queries(tree.width_per_depth(), mode)
    levels = engine_rules(sc.serving.engine).draft_levels(kind, tree, levels)
    return StepCost(
        target,
        kind=kind,
        draft=draft if spec else None,
        level_queries=levels,
        nodes=tree.num_nodes,
        self_fraction=(spec.self_layers or 0) / rs.target.model.layers if spec else 0.0,
        ngram_ms_per_token=spec.draft_ms_per_token if spec else 0.0,
        overhead_ms=overhead_ms,
        overhead_per_seq_ms=overhead_per_seq_ms,
        fused_prefill=sc.serving.prefill == "fused",
        padded_query=sc.serving.attention_context == "max",
    )


def simulate(
    rs: ResolvedScenario,
    seed: int | None = None,
    *,
    progress: bool = False,
    target_latency: ForwardLatency | None = None,
    draft_latency: ForwardLatency | None = None,
    log: bool = False,
) -> SimResult:
    """Simulate the scenario's workload served with its spec config.

    Args:
        rs: a resolved scenario (:func:`~spectune.simulator.scenario.load_scenario`).
        seed: random seed; None = the scenario's ``seed``.
        progress: show a progress bar on stderr (only when stderr is a terminal).
        target_latency: price target forwards with this model instead of the target's
            profile (tests pass an exact :class:`~spectune.simulator.latency.ConstantLatency`).
        draft_latency: the same for the drafter's profile.
        log: keep the engine's ``(event, time, request | batch)`` log in
            ``result.engine.log``.

    Returns:
        The result; ``result.metrics`` holds every metric.

    Raises:
        InputError: the scenario cannot be simulated (e.g. a request larger than the
            KV cache, a tree without ranked acceptance, an unreadable trace).
    """
    try:
        return _simulate(rs, seed, progress, target_latency, draft_latency, log)
    except InputError as e:
        if e.source is not None:
            raise
        raise InputError(e.message, source=rs.source, field=e.field) from None


def _simulate(
    rs: ResolvedScenario,
    seed: int | None,
    progress: bool,
    target_latency: ForwardLatency | None,
    draft_latency: ForwardLatency | None,
    log: bool,
) -> SimResult:
    wall0 = time.perf_counter()
    sc = rs.scenario
    seed = sc.seed if seed is None else int(seed)
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    rngs = {name: np.random.default_rng(c) for name, c in zip(STREAMS, children, strict=True)}
    requests = build_requests(sc.workload, rs.trace_path, rngs["arrivals"], rngs["lengths"])
    warnings = list(requests.warnings)

    tree = resolve_tree(rs)
    plain = tree.num_nodes == 0
    rd = None if plain else rs.drafters[sc.spec.drafter]
    kv_tokens = rs.kv_cache_tokens
    if sc.serving.kv_cache_tokens == "auto":
        eff = sc.model_copy(update={"spec": SpecConfig()}) if plain else sc
        kv_tokens = auto_kv_cache_tokens(eff, rs.target, rs.drafters, rs.source)

    target = target_latency or _latency_model(rs.target, f"{rs.source}: target.latency_profile")
    models = [("target", target)]
    acc_model = None
    draft = None
    kind = None
    if rd is not None:
        kind = rd.spec.kind
        if sc.spec.tree is None:
            acc_model = AcceptanceModel.for_chain(rd.acceptance, tree.num_nodes, kind)
        else:
            acc_model = AcceptanceModel.for_tree(rd.acceptance, tree, kind)
        warnings += acc_model.warnings
        if kind in ("draft_model", "heads"):
            assert rd.latency is not None
            draft = draft_latency or _latency_model(
                rd.latency, f"{rs.source}: drafter {rd.spec.name}"
            )
            models.append((f"drafter {rd.spec.name}", draft))

    def cost_for(tr: Tree) -> StepCost:
        return iteration_pricer(rs, sc.spec.drafter if rd else None, tr, target, draft)

    cost = cost_for(tree)
    chain_costs: dict[int, StepCost] = {}

    def chain_cost(k: int) -> StepCost:
        """A chain of k's pricer, built once (the policy's cost table and the engine share it)."""
        if k not in chain_costs:
            chain_costs[k] = cost_for(Tree.chain(k))
        return chain_costs[k]

    nodes = tree.num_nodes
    policy = None
    if sc.spec.policy is not None and sc.spec.policy.kind != "fixed":
        step_ms = reference_step_ms(chain_cost, requests.prompt_tokens, requests.output_tokens)
        policy = build_policy(sc.spec.policy, nodes, sc.serving.max_num_seqs, step_ms)
        if policy.kmax != nodes:  # draw at the largest k the policy may pick
            nodes = policy.kmax
            acc_model = AcceptanceModel.for_chain(rd.acceptance, nodes, kind)  # type: ignore[union-attr]
            cost = chain_cost(nodes)
    draws = draw_steps(
        acc_model,
        requests.output_tokens,
        rngs["acceptance_levels"],
        rngs["acceptance_steps"],
        identical=sc.workload.identical,
    )
    speculation = None
    if policy is not None:
        speculation = Speculation(policy, draws, chain_cost)
    sched = Scheduler(
        requests.prompt_tokens,
        requests.output_tokens,
        draws.cum,
        draws.off,
        nodes=nodes,
        max_num_seqs=sc.serving.max_num_seqs,
        max_batched_tokens=sc.serving.max_batched_tokens,
        kv_cache_tokens=kv_tokens,
        policy=sc.serving.preemption,
        drafted_cum=draws.drafted_cum,
        drafting_cum=draws.drafting_cum,
    )
    extrap0 = {name: getattr(m, "extrapolated", 0) for name, m in models}
    bar = _progress_bar(requests.num_requests) if progress else None
    try:
        engine = Engine(
            requests,
            sched,
            cost,
            depth=max(tree.max_depth, nodes),
            log=log,
            on_finish=bar.update if bar is not None else None,
            padded_attention=sc.serving.attention_context == "max",
            speculation=speculation,
        )
        res = engine.run()
    finally:
        if bar is not None:
            bar.close()

    metrics = compute_metrics(res, sc.slo)
    # Calls, not iterations: the count depends on how the engine batches its pricing, so
    # it is reported apart from the warning (whose text is a stable result).
    extrapolated = {name: getattr(m, "extrapolated", 0) - extrap0[name] for name, m in models}
    metrics["latency_extrapolated_calls"] = extrapolated
    for name, m in models:
        if extrapolated[name]:
            worst = getattr(m, "worst_extrapolation", None)
            where = "" if worst is None else f" (farthest: batch, query, context = {worst})"
            warnings.append(
                f"{name}: some forward passes fell outside the latency profile's grid and "
                f"were extrapolated{where}"
            )
    if res.budget_exceeded_iterations:
        warnings.append(
            f"{res.budget_exceeded_iterations} iterations verified more tokens than "
            f"max_batched_tokens ({sc.serving.max_batched_tokens}); raise it or lower "
            "max_num_seqs"
        )
    wall = time.perf_counter() - wall0
    metrics["config"] = {
        "drafter": "none" if plain else sc.spec.drafter,
        "kind": kind,
        "num_spec_tokens": tree.num_nodes,
        "tree": None if plain or sc.spec.tree is None else tree.paths(),
        "tree_depth": tree.max_depth,
        "max_num_seqs": sc.serving.max_num_seqs,
        "max_batched_tokens": sc.serving.max_batched_tokens,
        "kv_cache_tokens": kv_tokens,
        "preemption": sc.serving.preemption,
        "workload_mode": requests.mode,
        "seed": seed,
        "expected_tokens_per_step": acc_model.mean_tokens_per_step() if acc_model else 1.0,
        "policy": policy_summary(sc.spec.policy),
    }
    metrics["speculation_k"] = k_summary(res.k_hist, tree.num_nodes)
    metrics["warnings"] = warnings
    metrics["wall_s"] = wall
    metrics["events_per_s"] = metrics["des_events"] / wall if wall > 0 else None
    return SimResult(metrics=metrics, engine=res)


def _progress_bar(total: int) -> Any:
    """A tqdm bar on stderr when it is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="req", desc="simulate", file=sys.stderr, leave=False)
