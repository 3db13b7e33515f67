"""Calibration runs of a vLLM validation: what the simulator takes from runs that are never
scored.

Every engine session (one vLLM configuration) first serves a *calibration run*: the
offline workload with seed + 1 (other prompts than the scored runs, same length
distributions), at the session's ``max_num_seqs``. The first one per configuration is kept
(``<report>/calibration-vllm/<config key>.json``); later sessions of the configuration
serve it again untimed as a warm-up. From the kept runs:

- **acceptance per configuration** (:func:`group_acceptance`): vLLM's per-request
  ``per_step_accepted`` / ``per_step_drafted`` at the configuration's k and window,
  pooled over requests into the conditional a_i over the steps vLLM visited
  (:func:`~spectune.profiler.measure.engine_acceptance.conditional_rates`); decode steps
  where the n-gram found no match (vLLM records no step for them) are counted as steps
  that accepted nothing at position 1, the simulator's rule until profiles carry a match
  probability (docs/acceptance.md). No per-request spread is drawn on top: the pooled
  vector already weighs slow requests by their extra steps.
- **the drafter's own cost** (:func:`drafter_costs`), from the probe's per-step timings:
  an n-gram drafter's ``draft_ms`` (the lookups), a draft model's ``draft_ms`` minus its
  model calls (input preparation and sampling between passes; the passes themselves are
  priced by the drafter's latency profile), each fitted as ``step + (per_seq + per_pass x
  passes + per_node x drafts) x batch`` over decode-only steps (:mod:`spectune.profiler.
  measure.overhead_fit`), into the drafter's ``step_overhead_*`` fields.

Not fitted, reported (:func:`diagnostics`): the live forward time over the latency
profile's (target and drafter), and the measured step period over the simulator's price
of the same step, on the calibration runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from spectune.profiler.engines.vllm_server import undrafted_steps
from spectune.profiler.live import LiveResult, StepLog
from spectune.profiler.measure.engine_acceptance import conditional_rates, request_arrays
from spectune.profiler.measure.overhead_fit import LineFit, fit_shapes
from spectune.simulator.latency import LatencyModel
from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario
from spectune.simulator.schema import AcceptanceSpec

from .overhead import with_drafter_fields

FOLDER = "calibration-vllm"


class CalibrationStore:
    """Kept calibration runs, one JSON per engine configuration (module docstring)."""

    def __init__(self, report_dir: Path, fingerprint: str):
        self.folder = report_dir / FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = self.folder / "key.json"
        if not stamp.is_file() or json.loads(stamp.read_text()).get("key") != fingerprint:
            for old in self.folder.glob("*.json"):
                old.unlink()
            stamp.write_text(json.dumps({"key": fingerprint}))

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, drafter: str, k: int, mns: int, res: LiveResult) -> None:
        data = {
            "drafter": drafter,
            "k": k,
            "max_num_seqs": mns,
            "requests": res.requests or [],
            "output_tokens": [len(o) for o in res.outputs],
            "steps": {n: np.asarray(v).tolist() for n, v in res.steps.arrays().items()},
            "draft_calls": (res.step_extra or {}).get("draft_calls", []),
            "metrics": {
                "throughput_tok_per_s": res.metrics["throughput_tok_per_s"],
                "mean_accepted_len": res.metrics["mean_accepted_len"],
            },
        }
        tmp = self.path(key).with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path(key))

    def load_all(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in sorted(self.folder.glob("*.json")):
            if p.name != "key.json":
                out[p.stem] = json.loads(p.read_text())
        return out


def step_log(cal: dict[str, Any]) -> StepLog:
    return StepLog(**{k: list(v) for k, v in cal["steps"].items()})


def group_acceptance(cal: dict[str, Any]) -> AcceptanceSpec | None:
    """The configuration's acceptance from its calibration run (module docstring)."""
    k = int(cal["k"])
    if k == 0 or not cal["requests"]:
        return None
    accs, drs = [], []
    for (acc, dr), req in zip(request_arrays(cal["requests"]), cal["requests"], strict=True):
        misses = undrafted_steps(req)
        accs += [acc, np.zeros(misses, dtype=np.int64)]
        drs += [dr, np.ones(misses, dtype=np.int64)]
    acc = np.concatenate(accs)
    dr = np.concatenate(drs)
    return AcceptanceSpec(per_position=conditional_rates(acc, dr, k), spread=0.0)


def _decode_only(cal: dict[str, Any]) -> np.ndarray:
    s = cal["steps"]
    return (np.asarray(s["batch"]) > 0) & (np.asarray(s["prefills"]) == 0)


def drafter_costs(cals: list[dict[str, Any]], kind: str) -> LineFit | None:
    """The drafter's own per-step cost over its configurations' calibration runs."""
    bs, ps, ns, ms = [], [], [], []
    for cal in cals:
        sel = _decode_only(cal)
        if not sel.any():
            continue
        s = cal["steps"]
        draft = np.asarray(s["draft_ms"], dtype=float)
        if kind == "draft_model":
            calls = np.array([sum(ms for _n, ms in c) for c in cal["draft_calls"]], dtype=float)
            if calls.size != draft.size:
                continue
            draft = draft - calls
        k = int(cal["k"])
        b = np.asarray(s["batch"], dtype=float)[sel]
        bs.append(b)
        ps.append(np.full(b.size, k if kind == "draft_model" else 1, dtype=float))
        ns.append(np.full(b.size, k, dtype=float))
        ms.append(draft[sel])
    if not bs:
        return None
    return fit_shapes(*(np.concatenate(x) for x in (bs, ps, ns, ms)))


def calibrated(
    rs: ResolvedScenario, cals: dict[str, dict[str, Any]]
) -> tuple[ResolvedScenario, dict[str, LineFit]]:
    """``rs`` with every drafter's cost fitted on its calibration runs."""
    fits: dict[str, LineFit] = {}
    fields: dict[str, dict[str, Any]] = {}
    for name, rd in rs.drafters.items():
        mine = [c for c in cals.values() if c["drafter"] == name]
        fit = drafter_costs(mine, rd.spec.kind)
        if fit is None:
            continue
        fits[name] = fit
        fields[name] = {
            "step_overhead_ms": fit.base_ms,
            "step_overhead_per_seq_ms": fit.per_seq_ms,
            "step_overhead_per_pass_seq_ms": fit.per_pass_seq_ms,
            "step_overhead_per_node_seq_ms": fit.per_node_seq_ms,
            "draft_ms_per_token": 0.0,
        }
    return with_drafter_fields(rs, fields), fits


def with_acceptance(rs: ResolvedScenario, drafter: str, spec: AcceptanceSpec) -> ResolvedScenario:
    """``rs`` with ``drafter``'s acceptance replaced."""
    rd = rs.drafters[drafter]
    drafters = {**rs.drafters, drafter: ResolvedDrafter(rd.spec, spec, rd.latency)}
    return replace(rs, drafters=drafters)


def diagnostics(rs: ResolvedScenario, cals: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Live forward time over the profiles' figures (target; draft model passes), medians
    over the calibration runs' decode-only steps (1.0 = the profile is exact)."""
    target = LatencyModel.from_profile(rs.target)
    verify, draft = [], []
    for cal in cals.values():
        s = cal["steps"]
        sel = np.flatnonzero(_decode_only(cal))
        for i in sel.tolist():
            pred = target.forward_ms(int(s["batch"][i]), int(s["query"][i]), float(s["context"][i]))
            verify.append(s["verify_ms"][i] / max(pred, 1e-9))
        rd = rs.drafters.get(cal["drafter"])
        if rd is None or rd.latency is None or not cal["draft_calls"]:
            continue
        model = LatencyModel.from_profile(rd.latency)
        for i in sel.tolist():
            b = int(s["batch"][i])
            calls = cal["draft_calls"][i]
            if not calls:
                continue
            pred = sum(
                model.forward_ms(b, max(1, round(n / b)), float(s["context"][i]))
                for n, _ms in calls
            )
            draft.append(sum(ms for _n, ms in calls) / max(pred, 1e-9))
    out = {}
    if verify:
        out["verify_live_over_profile"] = float(np.median(verify))
    if draft:
        out["draft_live_over_profile"] = float(np.median(draft))
    return out
