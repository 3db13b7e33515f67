"""The tuner's search space: the one place that calls ``trial.suggest_*``.

A candidate is a :class:`Config`: a drafter (or ``"none"`` = plain decoding), then either
a chain of k drafts or a static tree given by a node budget and a depth, and optionally
the serving cap ``max_num_seqs``. The tree itself is not searched node by node: for a
budget and depth the closed-form layer builds the optimal tree for the drafter's ranked
acceptance (:func:`~spectune.simulator.analytic.optimal_tree`), so trees are only offered
for drafters that have ranked acceptance.

The space is conditional and defined by run (Optuna's way): the drafter is drawn first,
then parameters named after it (``num_spec_tokens:<drafter>``, ``shape:<drafter>``,
``tree_budget:<drafter>``, ``tree_depth:<drafter>``), so TPE learns a separate density per
drafter. :func:`grid` enumerates the same space exhaustively and :func:`config_params`
maps a config back to trial parameters (for ``enqueue_trial``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario

NONE = "none"


@dataclass(frozen=True, order=True)
class Config:
    """One point of the search space.

    Args:
        drafter: drafter name, ``"none"`` = plain decoding.
        num_spec_tokens: chain length k (0 for none and for trees).
        tree_budget: node budget of a tree, None for a chain.
        tree_depth: maximum depth of a tree, None for a chain.
        max_num_seqs: serving cap, None = the scenario's own.
        policy: how k is chosen per iteration for a chain (:data:`POLICIES`); k is then
            the largest k (the draft window).
        policy_arg: the policy's parameter: the batch size above which ``cutoff`` stops
            speculating; None otherwise.
    """

    drafter: str = NONE
    num_spec_tokens: int = 0
    tree_budget: int | None = None
    tree_depth: int | None = None
    max_num_seqs: int | None = None
    policy: str = "fixed"
    policy_arg: int | None = None

    def normalized(self) -> Config:
        """The canonical form: k = 0 or no drafter is plain decoding; depth <= budget;
        trees and plain decoding run fixed."""
        if self.drafter == NONE or (self.tree_budget is None and self.num_spec_tokens <= 0):
            return Config(max_num_seqs=self.max_num_seqs)
        if self.tree_budget is not None:
            depth = min(self.tree_depth or self.tree_budget, self.tree_budget)
            return Config(self.drafter, 0, self.tree_budget, depth, self.max_num_seqs)
        arg = self.policy_arg if self.policy == "cutoff" else None
        return Config(
            self.drafter, self.num_spec_tokens, None, None, self.max_num_seqs, self.policy, arg
        )

    @property
    def is_tree(self) -> bool:
        return self.tree_budget is not None

    @property
    def speculates(self) -> bool:
        return self.drafter != NONE

    def label(self) -> str:
        """Short human form, e.g. ``small k=3``, ``eagle tree 16/4``, ``none``."""
        if not self.speculates:
            s = "none (plain decoding)"
        elif self.is_tree:
            s = f"{self.drafter} tree {self.tree_budget} nodes/depth {self.tree_depth}"
        else:
            s = f"{self.drafter} k={self.num_spec_tokens}"
            if self.policy != "fixed":
                s += ", " + policy_label(self.policy, self.policy_arg)
        if self.max_num_seqs is not None:
            s += f", max_num_seqs={self.max_num_seqs}"
        return s

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"drafter": self.drafter, "num_spec_tokens": self.num_spec_tokens}
        if self.is_tree:
            d["tree"] = {"budget": self.tree_budget, "depth": self.tree_depth}
        if self.max_num_seqs is not None:
            d["max_num_seqs"] = self.max_num_seqs
        if self.policy != "fixed":
            d["policy"] = self.policy
            if self.policy_arg is not None:
                d["policy_arg"] = self.policy_arg
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        tree = d.get("tree") or {}
        return cls(
            d.get("drafter", NONE),
            int(d.get("num_spec_tokens", 0)),
            tree.get("budget"),
            tree.get("depth"),
            d.get("max_num_seqs"),
            d.get("policy", "fixed"),
            d.get("policy_arg"),
        ).normalized()


# The speculation policies the tuner can choose for a chain (``search.policies``):
# fixed k; the per-batch-size schedule priced by the step-cost model (tuner/schedule.py)
# and simulated; k up to a batch size then none (``cutoff``); SGLang's adaptive
# speculation with its built-in slots; the goodput rule per step (no engine runs it for
# these drafters: a reference).
POLICIES = ("fixed", "schedule", "cutoff", "sglang_adaptive", "goodput")


def policy_label(policy: str, arg: int | None = None) -> str:
    """How a policy reads in tables: ``batch-size schedule``, ``no SD above batch 8``..."""
    if policy == "schedule":
        return "batch-size schedule"
    if policy == "cutoff":
        return f"no SD above batch {arg}"
    if policy == "sglang_adaptive":
        return "SGLang adaptive"
    if policy == "goodput":
        return "goodput per step"
    return "fixed"


@dataclass(frozen=True)
class SearchDims:
    """The discrete choices a scenario's ``search`` block allows.

    Args:
        drafters: candidate drafter names, ``"none"`` included when plain decoding is searched.
        chain_ks: positive chain lengths.
        tree_drafters: drafters with ranked acceptance, for which trees are searched.
        tree_budgets: node budgets (empty = no trees).
        tree_depths: maximum depths (empty = depth up to the budget).
        max_num_seqs: serving caps to choose from (empty = the scenario's own).
        policies: speculation policies for chains (:data:`POLICIES`).
        cutoffs: batch sizes a ``cutoff`` policy may stop speculating above.
    """

    drafters: tuple[str, ...]
    chain_ks: tuple[int, ...]
    tree_drafters: frozenset[str]
    tree_budgets: tuple[int, ...]
    tree_depths: tuple[int, ...]
    max_num_seqs: tuple[int, ...]
    policies: tuple[str, ...] = ("fixed",)
    cutoffs: tuple[int, ...] = ()

    @classmethod
    def from_scenario(cls, rs: ResolvedScenario) -> SearchDims:
        """Read the scenario's search space.

        Raises:
            InputError: an unknown drafter in ``search.drafters``, or an empty space.
        """
        sp = rs.scenario.search
        known = list(rs.drafters)
        if sp.drafters is None:
            drafters = [*known, NONE]
        else:
            drafters = []
            for i, name in enumerate(sp.drafters):
                if name != NONE and name not in rs.drafters:
                    raise InputError(
                        f"unknown drafter '{name}' (known: {', '.join(known) or 'none'})",
                        source=rs.source,
                        field=f"search.drafters.{i}",
                    )
                if name not in drafters:
                    drafters.append(name)
        chain_ks = tuple(sorted({int(k) for k in sp.num_spec_tokens if k > 0}))
        budgets = tuple(sorted(set(sp.tree_budgets)))
        depths = tuple(sorted(set(sp.tree_depths)))
        tree_drafters = frozenset(d for d in drafters if d != NONE and budgets and _can_tree(rs, d))
        caps = sorted(set(sp.max_num_seqs))
        top_cap = max(caps or [rs.scenario.serving.max_num_seqs])
        policies = tuple(p for p in POLICIES if p in sp.policies)
        dims = cls(
            drafters=tuple(drafters),
            chain_ks=chain_ks,
            tree_drafters=tree_drafters,
            tree_budgets=budgets,
            tree_depths=depths,
            max_num_seqs=tuple(caps),
            policies=policies or ("fixed",),
            cutoffs=tuple(1 << i for i in range(20) if (1 << i) < top_cap),
        )
        if not dims.shapes_of_any():
            raise InputError(
                "the search space is empty: no drafter has a draft length or tree to try "
                "(check search.drafters, search.num_spec_tokens, search.tree_budgets)",
                source=rs.source,
                field="search",
            )
        return dims

    def shapes_of_any(self) -> bool:
        return any(self.shapes(d) for d in self.drafters) or NONE in self.drafters

    def shapes(self, drafter: str) -> list[str]:
        """The shapes this drafter can take: ``chain`` and/or ``tree`` (none for plain)."""
        if drafter == NONE:
            return []
        out = []
        if self.chain_ks:
            out.append("chain")
        if drafter in self.tree_drafters:
            out.append("tree")
        return out

    def searched_drafters(self) -> list[str]:
        """Drafters with at least one config (``none`` included when listed)."""
        return [d for d in self.drafters if d == NONE or self.shapes(d)]

    def depths_for(self, budget: int) -> list[int]:
        depths = self.tree_depths or (budget,)
        return sorted({min(d, budget) for d in depths})


def _can_tree(rs: ResolvedScenario, drafter: str) -> bool:
    """Trees need ranked acceptance with a second candidate that can be accepted (a
    width-1 ranking only ever builds chains); n-gram lookup proposes one continuation."""
    d = rs.drafters[drafter]
    ranked = d.acceptance.ranked or []
    return d.spec.kind != "ngram" and len(ranked) >= 2 and ranked[1] > 0


def _suggest_int_choice(trial: optuna.Trial, name: str, choices: Sequence[int]) -> int:
    """An int from ``choices``: an ordered int distribution when they are evenly spaced
    (TPE then sees neighbours as close), a categorical otherwise."""
    choices = sorted(choices)
    if len(choices) == 1:
        return trial.suggest_categorical(name, [choices[0]])  # recorded, not searched
    steps = {b - a for a, b in itertools.pairwise(choices)}
    if len(steps) == 1:
        return trial.suggest_int(name, choices[0], choices[-1], step=steps.pop())
    return int(trial.suggest_categorical(name, list(choices)))


def suggest_config(trial: optuna.Trial, dims: SearchDims) -> Config:
    """Draw one configuration, define-by-run.

    Args:
        trial: the Optuna trial (its fixed params are used when it was enqueued).
        dims: the search space.

    Returns:
        A normalised :class:`Config`.
    """
    drafter = trial.suggest_categorical("drafter", list(dims.searched_drafters()))
    mns = None
    if dims.max_num_seqs:
        mns = _suggest_int_choice(trial, "max_num_seqs", dims.max_num_seqs)
    if drafter == NONE:
        return Config(max_num_seqs=mns)
    shapes = dims.shapes(drafter)
    shape = shapes[0] if len(shapes) == 1 else trial.suggest_categorical(f"shape:{drafter}", shapes)
    if shape == "chain":
        k = _suggest_int_choice(trial, f"num_spec_tokens:{drafter}", dims.chain_ks)
        policy, arg = "fixed", None
        if len(dims.policies) > 1:
            policy = trial.suggest_categorical(f"policy:{drafter}", list(dims.policies))
        if policy == "cutoff":
            if not dims.cutoffs:
                return Config(drafter, k, max_num_seqs=mns).normalized()
            arg = _suggest_int_choice(trial, f"cutoff:{drafter}", dims.cutoffs)
        return Config(drafter, k, max_num_seqs=mns, policy=policy, policy_arg=arg).normalized()
    budget = _suggest_int_choice(trial, f"tree_budget:{drafter}", dims.tree_budgets)
    depth = budget  # no depth limit listed: the budget bounds the depth
    if dims.tree_depths:
        # One fixed distribution per name (TPE needs it), whatever the budget; depths
        # beyond the budget collapse to it in normalized().
        depth = _suggest_int_choice(trial, f"tree_depth:{drafter}", dims.tree_depths)
    return Config(drafter, 0, budget, depth, mns).normalized()


def config_params(config: Config, dims: SearchDims) -> dict[str, Any]:
    """Trial parameters that make :func:`suggest_config` return ``config`` (for enqueue)."""
    c = config.normalized()
    params: dict[str, Any] = {"drafter": c.drafter}
    if dims.max_num_seqs and c.max_num_seqs is not None:
        params["max_num_seqs"] = c.max_num_seqs
    if not c.speculates:
        return params
    shapes = dims.shapes(c.drafter)
    if len(shapes) > 1:
        params[f"shape:{c.drafter}"] = "tree" if c.is_tree else "chain"
    if c.is_tree:
        params[f"tree_budget:{c.drafter}"] = c.tree_budget
        if dims.tree_depths:
            # A depth clipped to the budget maps back to the smallest listed depth >= it.
            listed = [d for d in dims.tree_depths if min(d, c.tree_budget or 0) == c.tree_depth]
            params[f"tree_depth:{c.drafter}"] = listed[0] if listed else c.tree_depth
    else:
        params[f"num_spec_tokens:{c.drafter}"] = c.num_spec_tokens
        if len(dims.policies) > 1:
            params[f"policy:{c.drafter}"] = c.policy
        if c.policy == "cutoff":
            params[f"cutoff:{c.drafter}"] = c.policy_arg
    return params


def grid(dims: SearchDims) -> list[Config]:
    """Every distinct configuration of the space (normalised, sorted, no duplicates)."""
    caps: list[int | None] = list(dims.max_num_seqs) or [None]
    out: set[Config] = set()
    for mns in caps:
        for d in dims.searched_drafters():
            if d == NONE:
                out.add(Config(max_num_seqs=mns))
                continue
            if "chain" in dims.shapes(d):
                for k in dims.chain_ks:
                    for pol in dims.policies:
                        args: list[int | None] = list(dims.cutoffs) if pol == "cutoff" else [None]
                        out.update(
                            Config(d, k, max_num_seqs=mns, policy=pol, policy_arg=a).normalized()
                            for a in args
                        )
            if "tree" in dims.shapes(d):
                for b in dims.tree_budgets:
                    for depth in dims.depths_for(b):
                        out.add(Config(d, 0, b, depth, mns).normalized())
    return sorted(out, key=_sort_key)


def _sort_key(c: Config) -> tuple:
    return (
        c.drafter != NONE,
        c.drafter,
        c.is_tree,
        c.num_spec_tokens,
        c.tree_budget or 0,
        c.tree_depth or 0,
        c.max_num_seqs or 0,
        POLICIES.index(c.policy) if c.policy in POLICIES else len(POLICIES),
        c.policy_arg or 0,
    )
