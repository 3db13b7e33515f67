"""Is a simulated open-loop run in steady state, and does the server keep up with arrivals?

A run of N Poisson arrivals starts with an empty server, so its first requests see a
lighter load than the ones that follow: the batch and the queues grow until they settle.
Statistics over the whole run mix that warm-up with the steady state, and a short run can
look sustainable while its queue is still growing (the reason ``plan`` once overstated
capacity by 40–70%).

Method (times in seconds, counts in requests):

- **Window.** Requests arriving in the first ``warmup_fraction`` (default 1/4) of the
  arrival span are warm-up; the *steady window* runs from there to the last arrival.
  Latency percentiles (TTFT, TPOT, E2E), goodput and SLO attainment are computed over the
  requests arriving in the window (each is followed until it finishes).
- **Queue statistics.** ``in_system(t)`` = arrived − finished, ``waiting(t)`` = arrived −
  started (first token out), sampled at 400 evenly spaced instants of the window; their
  means over the window's first and second halves are ``Q1, Q2`` and ``W1, W2``.
- **Completion ratio.** If the in-system count grows at g req/s, departures run at
  λ − g. With A arrivals in the window, g ≈ 2 (Q2 − Q1) / span, so the departure rate over
  the arrival rate is ``1 − 2 (Q2 − Q1) / A``. Means over halves, not end points: the
  count swings by tens of requests when long outputs finish, and end points would turn
  that noise into a verdict.
- **Waiting queue.** It *grows* when ``W2 > 1.5 W1 + 1``: half as long again and by more
  than one request (a settled queue's halves agree within noise; a queue that keeps
  growing is not a steady state, however slowly it grows). ``2 (W2 − W1) / A`` is
  reported as the fraction of arrivals that piled up unserved.
- **Whole-run completion.** The run's completed requests per second as ``spectune
  simulate`` reports it (first arrival to last finish, so the drain after the last arrival
  counts) over the rate the run's arrivals actually came at (N over the arrival span).
  Not over the *offered* rate: a Poisson draw of N arrivals comes faster or slower than
  offered by about 1/sqrt(N) (±1.4% at 5,000), the same factor at every rate for a seed,
  so a criterion against the offered rate would judge the draw, not the server. Both are
  reported (``run_completion``, ``offered_completion``).

A run *keeps up* when the completion ratio and the whole-run completion are both at least
``1 − tol`` (default 3%: a server that completes at least 97% of what arrives) and the
waiting queue does not grow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectune.simulator.engine import EngineResult
from spectune.simulator.metrics import compute_metrics
from spectune.simulator.schema import Slo

WARMUP_FRACTION = 0.25
KEEP_UP_TOL = 0.03
QUEUE_GROWTH = 1.5  # second-half mean waiting count over the first half's that means "grows"
GRID_POINTS = 400


@dataclass(frozen=True)
class SteadyState:
    """Steady-window statistics of one run (see the module docstring).

    Attributes:
        window_s: (start, end) of the steady window, seconds since the first arrival.
        arrivals: requests arriving in the window.
        in_system: mean in-system count over the window's (first, second) half.
        waiting: mean waiting count over the window's (first, second) half.
        completion_ratio: departure rate / arrival rate over the window.
        queue_growth: fraction of the window's arrivals the waiting queue gained
            (reported; "grows" is :attr:`queue_grows`).
        run_completion: the whole run's completed requests per second / its arrival rate.
        offered_completion: the same over the offered rate (what ``simulate`` compares).
        metrics: latency summaries and rates over the window's requests, in the keys of
            ``spectune simulate --json`` (``ttft_s``, ``tpot_s``, ``e2e_s``,
            ``goodput_req_per_s``, ``slo_attainment``, ``throughput_tok_per_s``,
            ``mean_batch_size`` = mean running sequences, ``num_requests``).
    """

    window_s: tuple[float, float]
    arrivals: int
    in_system: tuple[float, float]
    waiting: tuple[float, float]
    completion_ratio: float
    queue_growth: float
    run_completion: float
    offered_completion: float
    metrics: dict[str, Any]

    @property
    def queue_grows(self) -> bool:
        w1, w2 = self.waiting
        return w2 > QUEUE_GROWTH * w1 + 1.0

    def keep_up_shortfall(self, tol: float = KEEP_UP_TOL) -> float:
        """How far the run is from keeping up (<= 0 = it keeps up), as a fraction."""
        growing = max(self.queue_growth, 1e-6) if self.queue_grows else -1.0
        return max(
            (1.0 - tol) - self.completion_ratio,
            growing,
            (1.0 - tol) - self.run_completion,
        )

    def keeps_up(self, tol: float = KEEP_UP_TOL) -> bool:
        return self.keep_up_shortfall(tol) <= 0.0


def steady_state(
    res: EngineResult,
    slo: Slo,
    rate_per_s: float,
    warmup_fraction: float = WARMUP_FRACTION,
) -> SteadyState:
    """The steady-window statistics of one open-loop run.

    Args:
        res: the engine's raw result (``SimResult.engine``).
        slo: the scenario's SLOs (for goodput and attainment over the window).
        rate_per_s: the offered arrival rate.
        warmup_fraction: share of the arrival span treated as warm-up.

    Returns:
        The :class:`SteadyState`.
    """
    a, s, f = res.arrival_s, res.first_token_s, res.finish_s
    out_tok = res.output_tokens
    t0, t1 = float(a.min()), float(a.max())
    w = t0 + warmup_fraction * (t1 - t0)
    grid = np.linspace(w, t1, GRID_POINTS)  # [GRID_POINTS]
    arrived = np.searchsorted(np.sort(a), grid, side="right")
    in_system = arrived - np.searchsorted(np.sort(f), grid, side="right")
    waiting = arrived - np.searchsorted(np.sort(s), grid, side="right")
    half = GRID_POINTS // 2
    q = (float(in_system[:half].mean()), float(in_system[half:].mean()))
    wq = (float(waiting[:half].mean()), float(waiting[half:].mean()))
    sel = a >= w
    n = int(sel.sum())
    completion = 1.0 - 2.0 * (q[1] - q[0]) / n if n else math.nan
    growth = 2.0 * (wq[1] - wq[0]) / n if n else math.nan
    duration = max(float(f.max()) - t0, 0.0)
    done_per_s = a.size / duration if duration > 0 else math.nan
    arrived_per_s = (a.size - 1) / (t1 - t0) if t1 > t0 else math.nan

    # The window's requests, priced by the simulator's own metrics (summaries, SLO rule).
    window = dataclasses.replace(
        res,
        arrival_s=a[sel],
        first_token_s=s[sel],
        finish_s=f[sel],
        prompt_tokens=res.prompt_tokens[sel],
        output_tokens=out_tok[sel],
        preemptions=res.preemptions[sel],
        generated=None,
    )
    m = compute_metrics(window, slo) if n else {}
    span = t1 - w
    running = in_system - waiting
    metrics: dict[str, Any] = {
        "num_requests": n,
        "window_s": [w - t0, t1 - t0],
        **{k: m.get(k) for k in ("ttft_s", "tpot_s", "e2e_s", "slo_attainment")},
        "goodput_req_per_s": m.get("slo_attainment", math.nan) * n / span if span > 0 else math.nan,
        "throughput_tok_per_s": float(out_tok[sel].sum()) / span if span > 0 else math.nan,
        "requests_per_s": n / span if span > 0 else math.nan,
        "mean_batch_size": float(running.mean()),
    }
    return SteadyState(
        window_s=(w - t0, t1 - t0),
        arrivals=n,
        in_system=q,
        waiting=wq,
        completion_ratio=completion,
        queue_growth=growth,
        run_completion=done_per_s / arrived_per_s,
        offered_completion=done_per_s / rate_per_s,
        metrics=metrics,
    )
