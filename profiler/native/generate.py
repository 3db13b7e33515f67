"""Run a list of prompts to completion on the live engine (continuous batching).

The simplest driver of :class:`~.engine.SpecEngine`: admit prompts while slots are free,
step until every sequence is done, collect outputs and counters. ``spectune generate``, the
acceptance profiler's checks and the benchmarks use it; :mod:`.serve` is the driver that
follows a workload's arrival times instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from spectune.simulator.errors import InputError

from .engine import SpecEngine
from .spec_stats import SpecStats, StepResult


@dataclass(frozen=True)
class GenerateResult:
    """Outputs of :func:`generate`.

    Attributes:
        outputs: generated token ids per prompt (prompt order), prompt excluded.
        stats: counters and times of this run's steps.
        wall_s: wall time of the run.
        steps: every step's result, in order.
    """

    outputs: list[list[int]]
    stats: SpecStats
    wall_s: float
    steps: list[StepResult] = field(repr=False)

    @property
    def generated_tokens(self) -> int:
        return sum(len(o) for o in self.outputs)

    @property
    def tok_per_s(self) -> float:
        return self.generated_tokens / self.wall_s if self.wall_s > 0 else float("nan")


def generate(
    engine: SpecEngine, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int]
) -> GenerateResult:
    """Generate for every prompt with ``engine``, admitting new ones as slots free up.

    Args:
        engine: an idle engine (its counters keep counting across calls).
        prompts: token ids per prompt.
        max_new_tokens: one limit for all, or one per prompt.

    Returns:
        Outputs in prompt order, counters and wall time.
    """
    limits = (
        [int(max_new_tokens)] * len(prompts)
        if isinstance(max_new_tokens, int)
        else [int(m) for m in max_new_tokens]
    )
    if len(limits) != len(prompts):
        raise InputError(f"{len(limits)} max_new_tokens for {len(prompts)} prompts")
    outputs: list[list[int]] = [[] for _ in prompts]
    steps: list[StepResult] = []
    stats = SpecStats(num_positions=engine.query_width - 1)
    queue = list(range(len(prompts)))
    t0 = time.perf_counter()
    while queue or engine.has_unfinished():
        while queue and engine.num_running + engine.num_waiting < engine.max_batch:
            i = queue.pop(0)
            engine.add(("generate", i), prompts[i], limits[i])
        step = engine.step()
        steps.append(step)
        stats.update(step)
        for rid, toks in step.new_tokens.items():
            outputs[rid[1]].extend(toks)
    wall_s = time.perf_counter() - t0
    return GenerateResult(outputs, stats, wall_s, steps)
