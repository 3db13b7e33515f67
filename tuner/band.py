"""How sure a recommendation is: re-running the finalists over resampled seeds and acceptance.

Each sample re-simulates the two best finalists at *final* fidelity (the runs the pick was
chosen on, so the band and the table speak of the same simulations) with another seed
(arrival, length and acceptance draws) and a resampled acceptance level: one logit shift
per drafter, N(0, 0.15²) — about ±3 points at a = 0.7, standing for the error of a
measured acceptance profile (recorded trajectories: resampled with replacement instead).
Reported: the pick's objective range over the samples relative to its nominal value, and
how often it stays ahead of the runner-up (equal values count as ties).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from spectune.simulator.acceptance import shift_probs
from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario

from .evaluate import Evaluation, Evaluator, Job

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
    finalists: list[Evaluation],
    objective: str,
    evaluator: Evaluator,
    seed: int,
    samples: int,
    *,
    requests: int,
    workers: int = 1,
) -> dict[str, Any]:
    """Spread of the pick's objective over resampled seeds and acceptance (module doc).

    Args:
        finalists: the final-fidelity ranking, the pick first.
        objective: the objective name.
        evaluator: the final-fidelity evaluator (the same runs the pick was chosen on).
        seed: the simulator seed of the nominal runs.
        samples: resamples (0 = no band).
        requests: requests each run simulates (reported as the band's fidelity).
        workers: processes for the ``samples × 2`` simulations.
    """
    if samples <= 0 or not finalists:
        return {}
    pick = finalists[0]
    # A finalist whose run came out identical to the pick's (e.g. a max_num_seqs the batch
    # never reaches) is the same serving behaviour, not a rival: name it, band the next.
    same = [e for e in finalists[1:] if _same_run(e, pick)]
    rivals = [pick, *[e for e in finalists[1:] if not _same_run(e, pick)][:1]]
    ss = np.random.SeedSequence([seed, 4242])
    jobs = []
    for i, child in enumerate(ss.spawn(samples)):
        base = resample_acceptance(evaluator.base, np.random.default_rng(child))
        jobs += [Job(e.config, seed=seed + 1 + i, base=base) for e in rivals]
    runs = evaluator.evaluate_jobs(jobs, workers)
    vals = np.asarray([r.value(objective) for r in runs]).reshape(samples, len(rivals))
    nominal = rivals[0].value(objective)  # the pick's own final-fidelity run
    rel = vals[:, 0] / nominal if nominal else np.full(samples, np.nan)
    out: dict[str, Any] = {
        "samples": samples,
        "fidelity_requests": requests,
        "how": "other seeds + acceptance shifted N(0, 0.15^2) in logit space per drafter",
        "value_min": float(vals[:, 0].min()),
        "value_median": float(np.median(vals[:, 0])),
        "value_max": float(vals[:, 0].max()),
        "relative_min": float(np.nanmin(rel)),
        "relative_max": float(np.nanmax(rel)),
    }
    if len(rivals) > 1:
        # Compared as the pick was chosen: meeting the SLOs first, then the objective, then
        # the smallest violation; equal keys are ties, not losses.
        keys = [r.sort_key(objective) for r in runs]
        pairs = [(keys[i], keys[i + 1]) for i in range(0, len(keys), 2)]
        tie = np.array([_close(a, b) for a, b in pairs])
        ahead = np.array([a < b for a, b in pairs]) & ~tie
        out["runner_up"] = rivals[1].config.label()
        out["wins_vs_runner_up"] = float(ahead.mean())
        out["ties_vs_runner_up"] = float(tie.mean())
    if same:
        out["identical_to_pick"] = [e.config.label() for e in same]
    return out


def _close(a: tuple[int, float], b: tuple[int, float]) -> bool:
    return a[0] == b[0] and bool(np.isclose(a[1], b[1], rtol=1e-9, atol=0.0))


def _same_run(a: Evaluation, b: Evaluation) -> bool:
    """Two configurations whose simulations came out the same, request for request."""
    keys = ("throughput_tok_per_s", "ttft_s", "tpot_s", "e2e_s", "decode_steps", "iterations")
    return all(a.metrics.get(k) == b.metrics.get(k) for k in keys)
