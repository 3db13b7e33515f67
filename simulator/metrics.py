"""Serving metrics of one simulated run: the JSON contract of ``spectune simulate --json``.

Definitions (times in seconds, rates per second of simulated time):

- ``duration_s``: first arrival to last finish. ``throughput_tok_per_s`` = output tokens /
  duration (total tokens / makespan); ``requests_per_s`` = requests / duration;
  ``mean_request_tok_per_s`` = the mean over requests of output tokens / E2E (what one
  request sees; papers' per-request figure for a batch of identical requests).
- TTFT = first token − arrival (the first token is emitted when the prefill completes);
  E2E = finish − arrival; TPOT = (E2E − TTFT) / (output tokens − 1), for outputs > 1
  token. Each reported as ``{p50, p90, p99, mean}`` (linear-interpolated percentiles).
- ``mean_accepted_len``: vLLM's convention, 1 + accepted drafts / drafting steps (bonus
  included; tokens beyond a request's output length count, as vLLM counts them before it
  stops the request; a step that drafted nothing — an n-gram miss — is no draft, as in
  vLLM's ``num_drafts``). ``mean_tokens_per_step`` = emitted decode tokens / decode steps
  (every step, after that cut). ``acceptance_rate`` = accepted / drafted tokens.
- ``goodput_req_per_s``: requests meeting every given SLO (TTFT, TPOT, E2E) / duration;
  with no SLO given, every request counts. A one-token output meets any TPOT SLO.
- ``batch_size_hist``: engine iterations by the number of sequences in them.
- ``utilization``: fraction of the duration the engine was running a forward.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .engine import EngineResult
from .schema import Slo

PERCENTILES = (50, 90, 99)


def summary(values: np.ndarray) -> dict[str, float | None]:
    """``{p50, p90, p99, mean}`` of ``values`` (None for an empty array)."""
    if values.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    q = np.percentile(values, PERCENTILES)
    out: dict[str, float | None] = {f"p{p}": float(v) for p, v in zip(PERCENTILES, q, strict=True)}
    out["mean"] = float(values.mean())
    return out


def compute_metrics(res: EngineResult, slo: Slo) -> dict[str, Any]:
    """Metrics of one engine run (see the module docstring).

    Args:
        res: the engine's raw result.
        slo: the scenario's SLOs (unset fields are not checked).

    Returns:
        A JSON-ready dict (floats, ints, lists, dicts).
    """
    n = int(res.arrival_s.shape[0])
    out_tok = res.output_tokens
    start = float(res.arrival_s.min()) if n else 0.0
    duration = max(float(res.finish_s.max()) - start, 0.0) if n else 0.0
    ttft = res.first_token_s - res.arrival_s
    e2e = res.finish_s - res.arrival_s
    multi = out_tok > 1
    tpot_all = np.zeros(n)
    tpot_all[multi] = (e2e[multi] - ttft[multi]) / (out_tok[multi] - 1)

    ok = np.ones(n, dtype=bool)
    if slo.ttft_s is not None:
        ok &= ttft <= slo.ttft_s
    if slo.tpot_s is not None:
        ok &= tpot_all <= slo.tpot_s
    if slo.e2e_s is not None:
        ok &= e2e <= slo.e2e_s
    good = int(ok.sum())

    def per_s(x: float) -> float:
        return x / duration if duration > 0 else math.nan

    steps = res.decode_steps
    accepted = res.drawn_tokens - steps
    # vLLM's convention: per drafting step (a step that drafted nothing is no draft).
    drafting = steps if res.drafting_steps is None else res.drafting_steps
    drafted = steps * res.nodes if res.drafted_tokens is None else res.drafted_tokens
    hist = {b: c for b, c in enumerate(res.batch_hist) if c}
    iters = sum(hist.values())
    return {
        "num_requests": n,
        "output_tokens": int(out_tok.sum()),
        "prompt_tokens": int(res.prompt_tokens.sum()),
        "duration_s": duration,
        "throughput_tok_per_s": per_s(float(out_tok.sum())),
        "mean_request_tok_per_s": _mean_request_rate(out_tok, e2e),
        "requests_per_s": per_s(float(n)),
        "goodput_req_per_s": per_s(float(good)),
        "slo_attainment": good / n if n else math.nan,
        "slo": {k: v for k, v in slo.model_dump().items() if v is not None and k.endswith("_s")},
        "ttft_s": summary(ttft),
        "tpot_s": summary(tpot_all[multi]),
        "e2e_s": summary(e2e),
        "mean_accepted_len": _accepted_len(res, accepted, drafting),
        "mean_tokens_per_step": res.decode_tokens / steps if steps else 1.0,
        "acceptance_rate": accepted / drafted if steps and drafted else None,
        "decode_steps": steps,
        "batch_size_hist": hist,
        "mean_batch_size": sum(b * c for b, c in hist.items()) / iters if iters else 0.0,
        "utilization": res.busy_s / duration if duration > 0 else 0.0,
        "preemptions": res.num_preemptions,
        "kv_peak_tokens": res.kv_peak_tokens,
        "kv_cache_tokens": res.kv_cache_tokens,
        "sim_time_s": res.end_s,
        "iterations": res.iterations,
        "des_events": res.iterations + res.arrivals,
    }


def _accepted_len(res: EngineResult, accepted: int, drafting: int) -> float:
    """1 + accepted / drafting steps (bonus included; vLLM's num_drafts)."""
    if res.drafting_steps is None:  # every step drafted: the same value, as computed before
        return res.drawn_tokens / res.decode_steps if res.decode_steps else 1.0
    return 1.0 + accepted / drafting if drafting else 1.0


def _mean_request_rate(out_tok: np.ndarray, e2e: np.ndarray) -> float | None:
    """Mean over requests of output tokens / E2E seconds (None without requests)."""
    ok = e2e > 0
    return float((out_tok[ok] / e2e[ok]).mean()) if ok.any() else None
