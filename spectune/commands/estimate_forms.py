"""The acceptance forms ``spectune estimate`` reads (docs/acceptance.md): a chain given as
conditional a_i, unconditional u_i, a mean acceptance length or vLLM's acceptance rate at
a k; Sequoia's ranked vector; a given tree to score; and the inversion from a mean
acceptance length. Parsing helpers shared with :mod:`.estimate`."""

from __future__ import annotations

import argparse
import math
from typing import Any

from spectune.output import table
from spectune.simulator import analytic as an
from spectune.simulator.analytic import conventions as cv
from spectune.simulator.errors import InputError


def number(text: str, flag: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise InputError(f"{text.strip()!r} is not a number", field=flag) from None
    if not math.isfinite(x):
        raise InputError(f"must be finite, got {text.strip()}", field=flag)
    return x


def probs(text: str, flag: str) -> list[float]:
    vals = [number(t, flag) for t in text.split(",")] if text.strip() else []
    if not vals:
        raise InputError("needs at least one value", field=flag)
    for v in vals:
        if not 0.0 <= v <= 1.0:
            raise InputError(f"must be in [0, 1], got {v:g}", field=flag)
    return vals


CHAIN_FORMS = ("acceptance", "unconditional", "acceptance_length", "acceptance_rate")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _converted(call: Any, flag: str) -> Any:
    """A conventions call whose input errors name the flag the value came from."""
    try:
        return call()
    except InputError as e:
        raise InputError(e.message, field=flag) from None


def chain_acceptance(args: argparse.Namespace, k: int | None, ranked: Any) -> tuple[list, str]:
    """The chain's conditional a_i from whichever form was given, and a line saying which."""
    forms = [f for f in CHAIN_FORMS if getattr(args, f) is not None]
    if len(forms) > 1:
        raise InputError(
            f"give one chain acceptance form, got {', '.join(map(_flag, forms))}",
            field=_flag(forms[1]),
        )
    if not forms:
        if ranked is None:
            raise InputError(
                "give --acceptance (a chain) or --ranked (a tree)", field="--acceptance"
            )
        return ranked[:, 0].tolist(), "conditional a_i = each depth's top candidate p_1 (--ranked)"
    form = forms[0]
    flag = _flag(form)
    if form == "acceptance":
        how = "conditional per-position a_i = P(draft i accepted | drafts before it accepted)"
        return probs(args.acceptance, flag), f"{how} (--acceptance, spectune's per_position)"
    if form == "unconditional":
        u = probs(args.unconditional, flag)
        a = _converted(lambda: cv.conditional_from_unconditional(u, flag), flag)
        how = "unconditional u_i = P(drafts 1..i accepted) (vLLM's), converted: a_i = u_i/u_(i-1)"
        return a, how
    if not k:
        raise InputError(f"{flag} needs --k K, the draft length it was measured at", field="--k")
    x = number(getattr(args, form), flag)
    if form == "acceptance_rate":
        al = _converted(lambda: cv.length_from_rate(x, k), flag)
        how = f"vLLM acceptance rate {x:g} at k = {k} -> mean acceptance length {al:.4f}"
    else:
        al, how = x, f"mean acceptance length {x:g} at k = {k} (bonus included)"
    a = _converted(lambda: cv.fit_iid_from_length(al, k), flag)
    return [a], f"{how} -> iid a = {a:.4f} (the one rate that gives it)"


def fit_report(al: float, k: int) -> dict:
    a = _converted(lambda: cv.fit_iid_from_length(al, k), "--fit-from-length")
    u = cv.unconditional_from_conditional([a] * k)
    return {
        "fit_from_length": al,
        "k": k,
        "per_position": a,
        "unconditional": u,
        "acceptance_length": cv.acceptance_length([a], k),
        "vllm_acceptance_rate": cv.vllm_acceptance_rate(al, k),
    }


def scored_tree(text: str, ranked: Any, c: float, v: float) -> dict:
    from spectune.commands.generate import parse_tree_arg
    from spectune.simulator.tree import Tree

    try:
        tree = Tree.from_paths(parse_tree_arg(text))
    except InputError as e:
        raise InputError(e.message, source=e.source, field="--tree") from None
    e = an.expected_tokens_tree(tree, ranked)
    cost = an.tree_step_cost(tree, c, lambda n: 1.0 + v * n)
    return {
        "paths": tree.paths(),
        "num_nodes": tree.num_nodes,
        "depth": tree.max_depth,
        "expected_tokens_per_step": e,
        "mean_accepted_len": e,
        "speedup": e / cost,
        "step_cost": cost,
    }


def print_fit(f: dict) -> None:
    print(
        f"mean acceptance length {f['fit_from_length']:g} at k = {f['k']} (bonus included) <- "
        f"iid per-position a = {f['per_position']:.4f}"
    )
    print(f"vLLM acceptance rate (AL - 1) / k = {f['vllm_acceptance_rate']:.4f}")
    rows = [(i + 1, f["per_position"], u) for i, u in enumerate(f["unconditional"])]
    print(table(rows, ["position", "a_i (conditional)", "u_i (unconditional, vLLM)"]))
