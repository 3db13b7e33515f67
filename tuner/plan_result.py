"""What a capacity plan reports: probes (one config at one rate and seed, judged on its
steady state), rate points (plain decoding and the best config at a rate), the result.
Rates in requests per second, times in seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .evaluate import Evaluation, percentile_key
from .space import Config
from .steady import SteadyState


@dataclass(frozen=True)
class Probe:
    """One config simulated at one rate with one seed, judged on its steady state."""

    rate_per_s: float
    seed: int
    evaluation: Evaluation  # metrics = the steady window's; violation = SLOs and keep-up
    steady: SteadyState
    run: dict[str, Any]  # what `spectune simulate` reports for the same run (all requests)

    @property
    def sustains(self) -> bool:
        return self.evaluation.feasible

    @property
    def config(self) -> Config:
        return self.evaluation.config

    def row(self, percentile: int) -> dict[str, Any]:
        """The steady-state figures at the SLOs' percentile (JSON keys name it)."""
        m = self.evaluation.metrics
        st = self.steady
        q = f"p{percentile}"
        return {
            "config": self.config.label(),
            "meets_slos": self.sustains,
            "goodput_req_per_s": float(m.get("goodput_req_per_s") or 0.0),
            "throughput_tok_per_s": float(m.get("throughput_tok_per_s") or 0.0),
            percentile_key("tpot", percentile): _pq(m, "tpot_s", q),
            percentile_key("ttft", percentile): _pq(m, "ttft_s", q),
            "completion_ratio": st.completion_ratio,
            "waiting_queue_mean": list(st.waiting),
            "waiting_queue_grows": st.queue_grows,
            "run_requests_per_s": float(self.run.get("requests_per_s") or math.nan),
            "run_completion": st.run_completion,
            "run_offered_completion": st.offered_completion,
        }

    def check(self) -> dict[str, Any]:
        """The whole record of this run: steady window and whole run (JSON)."""
        st, run, pct = self.steady, self.run, self.evaluation.percentile
        return {
            "rate_per_s": self.rate_per_s,
            "seed": self.seed,
            "config": self.config.label(),
            "sustains": self.sustains,
            "steady": self.row(pct),
            "window_s": list(st.window_s),
            "in_system_mean": list(st.in_system),
            "run": {
                **run,
                "completion": st.run_completion,
                "offered_completion": st.offered_completion,
            },
        }


def _pq(m: dict[str, Any], key: str, q: str) -> float:
    v = (m.get(key) or {}).get(q)
    return float(v) if v is not None else math.nan


def run_summary(m: dict[str, Any]) -> dict[str, Any]:
    """The whole run's figures as ``spectune simulate`` prints them (all requests)."""
    keys = ("num_requests", "requests_per_s", "ttft_s", "tpot_s", "e2e_s", "slo_attainment")
    return {k: m.get(k) for k in keys}


@dataclass
class RatePoint:
    """Plain decoding and the best config found at one rate (the plan's seed)."""

    rate_per_s: float
    plain: Probe
    best: Probe

    def row(self, percentile: int) -> dict[str, Any]:
        return {
            "rate_per_s": self.rate_per_s,
            "plain": self.plain.row(percentile),
            "sd": self.best.row(percentile),
        }


@dataclass
class PlanResult:
    """What ``spectune plan`` reports. ``checks_*`` are the reported config's runs at the
    reported rate, one per seed (the plan's seed first)."""

    max_rate_plain: float
    max_rate_sd: float
    checks_plain: list[Probe]
    checks_sd: list[Probe]
    points: list[RatePoint]
    requests: int
    objective: str
    percentile: int
    seeds: tuple[int, ...]
    qps: float | None = None
    replicas_plain: int | None = None
    replicas_sd: int | None = None
    simulations: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def config_at_max(self) -> str:
        return self.checks_sd[0].config.label()
