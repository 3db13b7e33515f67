"""``recommend --emit ENGINE [--engine-version V]``: the config to paste, for one engine
version, always one that was simulated.

If the version cannot run the pick (a method it lacks, a static tree it cannot express),
the report says why and emits the best configuration it can run: among the
final-fidelity runs, or the best such trial re-simulated at final fidelity (plain
decoding always qualifies).

What is emitted is what was simulated: one k (or one tree) at every batch size. The
batch-size schedule ``recommend`` prints is priced by the step-cost model, not simulated
by the DES; ``--emit-schedule`` writes it too, in the version's syntax where it has one,
and says so.
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
from spectune.tuner.schedule import Schedule, StepCosts, best_k_schedule
from spectune.tuner.search import SearchOutcome
from spectune.tuner.space import SearchDims


@dataclass
class Emitted:
    """What ``--emit`` prints: the engine config, the config it carries, and why it is not
    the pick when it is not."""

    config: EngineConfig
    evaluation: Evaluation
    schedule: Schedule | None
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.config.to_dict(),
            "emitted_config": self.evaluation.config.label(),
            "schedule": self.schedule.to_dict() if self.schedule else None,
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
    return SpecChoice(
        drafter=c.drafter,
        kind=d.kind,
        variant=d.variant,
        num_spec_tokens=tree.max_depth if tree is not None else c.num_spec_tokens,
        tree_paths=tuple(tuple(p) for p in tree.paths()) if tree is not None else None,
        draft_model=d.model,
        self_layers=d.self_layers,
        **common,
    )


def schedule_for(rs: Any, ev: Evaluation) -> Schedule | None:
    """Best k per batch band for a chain config (None for trees and plain decoding)."""
    c = ev.config
    if not c.speculates or c.is_tree:
        return None
    ks = SearchDims.from_scenario(rs).chain_ks or (c.num_spec_tokens,)
    cap = c.max_num_seqs or rs.scenario.serving.max_num_seqs
    return best_k_schedule(StepCosts.from_scenario(rs), c.drafter, ks, cap)


def engine_output(
    rs: Any, out: SearchOutcome, caps: Capabilities, *, with_schedule: bool = False
) -> Emitted:
    """The config to paste for ``caps`` (see the module docstring)."""
    messages: list[str] = []
    ev = out.best
    reason = caps.why_not(spec_choice(rs, out, ev))
    if reason is not None:
        ev = _best_runnable(rs, out, caps)
        obj = "latency" if out.objective == "pareto" else out.objective
        messages.append(
            f"{reason}. The best configuration {caps.label} runs is {ev.config.label()} "
            f"({obj} {ev.value(obj):.4g} vs the pick's {out.best.value(obj):.4g}, both "
            f"simulated on {out.final_requests:,} requests): it is emitted below"
        )
    schedule = schedule_for(rs, ev) if with_schedule else None
    choice = spec_choice(rs, out, ev)
    config, left_out = emit(caps, choice, schedule.bands if schedule else None)
    messages += left_out
    if schedule is not None and not left_out:
        messages.append(
            "the batch-size schedule is priced by the step-cost model at fixed batch sizes, "
            f"not simulated: the DES ran {ev.config.label()} at every batch size"
        )
    return Emitted(config, ev, schedule, messages)


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


__all__ = ["Emitted", "Unsupported", "engine_output", "schedule_for", "spec_choice"]
