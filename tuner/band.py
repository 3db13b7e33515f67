"""How sure a recommendation is: re-running the finalists over resampled seeds and acceptance.

Each sample re-simulates the two best finalists at search fidelity with another seed
(arrival, length and acceptance draws) and a resampled acceptance level: one logit shift
per drafter, N(0, 0.15²) — about ±3 points at a = 0.7, standing for the error of a
measured acceptance profile (recorded trajectories: resampled with replacement instead).
Reported: the pick's objective range over the samples relative to its nominal value, and
how often it stays ahead of the runner-up.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from spectune.simulator.acceptance import shift_probs
from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario

from .evaluate import DIRECTIONS, Evaluation, Evaluator

ACCEPTANCE_LOGIT_SD = 0.15


def resample_acceptance(rs: ResolvedScenario, rng: np.random.Generator) -> ResolvedScenario:
    """A copy with every drafter's acceptance shifted by one N(0, 0.15²) logit step."""
    drafters = {}
    for name, d in rs.drafters.items():
        shift = np.array([rng.normal(0.0, ACCEPTANCE_LOGIT_SD)])
        acc = d.acceptance

        def moved(v: list[float] | None, s: np.ndarray = shift) -> list[float] | None:
            return None if v is None else shift_probs(np.asarray(v, float), s)[0].tolist()

        update: dict[str, Any] = {
            "per_position": moved(acc.per_position),
            "ranked": moved(acc.ranked),
            "per_request": moved(acc.per_request),
        }
        if acc.trajectories:  # recorded requests: a bootstrap of the measured set
            n = len(acc.trajectories)
            update["trajectories"] = [acc.trajectories[i] for i in rng.integers(0, n, n)]
        new = acc.model_copy(update=update)
        drafters[name] = ResolvedDrafter(spec=d.spec, acceptance=new, latency=d.latency)
    return dataclasses.replace(rs, drafters=drafters)


def confidence_band(
    rs: ResolvedScenario,
    finalists: list[Evaluation],
    objective: str,
    evaluator: Evaluator,
    seed: int,
    samples: int,
) -> dict[str, Any]:
    """Spread of the pick's objective over resampled seeds and acceptance (module doc)."""
    if samples <= 0 or not finalists:
        return {}
    rivals = finalists[:2]
    ss = np.random.SeedSequence([seed, 4242])
    rows: list[list[float]] = []
    for i, child in enumerate(ss.spawn(samples)):
        rng = np.random.default_rng(child)
        base = resample_acceptance(evaluator.base, rng)
        rows.append(
            [
                evaluator.evaluate(e.config, seed=seed + 1 + i, base=base).value(objective)
                for e in rivals
            ]
        )
    vals = np.asarray(rows)  # [samples, rivals]
    nominal = evaluator.evaluate(rivals[0].config).value(objective)
    rel = vals[:, 0] / nominal if nominal else np.full(samples, np.nan)
    out: dict[str, Any] = {
        "samples": samples,
        "fidelity_requests": evaluator.num_requests,
        "how": "other seeds + acceptance shifted N(0, 0.15^2) in logit space per drafter",
        "value_min": float(vals[:, 0].min()),
        "value_median": float(np.median(vals[:, 0])),
        "value_max": float(vals[:, 0].max()),
        "relative_min": float(np.nanmin(rel)),
        "relative_max": float(np.nanmax(rel)),
    }
    if len(rivals) > 1:
        better = (
            vals[:, 0] > vals[:, 1]
            if DIRECTIONS[objective] == "maximize"
            else (vals[:, 0] < vals[:, 1])
        )
        out["runner_up"] = rivals[1].config.label()
        out["wins_vs_runner_up"] = float(better.mean())
    return out
