"""``spectune estimate``: closed-form tokens per step, speedup, best k and optimal trees.

No scenario, no simulation: the formulas of :mod:`spectune.simulator.analytic` for one
request at a fixed batch and context. Costs are ratios to one plain decode step of the
target: a step that drafts k tokens costs ``k·c`` (c = ``--cost-ratio``, one draft pass per
token / per tree level) plus the verify pass, ``1 + v·k`` (v = ``--verify-per-token``;
0 = the memory-bound regime where verifying k + 1 tokens costs one decode step). Under
batching v grows, and so does the cost of large k: use ``spectune simulate`` for that.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from spectune.output import print_json, table
from spectune.simulator import analytic as an
from spectune.simulator.analytic import conventions as cv
from spectune.simulator.errors import InputError

from .estimate_forms import chain_acceptance, fit_report, print_fit, scored_tree
from .estimate_forms import number as _number
from .estimate_forms import probs as _probs

MAX_TREE_BUDGET = 512  # the DP is O(depth · width · budget²); beyond this it gets slow
MAX_K = 256

EPILOG = """\
examples:
  spectune estimate --acceptance 0.75 --k 7 --cost-ratio 0.02
      expected tokens per step and speedup of a 7-token chain with iid acceptance 0.75
  spectune estimate --acceptance 0.8,0.74,0.7,0.67,0.64 --cost-ratio 0.05
      per-position acceptance (the last value repeats): the best k and a k table
  spectune estimate --ranked 0.8,0.3,0.15 --tree-budget 16 --cost-ratio 0.02 --json
      the optimal 16-node tree (Sequoia-style DP; depth chosen for the best speedup)
  spectune estimate --acceptance-rate 0.4167 --k 3
      vLLM's acceptance rate (accepted / drafted) measured at k = 3: mean acceptance length
      2.25; read as a per-position rate it would predict 1.66 (docs/acceptance.md)
  spectune estimate --fit-from-length 2.25 --k 3
      the iid per-position rate behind a mean acceptance length, in every convention
  spectune estimate --ranked 0.5,0.2,0.1 --ranked-convention sequoia --tree '[[0],[1],[0,0]]'
      score a given tree with Sequoia's P(rank r is the accepted one)

cost model: step cost = (draft passes)·c + 1 + v·(drafted tokens), relative to one plain
decode step; draft passes = k for a chain, the depth for a tree (one pass per level).
"mean_accepted_len" includes the bonus token (vLLM's convention), so it equals
"expected_tokens_per_step".
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "estimate",
        help="closed-form expected tokens per step, speedup, best k, optimal tree",
        description="Closed-form expected tokens per step, speedup, best k and optimal tree for\n"
        "one request at a fixed batch and context (no scenario, no simulation).\n\n"
        "  chain:  E = 1 + sum_i prod_{j<=i} a_j\n"
        "  tree:   E = 1 + sum over nodes of P(path to node accepted)   (ranked model)\n"
        "  speedup = E / step cost",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--acceptance",
        metavar="A[,A...]",
        help="chain acceptance: one rate (iid) or per-position rates a_1,a_2,... in [0, 1] "
        "(the last value repeats for longer chains)",
    )
    p.add_argument(
        "--unconditional",
        metavar="U[,U...]",
        help="chain acceptance as unconditional per-position rates u_i = P(drafts 1..i all "
        "accepted), as vLLM's per-position counters / drafts give them; converted to a_i",
    )
    p.add_argument(
        "--acceptance-length",
        metavar="AL",
        help="mean acceptance length (bonus included, vLLM/SGLang) measured at --k K: the iid "
        "a that gives it is used",
    )
    p.add_argument(
        "--acceptance-rate",
        metavar="R",
        help="vLLM's acceptance rate = accepted / drafted = (AL - 1) / k (a fraction; `vllm "
        "bench serve` prints percent) measured at --k K; NOT a per-position rate",
    )
    p.add_argument(
        "--fit-from-length",
        metavar="AL",
        help="invert: the iid per-position a whose --k K chain has mean acceptance length AL, "
        "with every convention at that k",
    )
    p.add_argument(
        "--k",
        metavar="K",
        help="draft length; omitted = report the best k (with --acceptance-length, "
        "--acceptance-rate, --fit-from-length: the k they were measured at)",
    )
    p.add_argument(
        "--k-max", metavar="K", default="16", help="largest k searched and tabled (default 16)"
    )
    p.add_argument(
        "--cost-ratio",
        metavar="C",
        default="0",
        help="cost of one draft pass / one target decode step (default 0: a free drafter, "
        "e.g. n-gram; ~0.02-0.1 for a small draft model or EAGLE-style head)",
    )
    p.add_argument(
        "--verify-per-token",
        metavar="V",
        default="0",
        help="extra verify cost per drafted token, relative to a decode step (default 0)",
    )
    p.add_argument(
        "--ranked",
        metavar="P[,P...][;P,...]",
        help="ranked acceptance p_1,p_2,... of the drafter's top candidates (a tree's "
        "acceptance model); ';' separates per-depth rows. Without --acceptance, the chain "
        "uses each depth's top candidate p_1",
    )
    p.add_argument(
        "--ranked-convention",
        default="conditional",
        choices=("conditional", "sequoia"),
        help="how --ranked reads: conditional p_r = P(rank r accepted | ranks before it "
        "rejected) (default, spectune's), or sequoia s_r = P(the accepted child is rank r)",
    )
    p.add_argument(
        "--tree",
        metavar="PATHS",
        help="score this tree with --ranked: JSON list of paths (e.g. '[[0],[1],[0,0]]') or "
        "a file holding one",
    )
    p.add_argument("--tree-budget", metavar="N", help="node budget of the optimal tree")
    p.add_argument(
        "--tree-depth",
        metavar="D",
        help="maximum tree depth; omitted = the depth (<= 16) with the best speedup",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


# ------------------------------------------------------------------ parsing


def _int(text: str | None, flag: str, minimum: int, maximum: int) -> int | None:
    if text is None:
        return None
    try:
        n = int(text)
    except ValueError:
        raise InputError(f"{text.strip()!r} is not an integer", field=flag) from None
    if not minimum <= n <= maximum:
        raise InputError(f"must be in {minimum}..{maximum}, got {n}", field=flag)
    return n


def _ranked(text: str, convention: str = "conditional") -> np.ndarray:
    rows = [_probs(r, "--ranked") for r in text.split(";")]
    if convention == "sequoia":
        rows = [cv.ranked_from_sequoia(r, "--ranked") for r in rows]
    width = max(len(r) for r in rows)
    # Shorter rows: the missing ranks are never accepted.
    return np.array([r + [0.0] * (width - len(r)) for r in rows])  # [depth rows, width]


def _nonneg(text: str, flag: str) -> float:
    x = _number(text, flag)
    if x < 0:
        raise InputError(f"must be >= 0, got {x:g}", field=flag)
    return x


# ------------------------------------------------------------------ computing


def _chain_report(acc: list[float], k: int | None, k_max: int, c: float, v: float) -> dict:
    k_top = max(k_max, k or 0)
    verify = 1.0 + v * np.arange(k_top + 1)  # [k_top + 1]
    e, s = an.speedup_by_k(acc, c, k_top, verify_cost=verify)  # [k_top + 1] each
    best = int(np.argmax(s[: k_max + 1]))
    chosen = best if k is None else k
    return {
        "k": chosen,
        "expected_tokens_per_step": float(e[chosen]),
        "mean_accepted_len": float(e[chosen]),
        "speedup": float(s[chosen]),
        "step_cost": float(chosen * c + verify[chosen]),
        "best_k": best,
        "best_speedup": float(s[best]),
        "acceptance": acc,
        "cost_ratio": c,
        "verify_per_token": v,
        "by_k": [
            {"k": j, "expected_tokens_per_step": float(e[j]), "speedup": float(s[j])}
            for j in range(k_top + 1)
        ],
    }


def _tree_report(ranked: np.ndarray, budget: int, depth: int | None, c: float, v: float) -> dict:
    depths = [depth] if depth is not None else list(range(1, min(budget, 16) + 1))
    best: dict | None = None
    for d in depths:
        tree = an.optimal_tree(ranked, budget, d)
        e = an.expected_tokens_tree(tree, ranked)
        cost = an.tree_step_cost(tree, c, lambda n: 1.0 + v * n)
        if best is None or e / cost > best["speedup"] + 1e-12:
            best = {
                "paths": tree.paths(),
                "num_nodes": tree.num_nodes,
                "depth": tree.max_depth,
                "max_depth": d,
                "budget": budget,
                "expected_tokens_per_step": e,
                "mean_accepted_len": e,
                "speedup": e / cost,
                "step_cost": cost,
            }
    assert best is not None
    best["ranked"] = ranked.tolist()
    best["depth_searched"] = depth is None
    return best


def run(args: argparse.Namespace) -> int:
    c = _nonneg(args.cost_ratio, "--cost-ratio")
    v = _nonneg(args.verify_per_token, "--verify-per-token")
    k = _int(args.k, "--k", 0, MAX_K)
    k_max = _int(args.k_max, "--k-max", 1, MAX_K)
    assert k_max is not None
    if args.fit_from_length is not None:
        if not k:
            raise InputError("--fit-from-length needs --k K (>= 1)", field="--k")
        fit = fit_report(_number(args.fit_from_length, "--fit-from-length"), k)
        if args.json:
            print_json(fit)
        else:
            print_fit(fit)
        return 0
    ranked = _ranked(args.ranked, args.ranked_convention) if args.ranked is not None else None
    budget = _int(args.tree_budget, "--tree-budget", 1, MAX_TREE_BUDGET)
    depth = _int(args.tree_depth, "--tree-depth", 1, MAX_TREE_BUDGET)
    if (budget is not None or depth is not None or args.tree) and ranked is None:
        raise InputError("--tree-budget/--tree-depth/--tree need --ranked", field="--ranked")
    if ranked is not None and budget is None and args.tree is None:
        raise InputError("--ranked needs --tree-budget N or --tree PATHS", field="--tree-budget")

    acc, how = chain_acceptance(args, k, ranked)
    report = _chain_report(acc, k, k_max, c, v)
    report["convention"] = how
    if ranked is not None:
        report["ranked_convention"] = (
            "sequoia s_r = P(the accepted child is rank r), converted to conditional p_r"
            if args.ranked_convention == "sequoia"
            else "conditional p_r = P(rank r accepted | ranks before it rejected)"
        )
        if budget is not None:
            report["tree"] = _tree_report(ranked, budget, depth, c, v)
        if args.tree is not None:
            report["tree_scored"] = scored_tree(args.tree, ranked, c, v)

    if args.json:
        print_json(report)
    else:
        _print_text(report, k)
    return 0


# ------------------------------------------------------------------ text output


def _print_text(r: dict, k_given: int | None) -> None:
    print(f"acceptance read as: {r['convention']}")
    if "ranked_convention" in r:
        print(f"ranked read as: {r['ranked_convention']}")
    acc = ",".join(f"{a:g}" for a in r["acceptance"])
    print(
        f"chain acceptance {acc}{' (last value repeats)' if len(r['acceptance']) > 1 else ''}; "
        f"cost ratio {r['cost_ratio']:g}; verify cost 1 + {r['verify_per_token']:g}·k"
    )
    line = (
        f"k = {r['k']}: {r['expected_tokens_per_step']:.3f} tokens/step "
        f"(mean accepted length, bonus included), speedup {r['speedup']:.2f}x"
    )
    print(line)
    if k_given is None or k_given != r["best_k"]:
        note = " (0 = do not speculate)" if r["best_k"] == 0 else ""
        print(f"best k = {r['best_k']}{note}: speedup {r['best_speedup']:.2f}x")
    if k_given is None:
        rows = [(b["k"], b["expected_tokens_per_step"], b["speedup"]) for b in r["by_k"]]
        print()
        print(table(rows, ["k", "tokens/step", "speedup"]))
    t = r.get("tree")
    if t:
        how = "best-speedup depth" if t["depth_searched"] else f"depth <= {t['max_depth']}"
        print()
        print(
            f"optimal tree (budget {t['budget']} nodes, {how}): {t['num_nodes']} nodes, "
            f"depth {t['depth']}, {t['expected_tokens_per_step']:.3f} tokens/step, "
            f"speedup {t['speedup']:.2f}x (step cost {t['step_cost']:.3f})"
        )
        print(f"paths: {json.dumps(t['paths'], separators=(',', ':'))}")
    t = r.get("tree_scored")
    if t:
        print()
        print(
            f"given tree: {t['num_nodes']} nodes, depth {t['depth']}, "
            f"{t['expected_tokens_per_step']:.3f} tokens/step, speedup {t['speedup']:.2f}x "
            f"(step cost {t['step_cost']:.3f})"
        )
