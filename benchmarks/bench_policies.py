"""Does tuning the speculation policy pay? (a program, not a test)

On the shipped Azure scenarios, at several loads (the trace's arrivals sped up), runs
``recommend``'s search twice — fixed k only (``search.policies: [fixed]``), then with the
policies (fixed, batch-size schedule, cutoff, SGLang adaptive) — and reports, at final
fidelity (the whole trace), the objective of:

- the best fixed k (the fixed-only search's pick),
- the tuned policy (the policy search's pick),
- each engine's default: vLLM's and TensorRT-LLM's fixed k = 5 (their docs' example
  length; neither adapts by default), SGLang's ``--speculative-adaptive`` built-in slots
  (starting at the best fixed k's drafter, k = 5), and the goodput rule per step (a
  reference no engine runs for these drafters), each on the best fixed k's drafter.

Every figure is a simulation (no timing): the numbers do not depend on the machine's load.

    .venv/bin/python benchmarks/bench_policies.py [--loads 1,2,4] [--out FILE.md]

A pick that meets no SLO is the closest config (least violation), so its objective is
not comparable: such cells say "misses SLOs".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spectune.simulator import load_scenario  # noqa: E402
from spectune.tuner.evaluate import Evaluator  # noqa: E402
from spectune.tuner.objective import resolve_objective  # noqa: E402
from spectune.tuner.search import NoFeasibleConfig, SearchSettings, run_search  # noqa: E402
from spectune.tuner.space import Config  # noqa: E402

SCENARIOS = ("examples/azure-code-h100.yaml", "examples/azure-conv-h100.yaml")
POLICIES = ["fixed", "schedule", "cutoff", "sglang_adaptive"]


def pick(rs, policies: list[str], seed: int):
    rs = _with(rs, policies)
    settings = SearchSettings(trials=60, band_samples=0, search_requests=1500, seed=seed)
    try:
        return run_search(rs, settings)
    except NoFeasibleConfig as e:  # the closest config still has numbers
        return e.outcome


def _with(rs, policies: list[str]):
    import dataclasses

    search = rs.scenario.search.model_copy(update={"policies": policies})
    return dataclasses.replace(rs, scenario=rs.scenario.model_copy(update={"search": search}))


def _ok(feasible: bool) -> str:
    return "" if feasible else " (misses SLOs)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loads", default="1,2,4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    a = ap.parse_args()
    loads = [float(x) for x in a.loads.split(",")]
    rows = []
    t0 = time.perf_counter()
    for path in SCENARIOS:
        base = load_scenario(REPO / path)
        for load in loads:
            rs = base.with_workload(time_scale=float(base.scenario.workload.time_scale) * load)
            obj = resolve_objective(None, rs)
            fixed = pick(rs, ["fixed"], a.seed)
            tuned = pick(rs, POLICIES, a.seed)
            ev = Evaluator(rs, seed=a.seed)
            d = fixed.best.config.drafter if fixed.best.config.speculates else "eagle"
            defaults = {
                "vLLM / TRT-LLM default (fixed k=5)": Config(d, 5),
                "SGLang adaptive default": Config(d, 5, policy="sglang_adaptive"),
                "goodput per step (reference)": Config(d, 5, policy="goodput"),
            }
            res = {k: ev.evaluate(c) for k, c in defaults.items()}
            bf, tp = fixed.best.value(obj), tuned.best.value(obj)
            row = {
                "scenario": Path(path).stem,
                "load": load,
                "objective": obj,
                "pct": int(rs.scenario.slo.percentile),
                "best fixed": (fixed.best.config.label(), bf, fixed.best.feasible),
                "tuned": (tuned.best.config.label(), tp, tuned.best.feasible),
                **{k: (c.label(), res[k].value(obj), res[k].feasible) for k, c in defaults.items()},
            }
            rows.append(row)
            print(
                f"{row['scenario']} x{load:g} ({obj}): best fixed {bf:.5g} "
                f"[{fixed.best.config.label()}], tuned {tp:.5g} [{tuned.best.config.label()}], "
                + ", ".join(f"{k} {res[k].value(obj):.5g}" for k in defaults),
                flush=True,
            )
    lines = [
        "| scenario | load x | objective | best fixed k | tuned policy | tuned / fixed | "
        + " | ".join(defaults)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(defaults),
    ]
    for r in rows:
        bf, tp = r["best fixed"][1], r["tuned"][1]
        cells = [
            r["scenario"],
            f"{r['load']:g}",
            f"p{r['pct']} TPOT s" if r["objective"] == "latency" else r["objective"],
            f"{r['best fixed'][0]}: {bf:.4g}{_ok(r['best fixed'][2])}",
            f"{r['tuned'][0]}: {tp:.4g}{_ok(r['tuned'][2])}",
            f"{tp / bf:.3f}" if bf else "-",
            *(f"{r[k][1]:.4g}{_ok(r[k][2])}" for k in defaults),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    print(f"wall {time.perf_counter() - t0:.0f} s")
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
