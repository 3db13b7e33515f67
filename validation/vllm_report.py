"""The report of a validation against vLLM (``report.md``; the plot and JSON are
:mod:`.report`'s).

Beside the figures and their targets it states the conditions: vLLM version and
execution mode, engine start-up and session times, the load during the runs, how many
runs were disturbed (and re-run) and the machine's noise floor from the repeats. When too
many configurations have a disturbed median the summary says so and the targets read
"not assessed (disturbed)" instead of met / not met: a disturbed run says nothing about
the simulator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .report import TARGETS, _f, _fmt_range, _ms, target_status

NAMES = {
    "num_configs": "configs",
    "median_abs_pct_error": "median abs. throughput error (%)",
    "max_abs_pct_error": "max abs. throughput error (%)",
    "rank_correlation": "Spearman ρ, predicted vs measured throughput",
    "tuner_pick_ratio": "tuner's pick / best live config (throughput)",
}
ASSESSED_WHEN_DISTURBED = ("num_configs",)


def status_lines(result: dict[str, Any]) -> list[str]:
    s, env = result["summary"], result["environment"]
    status = target_status(s, quick=bool(env.get("quick")))
    mark = {True: "met", False: "**not met**", None: "–"}
    out = ["| figure | value | target | status |", "|---|---|---|---|"]
    for key, (op, bound) in TARGETS.items():
        digits = 3 if key in ("rank_correlation", "tuner_pick_ratio") else 1
        target = f"{op} {bound}"
        if env.get("quick") and key == "num_configs":
            target += " (full matrix only)"
        verdict = mark[status[key]]
        if s.get("disturbed") and key not in ASSESSED_WHEN_DISTURBED:
            verdict = "not assessed (disturbed)"
        out.append(f"| {NAMES[key]} | {_f(s.get(key), digits)} | {target} | {verdict} |")
    return out


def markdown(result: dict[str, Any]) -> str:
    """The report's text."""
    s, env = result["summary"], result["environment"]
    nf = result.get("noise_floor") or {}
    sessions = result.get("sessions") or []
    starts = [x["startup_s"] for x in sessions if x.get("startup_s")]
    lines = [
        "# spectune validation against vLLM: predicted vs measured",
        "",
        f"Scenario `{env['scenario']}`: target `{env['target']}` served by **vLLM "
        f"{env['vllm']}** (OpenAI server, {env['mode']}, {env['dtype']}) on {env['device']}; "
        "drafters " + ", ".join(f"`{n}` ({k})" for n, k in env["drafters"].items()) + ". "
        f"{env['repeats']} repeats per config over {env['sweeps']} sweeps (medians), seed "
        f"{env['seed']}{', quick matrix' if env['quick'] else ''}; {env['engine_configs']} "
        f"engine configurations. Machine load (1-min load average at the runs): "
        f"{_fmt_range(env.get('load1_min_max'))}. Wall time {env['wall_s']:.0f} s"
        + (
            f"; engine start-up {np.median(starts):.0f} s median "
            f"({min(starts):.0f}–{max(starts):.0f} s, {len(starts)} starts)."
            if starts
            else "."
        ),
        "",
        "## Summary",
        "",
    ]
    if s.get("disturbed"):
        lines += [
            f"**Disturbed: {s['disturbed_configs']} of {s['num_configs']} configs have runs "
            "that stayed disturbed after re-runs (another process took the engine's core, "
            "steal, or the CPU ran slow). These figures are not a confident result; rerun on "
            "a quiet machine.**",
            "",
        ]
    lines += status_lines(result)
    lines += [
        "",
        f"Also: TPOT p50 median abs. error {_f(s.get('median_abs_pct_error_tpot_p50'))}%, "
        f"TPOT p99 {_f(s.get('median_abs_pct_error_tpot_p99'))}%, mean accepted length "
        f"{_f(s.get('median_abs_pct_error_accepted_len'))}%; Spearman ρ over the offline "
        f"configs {_f(s.get('rank_correlation_offline'), 3)}.",
        "",
        "![predicted vs measured](predicted_vs_measured.png)",
        "",
        "## Noise and interference",
        "",
        f"Per-run noise (log sd of a run around its config's mean, pooled over {nf.get('runs')} "
        f"runs): {_f(nf.get('log_sd'), 3)}. With perfect predictions, the largest |error| of "
        f"the medians of {nf.get('repeats')} repeats over {nf.get('configs')} configs would be "
        f"{_f(nf.get('max_err_median_pct'))}% (median of a Monte Carlo; p90 "
        f"{_f(nf.get('max_err_p90_pct'))}%), the median |error| "
        f"{_f(nf.get('median_err_pct'))}%: the noise floor of this run. Disturbed configs "
        f"(a run still disturbed after re-runs): {s.get('disturbed_configs', 0)}.",
        "",
    ]
    lines += _compare(result)
    lines += _calibration(result)
    t = result.get("tuner")
    if t:
        lines += [
            "## The tuner's pick, live",
            "",
            f"`recommend` (objective throughput, {t['simulations']} simulations, "
            f"{t['search_s']:.1f} s) on the calibrated scenario, offline workload, cap 8, "
            f"picked **{t['pick']}** (predicted {t['pick_predicted_tok_per_s']:.0f} tok/s). "
            f"Live: {_f(t['pick_measured_tok_per_s'], 0)} tok/s vs the best live config of "
            f"the matrix, {t['best_live']}, {_f(t['best_measured_tok_per_s'], 0)} tok/s: "
            f"ratio **{_f(t['ratio'], 3)}**"
            + (" (the pick is that config)." if t.get("pick_is_best") else "."),
            "",
        ]
    ll = result.get("lossless") or {}
    if ll.get("configs"):
        lines += [
            "## Greedy outputs: speculative vs plain decoding",
            "",
            f"{ll['identical']} of {ll['requests']} requests identical over {ll['configs']} "
            "speculative configs (each against plain decoding on the same requests and cap; "
            f"{env['dtype']}: a different batch composition can flip an argmax tie in bf16, "
            "so a mismatch here is not by itself a violation; the fp32 check is "
            "benchmarks/vllm_lossless.py).",
            "",
        ]
    lines += _per_config(result)
    notes = result.get("notes")
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def _compare(result: dict[str, Any]) -> list[str]:
    cmp_ = result.get("compare") or {}
    if not cmp_:
        return []
    s = result["summary"]
    names = list(cmp_)
    lines = [
        "## What each part of the model contributes",
        "",
        "| figure | " + " | ".join(names) + " | as reported |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for key, digits in (
        ("median_abs_pct_error", 1),
        ("max_abs_pct_error", 1),
        ("rank_correlation", 3),
        ("median_abs_pct_error_tpot_p50", 1),
        ("median_abs_pct_error_accepted_len", 1),
    ):
        vals = " | ".join(_f(cmp_[n].get(key), digits) for n in names)
        lines.append(f"| {key} | {vals} | {_f(s.get(key), digits)} |")
    return [*lines, ""]


def _calibration(result: dict[str, Any]) -> list[str]:
    costs = result.get("drafter_costs") or {}
    diag = result.get("diagnostics") or {}
    lines = ["## Calibration (never the scored runs)", ""]
    for name, f in costs.items():
        lines.append(
            f"- drafter `{name}`: own cost per step {f['base_ms']:.3f} ms + "
            f"({f['per_seq_ms']:.3f} + {f['per_pass_seq_ms']:.3f} × passes + "
            f"{f['per_node_seq_ms']:.3f} × drafts) ms per sequence ({f['steps']} steps, "
            f"rmse {f['rmse_ms']:.3f} ms)"
        )
    if diag:
        lines.append(
            "- live forward time over the vLLM latency profile on the calibration runs "
            "(1.0 = exact; not fitted): " + ", ".join(f"{k} {v:.3f}" for k, v in diag.items())
        )
    acc = result.get("acceptance") or {}
    if acc:
        lines.append(
            f"- acceptance per configuration from its calibration run (seed + 1): "
            f"{sum(1 for v in acc.values() if v)} configurations"
        )
    return [*lines, ""]


def _per_config(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Per config",
        "",
        "Throughput in output tok/s; TPOT in ms; error = (predicted − measured) / measured; "
        "spread = (max − min) / median of the repeats; dist. = runs still disturbed after "
        "re-runs.",
        "",
        "| config | thr. pred | thr. meas | err % | spread % | dist. | TPOT p50 pred/meas | "
        "TTFT p50 pred/meas | acc. len pred/meas |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["configs"]:
        p, m, e = r["predicted"], r["measured"], r["error_pct"]
        lines.append(
            f"| {r['label']} | {p['throughput_tok_per_s']:.0f} | "
            f"{m['throughput_tok_per_s']:.0f} | {e['throughput_tok_per_s']:+.1f} | "
            f"{r['measured_spread_pct']:.0f} | {r.get('disturbed_runs', 0)} | "
            f"{_ms(p['tpot_p50_s'])} / {_ms(m['tpot_p50_s'])} | "
            f"{_ms(p['ttft_p50_s'])} / {_ms(m['ttft_p50_s'])} | "
            f"{p['mean_accepted_len']:.2f} / {m['mean_accepted_len']:.2f} |"
        )
    return lines
