"""Engine host overhead: the per-iteration time that forward-latency profiles do not cover.

A live iteration is more than its forwards: the engine samples and verifies, commits the
cache, appends tokens per sequence, and the serving loop admits and books requests. On a
CPU with tiny models that host work is a large share of a step, and it grows with the
number of sequences. This module measures it as a profile quantity of its own, from the
engine's own per-step timers on *calibration* runs (their own seed and workload, never the
runs a validation is scored on), and fits the simulator's overhead terms:

- engine: ``serving.step_overhead_ms + serving.step_overhead_per_seq_ms × B`` from plain
  decoding steps, where the host part of a step is ``total − verify − prefill`` (engine
  timers) plus the driver's time between steps;
- per drafter: ``step_overhead_ms + (step_overhead_per_seq_ms + step_overhead_per_pass_seq_ms
  × passes + step_overhead_per_node_seq_ms × nodes) × B`` (DrafterSpec fields; passes =
  the drafter's forwards or n-gram lookups per sequence per step,
  :func:`~spectune.simulator.stepcost.draft_passes`; nodes = drafted tokens) from its
  speculative steps at several draft shapes, as the host part of the step minus the engine's fitted
  overhead, plus the drafting time the drafter's forwards do not explain
  (``draft_ms`` − the drafter's profiled passes; all of ``draft_ms`` for n-grams, which
  run no model), plus the verify forward's excess over the target's profile (a verify
  right after drafting runs on caches the drafter's passes have cooled, unlike the
  profile's back-to-back forwards).

Each fit is a least-squares fit over the per-(batch size, draft shape) medians of decode-only
steps (steps with a prefill are excluded: their host work is booked with the prefill),
with every coefficient kept >= 0. Units: milliseconds. An n-gram drafter's lookups are
all in its fitted terms, so its ``draft_ms_per_token`` is set to 0 when they apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectune.profiler.live import StepLog
from spectune.profiler.measure.overhead_fit import LineFit, fit_line, fit_shapes
from spectune.simulator.api import tree_level_queries
from spectune.simulator.latency import LatencyModel
from spectune.simulator.scenario import ResolvedDrafter, ResolvedScenario
from spectune.simulator.stepcost import draft_passes
from spectune.simulator.tree import Tree


@dataclass
class OverheadProfile:
    """Fitted host overheads: the engine's and each drafter's extra."""

    engine: LineFit
    drafters: dict[str, LineFit] = field(default_factory=dict)
    how: str = ""
    # Not fitted, reported: median of live forward time / the latency profile's figure.
    diagnostics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def line(f: LineFit) -> dict[str, Any]:
            return {
                "step_overhead_ms": round(f.base_ms, 4),
                "step_overhead_per_seq_ms": round(f.per_seq_ms, 4),
                "step_overhead_per_pass_seq_ms": round(f.per_pass_seq_ms, 4),
                "step_overhead_per_node_seq_ms": round(f.per_node_seq_ms, 4),
                "steps": f.steps,
                "rmse_ms": round(f.rmse_ms, 4),
            }

        return {
            "engine": line(self.engine),
            "drafters": {n: line(f) for n, f in self.drafters.items()},
            "how": self.how,
            "diagnostics": {k: round(v, 4) for k, v in self.diagnostics.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OverheadProfile:
        def line(x: dict[str, Any]) -> LineFit:
            return LineFit(
                x["step_overhead_ms"],
                x["step_overhead_per_seq_ms"],
                x["steps"],
                x["rmse_ms"],
                x.get("step_overhead_per_pass_seq_ms", 0.0),
                x.get("step_overhead_per_node_seq_ms", 0.0),
            )

        return cls(
            line(d["engine"]),
            {n: line(x) for n, x in d["drafters"].items()},
            d.get("how", ""),
            dict(d.get("diagnostics", {})),
        )

    def apply(self, rs: ResolvedScenario) -> ResolvedScenario:
        """``rs`` with these overheads in ``serving`` and in each fitted drafter's spec."""
        out = rs.with_serving(
            step_overhead_ms=self.engine.base_ms,
            step_overhead_per_seq_ms=self.engine.per_seq_ms,
        )
        fields: dict[str, dict[str, Any]] = {}
        for name, f in self.drafters.items():
            fields[name] = {
                "step_overhead_ms": f.base_ms,
                "step_overhead_per_seq_ms": f.per_seq_ms,
                "step_overhead_per_pass_seq_ms": f.per_pass_seq_ms,
                "step_overhead_per_node_seq_ms": f.per_node_seq_ms,
            }
            if rs.drafters[name].spec.kind == "ngram":  # lookups are in the fitted terms
                fields[name]["draft_ms_per_token"] = 0.0
        return with_drafter_fields(out, fields)


def with_drafter_fields(
    rs: ResolvedScenario, fields: dict[str, dict[str, Any]]
) -> ResolvedScenario:
    """``rs`` with drafter spec fields replaced, per drafter name (validated)."""
    drafters = dict(rs.drafters)
    for name, upd in fields.items():
        rd = drafters[name]
        spec = type(rd.spec).model_validate({**rd.spec.model_dump(), **upd})
        drafters[name] = ResolvedDrafter(spec=spec, acceptance=rd.acceptance, latency=rd.latency)
    sc = rs.scenario.model_copy(
        update={"drafters": [drafters[d.name].spec for d in rs.scenario.drafters]}
    )
    return ResolvedScenario(
        scenario=sc,
        source=rs.source,
        target=rs.target,
        drafters=drafters,
        trace_path=rs.trace_path,
        kv_cache_tokens=rs.kv_cache_tokens,
    )


def live_engine_model(rs: ResolvedScenario) -> ResolvedScenario:
    """``rs`` with the scheduling rules of spectune's live engine: every prompt prefilled
    as its own forward, attention over the batch's longest context (one padded cache), and
    model drafters re-feeding a tree's upper levels each pass."""
    out = rs.with_serving(prefill="separate", attention_context="max")
    return with_drafter_fields(
        out, {n: {"tree_draft": "refeed"} for n, d in rs.drafters.items() if d.spec.kind != "ngram"}
    )


def decode_steps(log: StepLog) -> dict[str, np.ndarray]:
    """The decode-only steps (a decode batch, no prefill) of a step log."""
    a = log.arrays()
    sel = (a["batch"] > 0) & (a["prefills"] == 0)
    return {k: v[sel] for k, v in a.items()}


def host_ms(s: dict[str, np.ndarray]) -> np.ndarray:
    """Host part of each step: engine time outside draft and verify, plus driver time."""
    return s["total_ms"] - s["draft_ms"] - s["verify_ms"] - s["prefill_ms"] + s["driver_ms"]


def draft_forward_ms(
    rd: ResolvedDrafter,
    rs: ResolvedScenario,
    s: dict[str, np.ndarray],
    nodes_levels: tuple[int, ...],
) -> np.ndarray:
    """What the drafter's profiled passes explain of each step's ``draft_ms``."""
    kind = rd.spec.kind
    if kind == "ngram":
        return np.zeros_like(s["draft_ms"])
    if kind == "self":
        model = LatencyModel.from_profile(rs.target)
        scale = (rd.spec.self_layers or 0) / rs.target.model.layers
    else:
        assert rd.latency is not None
        model = LatencyModel.from_profile(rd.latency)
        scale = 1.0
    out = np.zeros_like(s["draft_ms"])
    contexts = s[context_column(rs)].tolist()
    for i, (b, ctx) in enumerate(zip(s["batch"].tolist(), contexts, strict=True)):
        offset = 0
        for q in nodes_levels:
            out[i] += model.forward_ms(int(b), int(q), ctx + offset)
            offset += q
    return scale * out


def fit_overheads(
    plain: list[StepLog],
    spec: dict[str, list[tuple[StepLog, Tree]]],
    rs: ResolvedScenario,
    how: str = "",
) -> OverheadProfile:
    """Fit the engine's and each drafter's overhead (module docstring).

    Args:
        plain: step logs of plain-decoding calibration runs.
        spec: per drafter name, step logs of its calibration runs with the draft shape each
            ran (``Tree.chain(k)`` for a chain).
        rs: the scenario as the live engine runs it (drafters' kinds, latency profiles and
            ``tree_draft``: :func:`live_engine_model`).
        how: provenance text.
    """
    target = LatencyModel.from_profile(rs.target)
    steps = [decode_steps(s) for s in plain]
    batch = np.concatenate([s["batch"] for s in steps])
    engine = fit_line(batch, np.concatenate([host_ms(s) for s in steps]))
    column = context_column(rs)
    verify_ratio = [verify_ratios(target, s, column) for s in steps]
    diag: dict[str, float] = {}
    drafters: dict[str, LineFit] = {}
    for name, runs in spec.items():
        rd = rs.drafters[name]
        bs, ps, ns, extra, dratio = [], [], [], [], []
        for log, tree in runs:
            levels = tree_level_queries(tree.width_per_depth(), rd.spec.tree_draft)
            s = decode_steps(log)
            explained = draft_forward_ms(rd, rs, s, levels)
            vr = verify_ratios(target, s, column)
            # Verify right after drafting runs colder than the profile's back-to-back
            # forwards (the drafter's passes evict the target's weights from the caches):
            # that excess is part of what speculating with this drafter costs per step.
            verify_excess = s["verify_ms"] * (1.0 - 1.0 / np.maximum(vr, 1e-9))
            extra.append(
                host_ms(s) - engine.at(s["batch"]) + s["draft_ms"] - explained + verify_excess
            )
            bs.append(s["batch"])
            ps.append(np.full(len(s["batch"]), draft_passes(rd.spec.kind, tree)))
            ns.append(np.full(len(s["batch"]), tree.num_nodes))
            verify_ratio.append(vr)
            if rd.spec.kind != "ngram":
                dratio.append(s["draft_ms"] / np.maximum(explained, 1e-9))
        drafters[name] = fit_shapes(*(np.concatenate(x) for x in (bs, ps, ns, extra)))
        if dratio:
            diag[f"draft_live_over_profile:{name}"] = float(np.median(np.concatenate(dratio)))
    diag["verify_live_over_profile"] = float(np.median(np.concatenate(verify_ratio)))
    return OverheadProfile(engine, drafters, how, diag)


def context_column(rs: ResolvedScenario) -> str:
    """The step log's context that prices a step under ``rs``'s attention_context."""
    return "context_max" if rs.scenario.serving.attention_context == "max" else "context"


def verify_ratios(
    target: LatencyModel, s: dict[str, np.ndarray], column: str = "context"
) -> np.ndarray:
    """Live verify (or decode) forward time / the target profile's figure, per step."""
    pred = np.array(
        [
            target.forward_ms(int(b), int(q), c)
            for b, q, c in zip(s["batch"], s["query"], s[column], strict=True)
        ]
    )
    return s["verify_ms"] / np.maximum(pred, 1e-9)
