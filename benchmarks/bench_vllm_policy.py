"""A batch-size schedule against a fixed k on the real vLLM, predicted vs measured.

What it measures: for one drafter, two vLLM engine configurations with the same window
(``num_speculative_tokens`` = the fixed k):

- **schedule**: vLLM's ``num_speculative_tokens_per_batch_size``, the one spectune emits
  (``tuner/schedule.py`` ``best_k_schedule`` over ``StepCosts.from_scenario``, k in
  1..the fixed k, adjacent bands with the same k merged) or ``--bands``;
- **fixed**: k at every batch size;

each served as a closed loop at every ``--concurrency`` level (the same requests as the
simulator's: ``profiler/live.py`` ``build_workload`` on the scenario's workload with mode
closed at that concurrency and ``num_requests`` requests), and compared with
``spectune.simulator.api.simulate`` of the same scenario, workload and serving limits,
``spec.policy`` ``batch_schedule`` for the schedule: output tok/s and TPOT p50, predicted
against measured (the median of the repeats), and per level whether the predicted winner
(schedule or fixed) is the live winner. Also recorded per run: vLLM's spec-decode counters
(draft tokens per draft), the k the engine actually verified per decode step (the step
probe) beside the simulator's, and the interference signals of
``validation/interference.py`` (flagged runs are kept and counted, not re-run).

How it runs: one ``vllm serve`` per configuration, both up for the whole run (an idle
server blocks on its queue; the CPU it takes during the other's runs is recorded), each
warmed up untimed at every level first; repeats interleaved A B / B A per level and
repeat, to average drift. Every finished run is appended to ``--runs`` (JSON lines, with a
fingerprint of the configurations and workloads): a killed run resumes where it stopped,
and ``--report-only`` re-renders the report from it. The servers are always stopped.

The report in docs/validation-vllm/ (10 repeats, the honour check, the calibrated
scenario's predictions beside; with its runs file in place this re-renders it, with
another ``--runs`` file it measures afresh: about 20 minutes on a quiet 2-core machine, 4
engine starts included; it waits for other processes before each run)::

    .venv/bin/python benchmarks/bench_vllm_policy.py --honour-check --repeats 10 \\
        --also-predict docs/validation-vllm/calibrated-scenario.yaml

Other schedules, drafters and loads::

    .venv/bin/python benchmarks/bench_vllm_policy.py examples/local-cpu-vllm.yaml \\
        --drafter byte-drafter --fixed-k 6 --concurrency 1,2,4,8 --max-num-seqs 8 \\
        --runs runs/policy.jsonl --report runs/policy.md
    .venv/bin/python benchmarks/bench_vllm_policy.py --bands '[[1, 2, 4], [3, 8, 2]]' \\
        --runs runs/policy-bands.jsonl --report runs/policy-bands.md

Defaults: the byte drafter (``draft_model``) at a window of 6: for the n-gram drafters of
this scenario the emitted schedule is the window at every band, i.e. the fixed k itself
(the script refuses a schedule equal to the fixed k). Requests per level: max(32, 6 x
concurrency).

The same check on a GPU, with your CUDA vLLM 0.32 (``pip install torch vllm==0.32.*`` and
``pip install -e .``, no ``[vllm]`` extra), a scenario whose latency profiles were measured
through vLLM on that GPU (``spectune profile latency --engine vllm``) and whose acceptance
comes from vLLM (``spectune profile acceptance --engine vllm``), checkpoints in
``--models`` as ``<models>/<target name>`` and ``<models>/<draft model name>``, and prompts
as token ids (``.jsonl``, ``{"prompt_ids": [...]}``) for a model with a real tokenizer::

    python benchmarks/bench_vllm_policy.py my-gpu-scenario.yaml --models /path/to/models \\
        --prompts prompts.jsonl --drafter my-draft-model --fixed-k 6 \\
        --concurrency 1,4,16,64 --max-num-seqs 64 --kv-cache-gib 20 --repeats 4 \\
        --runs runs/gpu-policy.jsonl --report runs/gpu-policy.md

(On a GPU vLLM may run async scheduling for a draft model; the simulator prices a
synchronous engine: ``--extra async_scheduling=false`` serves with
``--no-async-scheduling``, like with like.)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SCENARIO = REPO / "examples" / "local-cpu-vllm.yaml"
DEFAULT_RUNS = REPO / "docs" / "validation-vllm" / "policy-runs.jsonl"
DEFAULT_REPORT = REPO / "docs" / "validation-vllm" / "policy-report.md"
CONFIGS = ("schedule", "fixed")
# what follows this line in the report is written by hand and kept when it is re-rendered
ANALYSIS = "<!-- analysis (written by hand; kept when the report is regenerated) -->\n"

Band = tuple[int, int, int]


# --------------------------------------------------------------------------- the schedule


def parse_bands(text: str) -> tuple[Band, ...]:
    """``[[1, 2, 4], [3, 8, 2]]`` (JSON) or ``1-2:4,3-8:2``."""
    text = text.strip()
    if text.startswith("["):
        return tuple((int(a), int(b), int(k)) for a, b, k in json.loads(text))
    out = []
    for part in text.split(","):
        span, _, k = part.partition(":")
        lo, _, hi = span.partition("-")
        out.append((int(lo), int(hi or lo), int(k)))
    return tuple(out)


def merge_bands(bands: Sequence[Sequence[int]]) -> tuple[Band, ...]:
    """Adjacent ranges with the same k as one range (the same lookup for vLLM)."""
    out: list[Band] = []
    for lo, hi, k in sorted(tuple(int(x) for x in b) for b in bands):
        if out and out[-1][2] == k and out[-1][1] + 1 == lo:
            out[-1] = (out[-1][0], hi, k)
        else:
            out.append((lo, hi, k))
    return tuple(out)


def emitted_schedule(rs: Any, drafter: str, window: int, max_num_seqs: int) -> tuple[Band, ...]:
    """The schedule spectune emits for ``drafter`` with k in 1..window, bands merged."""
    from spectune.tuner.schedule import StepCosts, best_k_schedule

    costs = StepCosts.from_scenario(rs.with_serving(max_num_seqs=max_num_seqs))
    sched = best_k_schedule(costs, drafter, range(1, window + 1), max_num_seqs)
    return merge_bands(sched.bands)


def k_at(bands: Sequence[Band], window: int, batch: int) -> int:
    """vLLM's lookup: the range holding ``batch``, a gap takes the previous range's k, past
    the end the last k; capped at the window."""
    k = bands[0][2]
    for lo, hi, kk in bands:
        if lo > batch:
            break
        k = kk
        if batch <= hi:
            break
    return min(k, window)


# --------------------------------------------------------------------------- scenarios


def base_scenario(rs: Any, drafter: str, max_num_seqs: int, kv_cache_gib: float) -> Any:
    """The scenario with the serving limits the live server runs with (as the vLLM
    validation sets them: cap, token budget, the KV tokens of ``kv_cache_gib``, vLLM's
    rules)."""
    from spectune.validation.vllm_matrix import BUDGET_TOKENS, kv_tokens

    return rs.with_serving(
        max_num_seqs=max_num_seqs,
        max_batched_tokens=BUDGET_TOKENS,
        kv_cache_tokens=kv_tokens(rs, drafter, kv_cache_gib),
        preemption="recompute",
        engine="vllm",
        prefill="fused",
        attention_context="mean",
    )


def level_scenario(
    rs: Any, drafter: str, window: int, bands: tuple[Band, ...] | None, c: int, n: int
) -> Any:
    """One configuration at one level: closed loop of ``c`` clients, ``n`` requests."""
    out = rs.with_workload(mode="closed", concurrency=c, num_requests=n)
    policy = {"kind": "batch_schedule", "bands": [list(b) for b in bands]} if bands else None
    return out.with_spec(drafter=drafter, num_spec_tokens=window, tree=None, policy=policy)


def requests_for(c: int, fixed: int | None) -> int:
    return fixed if fixed else max(32, 6 * c)


def predict(rs: Any, seed: int) -> dict[str, Any]:
    from spectune.simulator.api import simulate

    m = simulate(rs, seed).metrics
    # the k the DES ran: metrics["speculation_k"] (earlier: metrics["config"]["policy"])
    pol = m.get("speculation_k") or (m.get("config") or {}).get("policy") or {}
    by_k = {int(k): int(v) for k, v in (pol.get("iterations_by_k") or {}).items()}
    return {
        "throughput_tok_per_s": float(m["throughput_tok_per_s"]),
        "tpot_p50_s": float(m["tpot_s"]["p50"] or math.nan),
        "ttft_p50_s": float(m["ttft_s"]["p50"] or math.nan),
        "mean_accepted_len": float(m["mean_accepted_len"]),
        "mean_k": float(pol["mean_k"]) if pol.get("mean_k") is not None else None,
        "iterations_by_k": by_k or None,
    }


# --------------------------------------------------------------------------- live


def _cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes (all their threads), seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _busy_seconds() -> float:
    """CPU seconds every process of the machine has run (``/proc/stat``: all but idle and
    iowait)."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(vals[:8]) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


class ForeignCpu:
    """CPU that processes other than ours (this script, its servers) take: sampled over a
    window, in cores."""

    def __init__(self, pids: Any):
        self.pids = pids  # callable: our processes now

    def mark(self) -> tuple[float, float, float]:
        return time.monotonic(), _busy_seconds(), _cpu_seconds([os.getpid(), *self.pids()])

    def since(self, m: tuple[float, float, float]) -> float:
        t, busy, mine = self.mark()
        return max(0.0, (busy - m[1]) - (mine - m[2])) / max(t - m[0], 1e-9)

    def wait_quiet(self, limit: float, max_wait_s: float) -> float:
        """Wait (1 s samples) until others take under ``limit`` cores, at most
        ``max_wait_s``; the seconds waited."""
        t0 = time.monotonic()
        said = False
        while True:
            m = self.mark()
            time.sleep(1.0)
            load = self.since(m)
            waited = time.monotonic() - t0
            if load < limit or waited >= max_wait_s:
                if said:
                    print(f"  quiet again after {waited:.0f} s ({load:.2f} cores)", flush=True)
                return waited
            if not said:
                print(f"  waiting: other processes take {load:.2f} cores", flush=True)
                said = True


def step_ks(res: Any) -> dict[str, Any]:
    """The k vLLM ran, from the step probe: decode steps by verified drafts per decoding
    request (its k; an n-gram without a match drafts fewer), and, for a draft model, the
    drafter passes each step made (the k it drafted for the next step) by the number of
    requests the step scheduled (the count vLLM looks k up by)."""
    st = res.steps
    batch = np.asarray(st.batch, dtype=int)
    query = np.asarray(st.query, dtype=int)
    pf = np.asarray(st.prefills, dtype=int)
    dec = batch > 0
    by_k = Counter((query[dec] - 1).tolist())
    calls = (res.step_extra or {}).get("draft_calls") or []
    passes: dict[int, Counter] = {}
    for sched, c in zip((batch + pf).tolist(), calls, strict=False):
        if sched > 0:
            passes.setdefault(int(sched), Counter())[len(c)] += 1
    return {
        "iterations_by_k": {int(k): int(v) for k, v in sorted(by_k.items())},
        "mean_k": float(np.mean(query[dec] - 1)) if dec.any() else None,
        "passes_by_scheduled": {
            s: {int(p): int(v) for p, v in sorted(cnt.items())} for s, cnt in sorted(passes.items())
        },
    }


def honour_bands(window: int, max_num_seqs: int) -> tuple[Band, ...]:
    """A schedule whose k is unmistakable at every batch size: 1 at batch 1, 3 at batch 2,
    the window from 3 on."""
    return ((1, 1, 1), (2, 2, min(3, window)), (3, max(3, max_num_seqs), window))


def honour_check(args: argparse.Namespace, plan: dict[str, Any], log: Any) -> None:
    """Does vLLM follow ``num_speculative_tokens_per_batch_size``? One server per drafter
    kind of the scenario (draft model, n-gram) with :func:`honour_bands`, a short closed
    loop at every level; per level: vLLM's draft tokens per draft, and from the step probe
    the most drafts of any request in a step by the requests the step before scheduled
    (the count vLLM looks k up by)."""
    from spectune.profiler.engines.vllm_config import VllmSpec
    from spectune.profiler.engines.vllm_server import VllmServer
    from spectune.profiler.engines.vllm_steps import read_steps
    from spectune.profiler.live import build_workload
    from spectune.validation.live_models import prompt_source_for
    from spectune.validation.vllm_matrix import drafter_dirs

    rs = plan["rs"]
    bands = honour_bands(args.fixed_k, args.max_num_seqs)
    done = {(r["method"], r["concurrency"]) for r in log.rows if r.get("kind") == "honour"}
    specs: dict[str, tuple[str, Any]] = {}
    for name, rd in rs.drafters.items():
        kind = rd.spec.kind
        if kind == "ngram" and "ngram" not in specs:
            lo, hi = rd.spec.lookup_window
            specs["ngram"] = (name, VllmSpec("ngram", args.fixed_k, lo, hi, bands=bands))
        elif kind == "draft_model" and "draft_model" not in specs:
            ddir = drafter_dirs(rs, Path(plan["models"]))[name]
            specs["draft_model"] = (
                name,
                VllmSpec("draft_model", args.fixed_k, model=ddir, bands=bands),
            )
    prompts = prompt_source_for(plan["target_dir"], plan["prompts"], args.seed)
    base = plan["settings"]["fixed"]
    for method, (name, spec) in specs.items():
        levels = [c for c in plan["levels"] if (method, c) not in done]
        if not levels:
            continue
        st = dataclasses.replace(base, spec=spec)
        srv = VllmServer(st, Path(args.work), slo=rs.scenario.slo)
        print(f"honour check: {st.label()}", flush=True)
        try:
            srv.start()
            for c in levels:
                sc = level_scenario(rs, name, args.fixed_k, None, c, 2 * c)
                offset = srv.step_log.stat().st_size if srv.step_log.is_file() else 0
                res = srv.run(build_workload(sc, prompts, args.seed + 2))
                steps = read_steps(srv.step_log, 0.0, math.inf, offset)
                sched = (steps.cols["dec"] + steps.cols["pf"]).astype(int).tolist()
                dec = steps.cols["dec"].astype(int).tolist()
                most = (steps.cols["dec_width_max"] - 1).astype(int).tolist()
                by_prev: dict[int, Counter] = {}
                for i in range(1, len(sched)):
                    if dec[i] > 0 and sched[i - 1] > 0:
                        by_prev.setdefault(sched[i - 1], Counter())[most[i]] += 1
                cn = res.counters or {}
                nd = cn.get("vllm:spec_decode_num_drafts", 0.0)
                nt = cn.get("vllm:spec_decode_num_draft_tokens", 0.0)
                row = {
                    "kind": "honour",
                    "method": method,
                    "drafter": name,
                    "bands": [list(b) for b in bands],
                    "window": args.fixed_k,
                    "concurrency": c,
                    "requests": 2 * c,
                    "num_drafts": nd,
                    "num_draft_tokens": nt,
                    "most_drafts_by_prev_scheduled": {
                        s_: {int(k): int(v) for k, v in sorted(cnt.items())}
                        for s_, cnt in sorted(by_prev.items())
                    },
                    "time": time.time(),
                }
                log.rows.append(row)
                with Path(log.path).open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(
                    f"  c={c}: draft tokens per draft {nt / max(nd, 1.0):.2f}; most drafts by "
                    f"requests scheduled the step before: {row['most_drafts_by_prev_scheduled']}",
                    flush=True,
                )
        finally:
            srv.stop()


def run_id(config: str, c: int, n: int) -> str:
    return f"{config}-c{c}-n{n}"


def live_runs(args: argparse.Namespace, plan: dict[str, Any], log: Any) -> None:
    """Every run of ``plan`` not yet in ``log``, both servers up, interleaved."""
    from spectune.profiler.engines.vllm_server import VllmServer
    from spectune.profiler.live import build_workload
    from spectune.validation.interference import RunMonitor
    from spectune.validation.live_models import prompt_source_for
    from spectune.validation.runs import key_metrics

    levels: list[int] = plan["levels"]
    todo = [
        (rep, c, cfg)
        for rep in range(args.repeats)
        for i, c in enumerate(levels)
        for cfg in (CONFIGS if (rep + i) % 2 == 0 else CONFIGS[::-1])
        if (run_id(cfg, c, plan["n"][c]), rep) not in log.done
    ]
    if not todo:
        print("every run is in the runs file", flush=True)
        return
    prompts = prompt_source_for(plan["target_dir"], plan["prompts"], args.seed)
    work = Path(args.work)
    servers: dict[str, Any] = {}
    best_probe = [math.inf]
    foreign = ForeignCpu(lambda: [p for s in servers.values() for p in s.pids()])
    t_all = time.monotonic()
    try:
        for cfg in CONFIGS:
            if not any(t[2] == cfg for t in todo):
                continue
            srv = VllmServer(plan["settings"][cfg], work, slo=plan["rs"].scenario.slo)
            print(f"starting {cfg}: {plan['settings'][cfg].label()}", flush=True)
            srv.start()
            servers[cfg] = srv
            print(f"  up in {srv.startup_s:.0f} s; warming up every level", flush=True)
            for c in levels:  # untimed: the level's shapes once, other prompts (seed + 1)
                sc = level_scenario(plan["rs"], args.drafter, args.fixed_k, None, c, c)
                srv.run(build_workload(sc, prompts, args.seed + 1))
        for i, (rep, c, cfg) in enumerate(todo):
            n = plan["n"][c]
            sc = level_scenario(plan["rs"], args.drafter, args.fixed_k, None, c, n)
            wl = build_workload(sc, prompts, args.seed)
            srv = servers[cfg]
            others = [p for k, s in servers.items() if k != cfg for p in s.pids()]
            time.sleep(args.settle_s)  # a server spins ~1 s of CPU after its last request
            waited = foreign.wait_quiet(args.quiet_cores, args.max_wait_s)
            fm = foreign.mark()
            mon = RunMonitor(best_probe)
            mon.begin(srv.pids())
            idle0 = _cpu_seconds(others)
            t0 = time.perf_counter()
            res = srv.run(wl)
            wall = time.perf_counter() - t0
            idle = _cpu_seconds(others) - idle0
            other_cores = foreign.since(fm)
            sig = mon.end(srv.pids(), res.metrics["live"].get("fwd_cpu_share"))
            cnt = res.counters or {}
            row = {
                "kind": "live",
                "id": run_id(cfg, c, n),
                "rep": rep,
                "config": cfg,
                "concurrency": c,
                "requests": n,
                "label": plan["settings"][cfg].label(),
                "measured": key_metrics(res.metrics),
                "live": res.metrics["live"],
                "ks": step_ks(res),
                "counters": {
                    k.removeprefix("vllm:spec_decode_"): v
                    for k, v in cnt.items()
                    if not isinstance(v, list)
                },
                "wall_s": round(wall, 3),
                "other_server_cpu_s": round(idle, 3),
                "foreign_cores": round(other_cores, 3),
                "waited_quiet_s": round(waited, 1),
                "interference": sig,
                "disturbed": sig["disturbed"],
                "load1": sig["load1"],
                "time": time.time(),
            }
            log.add(row)
            m = row["measured"]
            print(
                f"[{i + 1}/{len(todo)}] rep {rep} c={c} {cfg:8s} "
                f"{m['throughput_tok_per_s']:7.1f} tok/s  TPOT p50 {1e3 * m['tpot_p50_s']:.2f} ms"
                f"  k {row['ks']['mean_k'] or 0:.2f}  load {sig['load1']:.2f}"
                f"  others {other_cores:.2f} cores"
                f"{'  disturbed ' + ','.join(sig['reasons']) if sig['disturbed'] else ''}"
                f"  ({time.monotonic() - t_all:.0f} s)",
                flush=True,
            )
    finally:
        for srv in servers.values():
            srv.stop()


# --------------------------------------------------------------------------- report


def _median(vals: list[float]) -> float:
    return float(np.median(vals)) if vals else math.nan


def _pct(a: float, b: float) -> float:
    return 100.0 * (a - b) / b if b else math.nan


def summarize(plan: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level: predictions and the medians of the live repeats of both configs."""
    out = []
    for c in plan["levels"]:
        n = plan["n"][c]
        lv: dict[str, Any] = {"concurrency": c, "requests": n, "configs": {}}
        for cfg in CONFIGS:
            runs = [r for r in rows if r.get("kind") == "live" and r["id"] == run_id(cfg, c, n)]
            runs.sort(key=lambda r: r["rep"])
            thr = [r["measured"]["throughput_tok_per_s"] for r in runs]
            tpot = [r["measured"]["tpot_p50_s"] for r in runs]
            acc = [r["measured"]["mean_accepted_len"] for r in runs]
            ks = [r["ks"]["mean_k"] for r in runs if r["ks"]["mean_k"] is not None]
            lv["configs"][cfg] = {
                "predicted": plan["predicted"][cfg][c],
                "runs": len(runs),
                "throughput": thr,
                "throughput_median": _median(thr),
                "tpot_p50_median_s": _median(tpot),
                "accepted_len_median": _median(acc),
                "mean_k_live": _median(ks),
                "disturbed": sum(1 for r in runs if r.get("disturbed")),
                "other_server_cpu_s": [r.get("other_server_cpu_s", 0.0) for r in runs],
                "foreign_cores": [r.get("foreign_cores", math.nan) for r in runs],
                "wall_s": [r["wall_s"] for r in runs],
                "by_rep": {r["rep"]: r["measured"]["throughput_tok_per_s"] for r in runs},
            }
        a, b = lv["configs"]["schedule"], lv["configs"]["fixed"]
        pa, pb = a["predicted"]["throughput_tok_per_s"], b["predicted"]["throughput_tok_per_s"]
        lv["predicted_margin_pct"] = _pct(pa, pb)
        lv["live_margin_pct"] = _pct(a["throughput_median"], b["throughput_median"])
        paired = [a["by_rep"][r] / b["by_rep"][r] for r in sorted(a["by_rep"]) if r in b["by_rep"]]
        lv["paired_ratios"] = paired
        lv["schedule_paired_wins"] = sum(1 for x in paired if x > 1.0)
        lv["predicted_winner"] = "schedule" if pa > pb else "fixed"
        if a["runs"] and b["runs"]:
            ma, mb = a["throughput_median"], b["throughput_median"]
            lv["live_winner"] = "schedule" if ma > mb else "fixed"
            lv["agree"] = lv["live_winner"] == lv["predicted_winner"]
        else:
            lv["live_winner"] = None
            lv["agree"] = None
        out.append(lv)
    return out


def sign_test(wins: int, n: int) -> float:
    """Two-sided sign test: the chance of a split at least this uneven with fair coins."""
    if n == 0:
        return math.nan
    tail = min(wins, n - wins)
    p = sum(math.comb(n, i) for i in range(tail + 1)) / 2.0**n
    return min(1.0, 2.0 * p)


def _f(x: float | None, fmt: str = ".0f") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, fmt)


def _s(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:+.1f}"


def markdown(plan: dict[str, Any], levels: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    from spectune.profiler.engines.vllm_config import bands_label
    from spectune.validation.interference import noise_floor

    sched = plan["bands"]
    window = plan["window"]
    lines = [
        "# A batch-size schedule vs a fixed k on vLLM: predicted vs measured",
        "",
        f"Scenario `{plan['scenario_rel']}`, drafter `{plan['drafter']}` "
        f"({plan['drafter_kind']}), target `{plan['target']}` served by **vLLM "
        f"{meta['vllm']}** (OpenAI server, {plan['mode']}, `max_num_seqs` "
        f"{plan['max_num_seqs']}, token budget {plan['budget']}, "
        f"{plan['kv_cache_gib']:g} GiB KV) on {meta['cpu']} ({meta['cores']} cores). "
        f"Closed loops at concurrency {', '.join(str(c) for c in plan['levels'])}; "
        f"{plan['repeats']} repeats per point, interleaved (A B / B A by level and repeat), "
        "both servers up for the whole run, each warmed up untimed at every level. "
        f"Generated by `benchmarks/bench_vllm_policy.py` (raw runs: "
        f"`{plan['runs_rel']}`).",
        "",
        f"- **schedule**: `num_speculative_tokens_per_batch_size` = "
        f"`{json.dumps([list(b) for b in sched])}` ({bands_label(sched)}), window "
        f"`num_speculative_tokens` {window} — {plan['bands_source']}",
        f"- **fixed**: `num_speculative_tokens` {window} at every batch size",
        f"- predictions: `simulate` of the same scenario, workload mode closed at the level's "
        f"concurrency with the live run's `num_requests` (seed {plan['seed']}, the same "
        "requests), vLLM's serving limits as above, `spec.policy: {kind: batch_schedule, "
        "bands: ...}` for the schedule; spectune at " + meta["git"],
        "",
        "## Per level",
        "",
        "Throughput in output tok/s; measured = median of the repeats; error = (predicted − "
        "measured) / measured; winner margin = schedule / fixed − 1.",
        "",
        "| concurrency | config | predicted tok/s | measured tok/s (median) | error % "
        "| predicted winner | live winner | agree? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        for j, cfg in enumerate(CONFIGS):
            r = lv["configs"][cfg]
            p = r["predicted"]["throughput_tok_per_s"]
            m = r["throughput_median"]
            name = f"schedule {bands_label(sched)}" if cfg == "schedule" else f"fixed k={window}"
            if j == 0:
                pw = f"{lv['predicted_winner']} ({_s(lv['predicted_margin_pct'])}%)"
                lw = (
                    f"{lv['live_winner']} ({_s(lv['live_margin_pct'])}%; schedule ahead in "
                    f"{lv['schedule_paired_wins']} of {len(lv['paired_ratios'])} paired repeats)"
                    if lv["live_winner"]
                    else "—"
                )
                ag = "—" if lv["agree"] is None else ("yes" if lv["agree"] else "**no**")
            else:
                pw = lw = ag = ""
            lines.append(
                f"| {lv['concurrency']} | {name} | {_f(p)} | {_f(m)} (n={r['runs']}) "
                f"| {_s(_pct(p, m))} | {pw} | {lw} | {ag} |"
            )
    lines += [
        "",
        "| concurrency | config | TPOT p50 pred / meas (ms) | TPOT err % "
        "| mean k per decode step pred / live | accepted length pred / meas "
        "| spread % | flagged runs | other processes' CPU (cores, max) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        for cfg in CONFIGS:
            r = lv["configs"][cfg]
            pr = r["predicted"]
            thr = r["throughput"]
            spread = 100 * (max(thr) - min(thr)) / _median(thr) if thr else math.nan
            pk = pr["mean_k"] if pr["mean_k"] is not None else float(window)
            lines.append(
                f"| {lv['concurrency']} | {cfg} | {_f(1e3 * pr['tpot_p50_s'], '.2f')} / "
                f"{_f(1e3 * r['tpot_p50_median_s'], '.2f')} "
                f"| {_s(_pct(pr['tpot_p50_s'], r['tpot_p50_median_s']))} "
                f"| {_f(pk, '.2f')} / {_f(r['mean_k_live'], '.2f')} "
                f"| {_f(pr['mean_accepted_len'], '.2f')} / {_f(r['accepted_len_median'], '.2f')} "
                f"| {_f(spread, '.0f')} | {r['disturbed']} of {r['runs']} "
                f"| {_f(max(r['foreign_cores'], default=math.nan), '.2f')} |"
            )
    errs = [
        abs(
            _pct(
                lv["configs"][c]["predicted"]["throughput_tok_per_s"],
                lv["configs"][c]["throughput_median"],
            )
        )
        for lv in levels
        for c in CONFIGS
        if lv["configs"][c]["runs"]
    ]
    agree = [lv["agree"] for lv in levels if lv["agree"] is not None]
    runs = {
        f"{cfg}-{lv['concurrency']}": lv["configs"][cfg]["throughput"]
        for lv in levels
        for cfg in CONFIGS
    }
    floor = noise_floor(runs, repeats=plan["repeats"])
    idle_max = max(
        (x for lv in levels for c in CONFIGS for x in lv["configs"][c]["other_server_cpu_s"]),
        default=0.0,
    )
    lines += [
        "",
        "## Summary",
        "",
        f"- throughput |error| over the {len(errs)} points: median "
        f"{_f(_median(errs), '.1f')}%, max {_f(max(errs) if errs else math.nan, '.1f')}%",
        f"- predicted winner = live winner at {sum(agree)} of {len(agree)} levels",
        f"- noise: per-run log sd around each point's mean {floor.get('log_sd')} (pooled over "
        f"{floor.get('runs')} runs); with perfect predictions the median |error| of medians of "
        f"{floor.get('repeats')} would be {floor.get('median_err_pct')}% and the largest over "
        f"{floor.get('configs')} points {floor.get('max_err_median_pct')}% (Monte Carlo, "
        "`validation/interference.py`)",
        f"- the idle server's CPU during the other's runs: at most {idle_max:.2f} s per run",
        f"- machine load (1-min load average at the runs): {meta['load']}; wall time of the "
        f"live runs {meta['wall']}",
        "",
        "Paired ratios schedule / fixed per repeat (the two runs of a pair are adjacent in time):",
        "",
    ]
    for lv in levels:
        pr = lv["paired_ratios"]
        rat = ", ".join(f"{x:.3f}" for x in pr)
        med = f" (median {_median(pr):.3f})" if pr else ""
        lines.append(f"- concurrency {lv['concurrency']}: {rat or '—'}{med}")
    pooled = [x for lv in levels for x in lv["paired_ratios"]]
    if pooled:
        wins = sum(1 for x in pooled if x > 1.0)
        lines += [
            "",
            f"Over all levels the schedule was ahead in {wins} of {len(pooled)} pairs "
            f"(median ratio {_median(pooled):.3f}; two-sided sign test p = "
            f"{sign_test(wins, len(pooled)):.3f}).",
        ]
    lines += also_section(plan, levels)
    lines += ["", "## Does vLLM honour the schedule here?", "", *plan["honour_notes"], ""]
    lines += honour_table(plan)
    if plan.get("notes"):
        lines += ["## Notes", "", *plan["notes"], ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def honour_notes(levels: list[int], rows: list[dict[str, Any]], plan: dict[str, Any]) -> list[str]:
    """What the runs show about the k vLLM used (probe + counters)."""
    out = []
    for cfg in CONFIGS:
        agg: dict[int, Counter] = {}
        per_draft = []
        for r in rows:
            if r.get("config") != cfg:
                continue
            for s, cnt in r["ks"]["passes_by_scheduled"].items():
                c = agg.setdefault(int(s), Counter())
                for p, v in cnt.items():
                    c[int(p)] += v
            cn = r.get("counters") or {}
            if cn.get("num_drafts"):
                per_draft.append((r["concurrency"], cn["num_draft_tokens"] / cn["num_drafts"]))
        if agg:
            parts = []
            for s in sorted(agg):
                p, v = agg[s].most_common(1)[0]
                tot = sum(agg[s].values())
                parts.append(f"{s}: {p} ({100 * v / tot:.0f}% of {tot})")
            out.append(
                f"- {cfg}: drafter passes per step (= the k drafted for the next step) by "
                f"requests scheduled in the step, most common: {'; '.join(parts)}"
            )
        if per_draft:
            by_c: dict[int, list[float]] = {}
            for c, x in per_draft:
                by_c.setdefault(c, []).append(x)
            txt = ", ".join(f"c={c}: {_median(v):.2f}" for c, v in sorted(by_c.items()))
            out.append(
                f"- {cfg}: vLLM's counters, draft tokens per draft (median over repeats): {txt}"
            )
    want = ", ".join(
        f"{b}: {k_at(plan['bands'], plan['window'], b)}" for b in range(1, plan["max_num_seqs"] + 1)
    )
    out.append(f"- the schedule's lookup by batch size (vLLM's rules): {want}")
    return out


def also_section(plan: dict[str, Any], levels: list[dict[str, Any]]) -> list[str]:
    """The same live medians against other scenarios' predictions (``--also-predict``)."""
    from spectune.profiler.engines.vllm_config import bands_label

    out: list[str] = []
    for a in plan.get("also") or []:
        rel = a["path"]
        with_ = Path(rel).resolve()
        if with_.is_relative_to(REPO):
            rel = str(with_.relative_to(REPO))
        out += [
            "",
            f"## The same runs against `{rel}`",
            "",
            f"Predictions of the same two configurations (the schedule above) from `{rel}`; "
            f"the schedule that scenario would emit itself: {bands_label(a['emits'])}.",
            "",
            "| concurrency | schedule pred / meas (err %) | fixed pred / meas (err %) "
            "| predicted winner | live winner | agree? |",
            "|---|---|---|---|---|---|",
        ]
        for lv in levels:
            c = lv["concurrency"]
            cells = []
            pr = {}
            for cfg in CONFIGS:
                p = a["predicted"][cfg][c]["throughput_tok_per_s"]
                m = lv["configs"][cfg]["throughput_median"]
                pr[cfg] = p
                cells.append(f"{_f(p)} / {_f(m)} ({_s(_pct(p, m))})")
            pw = "schedule" if pr["schedule"] > pr["fixed"] else "fixed"
            margin = _pct(pr["schedule"], pr["fixed"])
            lw = lv["live_winner"]
            ag = "—" if lw is None else ("yes" if lw == pw else "**no**")
            out.append(
                f"| {c} | {cells[0]} | {cells[1]} | {pw} ({_s(margin)}%) | {lw or '—'} "
                f"({_s(lv['live_margin_pct'])}%) | {ag} |"
            )
    return out


def honour_table(plan: dict[str, Any]) -> list[str]:
    rows = plan.get("honour_rows") or []
    if not rows:
        return []
    from spectune.profiler.engines.vllm_config import bands_label

    b = rows[0]["bands"]
    out = [
        f"A check schedule whose k cannot be mistaken, {bands_label(b)} "
        f"(`{json.dumps(b)}`, window {rows[0]['window']}), served by each drafter kind "
        "(`--honour-check`: short closed loops of 2 x concurrency requests). Draft tokens "
        "per draft are vLLM's Prometheus counters; the k column is, from the step probe, "
        "the most drafts any request verified in a step, by the requests vLLM scheduled in "
        "the step before (it looks k up by that count): the most common value and its "
        "share of the steps (an n-gram drafts fewer when its match is short).",
        "",
        "| drafter | concurrency | draft tokens per draft | k by requests scheduled the step "
        "before |",
        "|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["method"], r["concurrency"])):
        parts = []
        for s_, cnt in r["most_drafts_by_prev_scheduled"].items():
            k, v = max(cnt.items(), key=lambda kv: kv[1])
            tot = sum(cnt.values())
            parts.append(f"{s_}: {k} ({100 * v / tot:.0f}% of {tot})")
        tpd = r["num_draft_tokens"] / r["num_drafts"] if r["num_drafts"] else math.nan
        out.append(
            f"| {r['drafter']} ({r['method']}) | {r['concurrency']} | {_f(tpd, '.2f')} "
            f"| {'; '.join(parts)} |"
        )
    return [*out, ""]


def build_plan(args: argparse.Namespace) -> dict[str, Any]:
    from spectune.profiler.engines.vllm_config import VllmSettings, VllmSpec, require_vllm
    from spectune.simulator.errors import InputError
    from spectune.simulator.scenario import load_scenario
    from spectune.validation.settings import default_dir
    from spectune.validation.vllm_matrix import BUDGET_TOKENS, drafter_dirs

    scen = Path(args.scenario)
    rs0 = load_scenario(scen)
    if args.drafter not in rs0.drafters:
        raise InputError(f"no drafter '{args.drafter}' in the scenario", field="--drafter")
    rd = rs0.drafters[args.drafter]
    models = Path(args.models) if args.models else default_dir(scen, "models")
    tname = rs0.scenario.target.name or rs0.target.model.name
    target_dir = (models / tname).resolve()
    rs = base_scenario(rs0, args.drafter, args.max_num_seqs, args.kv_cache_gib)
    if args.bands:
        bands = merge_bands(parse_bands(args.bands))
        source = "given (`--bands`)"
    else:
        bands = emitted_schedule(rs, args.drafter, args.fixed_k, args.max_num_seqs)
        source = (
            "what spectune emits: `best_k_schedule(StepCosts.from_scenario(...), "
            f"'{args.drafter}', ks=1..{args.fixed_k}, max_batch={args.max_num_seqs})`, "
            "adjacent bands with the same k merged"
        )
    ks = {k_at(bands, args.fixed_k, b) for b in range(1, args.max_num_seqs + 1)}
    if ks == {args.fixed_k}:
        raise InputError(
            f"the schedule {list(bands)} runs k={args.fixed_k} at every batch size up to "
            f"{args.max_num_seqs}: nothing to compare (pass --bands or another --fixed-k)",
            field="--bands",
        )
    if rd.spec.kind == "ngram":
        lo, hi = rd.spec.lookup_window
        mk = lambda b: VllmSpec("ngram", args.fixed_k, lo, hi, bands=b)
    elif rd.spec.kind == "draft_model":
        ddir = drafter_dirs(rs0, models)[args.drafter]
        mk = lambda b: VllmSpec("draft_model", args.fixed_k, model=ddir, bands=b)
    else:
        raise InputError(f"vLLM runs draft_model or ngram here, not {rd.spec.kind}")
    dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(
        rs0.target.device.dtype, rs0.target.device.dtype
    )
    extra: dict[str, Any] = {}
    for kv in args.extra or []:
        k, _, v = kv.partition("=")
        extra[k] = {"true": True, "false": False}.get(v.lower(), v)
    settings = {
        cfg: VllmSettings(
            model=str(target_dir),
            dtype=dtype,
            max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=BUDGET_TOKENS,
            spec=mk(bands if cfg == "schedule" else None),
            enforce_eager=args.eager,
            kv_cache_gib=args.kv_cache_gib,
            seed=args.seed,
            extra=extra,
        )
        for cfg in CONFIGS
    }
    levels = [int(x) for x in args.concurrency.split(",")]
    n = {c: requests_for(c, args.requests) for c in levels}
    predicted: dict[str, dict[int, Any]] = {cfg: {} for cfg in CONFIGS}
    for c in levels:
        for cfg in CONFIGS:
            sc = level_scenario(
                rs, args.drafter, args.fixed_k, bands if cfg == "schedule" else None, c, n[c]
            )
            predicted[cfg][c] = predict(sc, args.seed)
    also = []
    for path in args.also_predict or []:
        other = load_scenario(path)
        if args.drafter not in other.drafters:
            raise InputError(f"no drafter '{args.drafter}' in {path}", field="--also-predict")
        ors = base_scenario(other, args.drafter, args.max_num_seqs, args.kv_cache_gib)
        pred = {
            cfg: {
                c: predict(
                    level_scenario(
                        ors,
                        args.drafter,
                        args.fixed_k,
                        bands if cfg == "schedule" else None,
                        c,
                        n[c],
                    ),
                    args.seed,
                )
                for c in levels
            }
            for cfg in CONFIGS
        }
        emits = emitted_schedule(ors, args.drafter, args.fixed_k, args.max_num_seqs)
        also.append({"path": path, "predicted": pred, "emits": emits})
    if not args.report_only:
        require_vllm()
    wl = rs0.scenario.workload
    blob = {
        "settings": {cfg: st.key() for cfg, st in settings.items()},
        "seed": args.seed,
        "prompt_tokens": wl.prompt_tokens.model_dump() if wl.prompt_tokens else None,
        "output_tokens": wl.output_tokens.model_dump() if wl.output_tokens else None,
        "prompts": str(args.prompts or ""),
    }
    fp = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]
    prompts = (
        Path(args.prompts) if args.prompts else default_dir(scen, "examples/prompts/stdlib.txt")
    )

    def rel(p: Path) -> str:
        try:
            return str(Path(p).resolve().relative_to(REPO))
        except ValueError:
            return str(p)

    return {
        "rs": rs,
        "scenario_rel": rel(scen),
        "runs_rel": rel(Path(args.runs)),
        "drafter": args.drafter,
        "drafter_kind": rd.spec.kind,
        "target": tname,
        "target_dir": target_dir,
        "models": models,
        "prompts": prompts,
        "bands": bands,
        "bands_source": source,
        "window": args.fixed_k,
        "levels": levels,
        "n": n,
        "repeats": args.repeats,
        "max_num_seqs": args.max_num_seqs,
        "budget": BUDGET_TOKENS,
        "kv_cache_gib": args.kv_cache_gib,
        "mode": "eager" if args.eager else "compiled",
        "seed": args.seed,
        "settings": settings,
        "predicted": predicted,
        "fingerprint": fp,
        "also": also,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from spectune.profiler.runtime.timing import cpu_name

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("scenario", nargs="?", default=str(DEFAULT_SCENARIO))
    ap.add_argument("--drafter", default="byte-drafter")
    ap.add_argument("--fixed-k", type=int, default=6, help="the fixed k and the window")
    ap.add_argument("--bands", help="schedule as JSON [[lo, hi, k], ...] or lo-hi:k,...")
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--max-num-seqs", type=int, default=8)
    ap.add_argument("--requests", type=int, help="per level (default max(32, 6 x c))")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--kv-cache-gib", type=float, default=1.0)
    ap.add_argument("--models", help="folder of checkpoints (default: models/)")
    ap.add_argument("--prompts", help="prompt file (default examples/prompts/stdlib.txt)")
    ap.add_argument(
        "--extra",
        action="append",
        help="further vLLM engine argument KEY=VALUE (true/false: --key / --no-key)",
    )
    ap.add_argument(
        "--also-predict",
        action="append",
        metavar="SCENARIO",
        help="also compare the live runs with this scenario's predictions (repeatable)",
    )
    ap.add_argument("--runs", default=str(DEFAULT_RUNS))
    ap.add_argument("--report", default=str(DEFAULT_REPORT))
    ap.add_argument("--work", default=str(REPO / "runs" / "vllm-policy"))
    ap.add_argument("--report-only", action="store_true", help="render from --runs only")
    ap.add_argument(
        "--honour-check",
        action="store_true",
        help="first check that vLLM follows a schedule, for each drafter kind",
    )
    ap.add_argument("--settle-s", type=float, default=2.0, help="pause before each run")
    ap.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="before each run, wait until other processes take fewer cores than this",
    )
    ap.add_argument("--max-wait-s", type=float, default=600.0, help="longest wait for quiet")
    args = ap.parse_args(argv)

    from spectune.profiler.engines.vllm_config import vllm_version
    from spectune.simulator.errors import SpectuneError
    from spectune.validation.runs import RunLog

    try:
        plan = build_plan(args)
    except SpectuneError as e:
        print(f"bench_vllm_policy: error: {e}", file=sys.stderr)
        return 2
    print(f"schedule {[list(b) for b in plan['bands']]} vs fixed k={args.fixed_k}", flush=True)
    for c in plan["levels"]:
        pa = plan["predicted"]["schedule"][c]["throughput_tok_per_s"]
        pb = plan["predicted"]["fixed"][c]["throughput_tok_per_s"]
        print(f"  predicted c={c} (n={plan['n'][c]}): schedule {pa:.0f}, fixed {pb:.0f}")
    log = RunLog(Path(args.runs), plan["fingerprint"])
    t0 = time.monotonic()
    rows_before = len(log.rows)
    if not args.report_only:
        from spectune.profiler.engines.processes import sigterm_as_interrupt

        with sigterm_as_interrupt():  # SIGTERM stops the servers as Ctrl-C does
            if args.honour_check:
                honour_check(args, plan, log)
            live_runs(args, plan, log)
    rows = [r for r in log.rows if r.get("kind") == "live"]
    levels = summarize(plan, rows)
    loads = [r["load1"] for r in rows]
    walls = sum(r["wall_s"] for r in rows)
    meta = {
        "vllm": vllm_version() or "?",
        "cpu": cpu_name(),
        "git": _git_state(),
        "cores": os.cpu_count(),
        "load": f"{min(loads):.1f}–{max(loads):.1f}" if loads else "—",
        "wall": f"{walls:.0f} s over {len(rows)} runs"
        + (
            f"; this invocation {time.monotonic() - t0:.0f} s"
            if len(log.rows) > rows_before
            else ""
        ),
    }
    plan["honour_notes"] = honour_notes(plan["levels"], rows, plan)
    plan["honour_rows"] = [r for r in log.rows if r.get("kind") == "honour"]
    text = markdown(plan, levels, meta)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    kept = report.read_text().partition(ANALYSIS)[2] if report.is_file() else ""
    report.write_text(text + "\n" + ANALYSIS + (kept or "\n"))
    print(text)
    return 0


def _git_state() -> str:
    """The commit the predictions were made at, and whether the simulator or tuner had
    uncommitted changes then."""
    import subprocess

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "simulator", "tuner")
    return f"commit {head}" + (" (simulator/ or tuner/ with uncommitted changes)" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
