"""``spectune simulate``: throughput and latency of one speculative-decoding config under a
workload, from the discrete-event simulator (:func:`spectune.simulator.simulate`).

Prints a summary (config, throughput, request rate, mean accepted length, goodput against
the scenario's SLOs, TTFT / TPOT / E2E percentiles, batch sizes, warnings); ``--json``
prints every metric instead (keys documented in :mod:`spectune.simulator.metrics`).
"""

from __future__ import annotations

import argparse
from typing import Any

from spectune.output import add_scenario_args, fmt, print_json, table
from spectune.simulator import load_scenario, simulate

EPILOG = """\
examples:
  spectune simulate examples/azure-code-h100.yaml
  spectune simulate examples/azure-code-h100.yaml --set spec.drafter=none
  spectune simulate examples/azure-code-h100.yaml --set spec.num_spec_tokens=2 --json
  spectune simulate examples/azure-conv-h100.yaml --set workload.time_scale=4 --seed 3
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate one config under a workload (throughput, latency, goodput)",
        description="Discrete-event simulation of a vLLM-like engine serving the scenario's\n"
        "workload with its spec config (drafter, draft length or tree).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scenario_args(p)
    p.add_argument("--seed", type=int, default=None, help="random seed (default: scenario seed)")
    p.add_argument("--json", action="store_true", help="print all metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rs = load_scenario(args.scenario, args.overrides)
    result = simulate(rs, seed=args.seed, progress=True)
    if args.json:
        print_json(result.to_dict())
    else:
        name = rs.scenario.name or args.scenario
        print(render(result.metrics, f"{name} ({rs.source})"))
    return 0


# ---------------------------------------------------------------------------- rendering


def _policy_lines(m: dict[str, Any]) -> list[str]:
    """The speculation policy and the k it ran at (nothing for a fixed k)."""
    pol = m["config"].get("policy") or {"kind": "fixed"}
    ks = m.get("speculation_k") or {}
    hist = ks.get("iterations_by_k")
    if pol.get("kind") == "fixed" or not hist:
        return []
    total = sum(hist.values())
    shares = " ".join(f"{k}:{100 * c / total:.0f}%" for k, c in sorted(hist.items()))
    params = ", ".join(f"{k} {v}" for k, v in pol.items() if k != "kind" and v is not None)
    return [
        f"policy: {pol['kind']}" + (f" ({params})" if params else ""),
        f"k per iteration (% of iterations): {shares}; mean {ks['mean_k']:.2f}, "
        f"no speculation {100 * ks['off_share']:.0f}%",
    ]


def _config_line(cfg: dict[str, Any]) -> str:
    if cfg["drafter"] == "none":
        spec = "plain decoding (no drafter)"
    elif cfg["tree"] is not None:
        spec = (
            f"drafter {cfg['drafter']} ({cfg['kind']}), tree of {cfg['num_spec_tokens']} "
            f"nodes, depth {cfg['tree_depth']}"
        )
    else:
        spec = f"drafter {cfg['drafter']} ({cfg['kind']}), k={cfg['num_spec_tokens']}"
    return (
        f"{spec} | max_num_seqs {cfg['max_num_seqs']}, max_batched_tokens "
        f"{cfg['max_batched_tokens']:,}, KV {cfg['kv_cache_tokens']:,} tokens "
        f"({cfg['preemption']}) | seed {cfg['seed']}"
    )


def _slo_text(m: dict[str, Any]) -> str:
    slo = m["slo"]
    if not slo:
        return "no SLO set: every request counts"
    names = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E"}
    cond = ", ".join(f"{names[k]} <= {v:g} s" for k, v in slo.items())
    return f"{m['slo_attainment'] * 100:.1f}% of requests meet {cond}"


def compact_hist(hist: dict[Any, int]) -> str:
    """Batch sizes bucketed by powers of two, as % of iterations: ``1:51% 2:21% 3-4:15%``."""
    total = sum(hist.values())
    if not total:
        return "-"
    buckets: dict[tuple[int, int], int] = {}
    for b, c in hist.items():
        b = int(b)
        if b <= 2:
            key = (b, b)
        else:
            hi = 1 << (b - 1).bit_length()  # the power of two at or above b
            key = (hi // 2 + 1, hi)
        buckets[key] = buckets.get(key, 0) + c
    parts = []
    for (lo, hi), c in sorted(buckets.items()):
        label = str(lo) if lo == hi else f"{lo}-{hi}"
        pct = 100.0 * c / total
        parts.append(f"{label}:{pct:.0f}%" if pct >= 1 else f"{label}:{pct:.1f}%")
    return " ".join(parts)


def render(m: dict[str, Any], title: str) -> str:
    """The human-readable summary of one result's metrics."""
    cfg = m["config"]
    lines = [
        f"spectune simulate: {title}",
        f"config:   {_config_line(cfg)}",
        f"workload: {m['num_requests']:,} requests ({cfg['workload_mode']} loop), "
        f"{m['prompt_tokens']:,} prompt + {m['output_tokens']:,} output tokens, "
        f"{fmt(m['duration_s'], 1)} s simulated",
        "",
    ]
    acc = m["acceptance_rate"]
    acc_note = (
        f"expected {cfg['expected_tokens_per_step']:.3f}/step, acceptance rate {acc:.3f}"
        if acc is not None
        else "plain decoding"
    )
    rows = [
        ("throughput (output tok/s)", m["throughput_tok_per_s"], "total tokens / makespan"),
        ("per-request tok/s (mean)", m["mean_request_tok_per_s"], "output tokens / E2E"),
        ("requests/s", m["requests_per_s"], ""),
        ("mean accepted length", m["mean_accepted_len"], acc_note),
        ("goodput (req/s)", m["goodput_req_per_s"], _slo_text(m)),
        ("mean batch size", m["mean_batch_size"], f"utilization {m['utilization'] * 100:.0f}%"),
    ]
    lines.append(table(rows, ["metric", "value", "note"]))
    lines.append("")
    lat = [
        (name, *(m[key][p] for p in ("p50", "p90", "p99", "mean")))
        for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("E2E", "e2e_s"))
    ]
    lines.append(table(lat, ["latency (s)", "p50", "p90", "p99", "mean"], digits=4))
    lines.append("")
    kv_pct = 100.0 * m["kv_peak_tokens"] / max(m["kv_cache_tokens"], 1)
    lines += _policy_lines(m)
    lines += [
        f"batch sizes (% of iterations): {compact_hist(m['batch_size_hist'])}",
        f"preemptions {m['preemptions']:,}; KV peak {m['kv_peak_tokens']:,} of "
        f"{m['kv_cache_tokens']:,} tokens ({kv_pct:.0f}%)",
        f"simulated {m['des_events']:,} DES events ({m['iterations']:,} iterations) in "
        f"{m['wall_s']:.2f} s ({(m['events_per_s'] or 0) / 1000:,.0f}k events/s)",
    ]
    for w in m["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
