"""``recommend --emit ENGINE [--engine-version V]``: the config to paste, for one engine
version, always one that was simulated.

If the version cannot run the pick (a method it lacks, a static tree it cannot express),
the report says why and emits the best configuration it can run: among the
final-fidelity runs, or the best such trial re-simulated at final fidelity (plain
decoding always qualifies).

What is emitted is what was simulated: the pick's k (or tree) and its speculation policy
(a batch-size schedule, a cutoff, SGLang's adaptive mode) with the very bands the DES
ran. ``--emit-schedule`` emits the table's batch-size schedule row instead of the pick
(simulated like every row; the version must have a schedule syntax for the drafter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spectune.tuner.export import (
    Capabilities,
    EngineConfig,
    SpecChoice,
    Unsupported,
    emit,
)
from spectune.tuner.objective import Evaluation, rank
from spectune.tuner.search import SearchOutcome


@dataclass
class Emitted:
    """What ``--emit`` prints: the engine config, the config it carries, and why it is not
    the pick when it is not."""

    config: EngineConfig
    evaluation: Evaluation  # the table row that was simulated (the same object)
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "emitted_config": self.evaluation.config.label(),
            "emitted_policy": self.evaluation.metrics.get("config", {}).get("policy"),
            "messages": self.messages,
        }


def spec_choice(rs: Any, out: SearchOutcome, ev: Evaluation) -> SpecChoice:
    """The simulated configuration ``ev`` with the scenario's models and serving caps."""
    c = ev.config
    sv = rs.scenario.serving
    common = {
        "max_num_seqs": c.max_num_seqs or sv.max_num_seqs,
        "max_num_batched_tokens": sv.max_batched_tokens,
        "target_model": rs.scenario.target.model,
    }
    if not c.speculates:
        return SpecChoice(**common)
    d = rs.drafters[c.drafter].spec
    tree = out.evaluator.tree(c)
    policy = out.evaluator.policy(c) or {}
    bands = tuple(tuple(b) for b in policy.get("bands", ())) or None
    return SpecChoice(
        drafter=c.drafter,
        kind=d.kind,
        variant=d.variant,
        num_spec_tokens=tree.max_depth if tree is not None else c.num_spec_tokens,
        tree_paths=tuple(tuple(p) for p in tree.paths()) if tree is not None else None,
        draft_model=d.model,
        self_layers=d.self_layers,
        policy=c.policy,
        bands=bands,  # type: ignore[arg-type]
        **common,
    )


def schedule_row(out: SearchOutcome) -> Evaluation | None:
    """The table's batch-size schedule row (simulated), or the pick when it is one."""
    if out.best.config.policy == "schedule":
        return out.best
    return next((e for e in out.defaults.values() if e.config.policy == "schedule"), None)


def engine_output(
    rs: Any, out: SearchOutcome, caps: Capabilities, *, with_schedule: bool = False
) -> Emitted:
    """The config to paste for ``caps`` (see the module docstring)."""
    messages: list[str] = []
    ev = out.best
    if with_schedule:
        row = schedule_row(out)
        if row is None:
            messages.append("no batch-size schedule row to emit: the pick is emitted")
        else:
            ev = row
    reason = caps.why_not(spec_choice(rs, out, ev))
    if reason is not None:
        ev = _best_runnable(rs, out, caps)
        obj = "latency" if out.objective == "pareto" else out.objective
        messages.append(
            f"{reason}. The best configuration {caps.label} runs is {ev.config.label()} "
            f"({obj} {ev.value(obj):.4g} vs the pick's {out.best.value(obj):.4g}, both "
            f"simulated on {out.final_requests:,} requests): it is emitted below"
        )
    choice = spec_choice(rs, out, ev)
    config, left_out = emit(caps, choice)
    messages += left_out
    return Emitted(config, ev, messages)


def _best_runnable(rs: Any, out: SearchOutcome, caps: Capabilities) -> Evaluation:
    """The best final-fidelity run ``caps`` can express, adding the best such trial of the
    search re-simulated at final fidelity when it was not among them."""

    def runs(e: Evaluation) -> bool:
        return caps.why_not(spec_choice(rs, out, e)) is None

    pool = [e for e in out.finalists if runs(e)]
    trial = next((e for e in out.searched if runs(e)), None)
    if trial is not None and trial.key not in {e.key for e in pool}:
        pool.append(out.evaluator.evaluate(trial.config))
    obj = "latency" if out.objective == "pareto" else out.objective
    return rank(pool, obj)[0]


__all__ = ["Emitted", "Unsupported", "engine_output", "schedule_row", "spec_choice"]
