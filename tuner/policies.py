"""The tuner's speculation policies as the simulator runs them (``spec.policy``).

A chain :class:`~spectune.tuner.space.Config` names a policy (``fixed``, ``schedule``,
``cutoff``, ``sglang_adaptive``, ``goodput``); :func:`policy_spec` turns it into the
scenario's ``spec.policy`` for the engine the config is meant for, so what is simulated is
what :mod:`spectune.tuner.export` writes:

- ``schedule``: the best k per doubling batch band, priced by the step-cost model
  (:func:`~spectune.tuner.schedule.best_k_schedule`, k up to the config's k), then
  simulated as a batch-size schedule (vLLM ``num_speculative_tokens_per_batch_size``,
  TensorRT-LLM ``draft_len_schedule``, SGLang adaptive slots of one candidate each);
- ``cutoff``: k up to batch ``policy_arg``, no speculation above (vLLM bands, TensorRT-LLM
  ``max_concurrency``);
- ``sglang_adaptive``: SGLang's ``--speculative-adaptive`` with its built-in slots,
  starting at k;
- ``goodput``: the goodput rule per step (a reference: no engine runs it for these
  drafters).

Each engine looks the batch size up its own way (vLLM: the requests the last iteration
scheduled; SGLang: the decode batch; TensorRT-LLM: the running requests): the schedule is
simulated with the emitting engine's count (``engine``; vLLM's by default).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from spectune.simulator.scenario import ResolvedScenario

from .export.common import capped_schedule, clean_schedule
from .schedule import Band, StepCosts, best_k_schedule
from .space import Config, SearchDims

COUNTS = {"vllm": "scheduled", "sglang": "decoding", "trtllm": "running", "hf": "scheduled"}


def schedule_bands(
    rs: ResolvedScenario, config: Config, costs: StepCosts | None = None
) -> list[Band]:
    """The ``schedule`` policy's bands for a chain config: the priced best k per doubling
    band among the searched chain lengths up to the config's k (and k itself), each k at
    most the batch-1 k (as every engine's syntax requires; :func:`~.export.common.
    capped_schedule`), neighbours with the same k merged."""
    ks = sorted({k for k in SearchDims.from_scenario(rs).chain_ks if k <= config.num_spec_tokens})
    ks = sorted({*ks, config.num_spec_tokens})
    cap = config.max_num_seqs or rs.scenario.serving.max_num_seqs
    costs = costs or StepCosts.from_scenario(rs)
    bands = clean_schedule(best_k_schedule(costs, config.drafter, ks, cap).bands)
    return capped_schedule(bands)[0]


def cutoff_bands(config: Config, cap: int) -> list[Band]:
    """k up to batch ``policy_arg``, 0 above (one band when the cutoff is at the cap)."""
    b = int(config.policy_arg or cap)
    if b >= cap:
        return [(1, cap, config.num_spec_tokens)]
    return [(1, b, config.num_spec_tokens), (b + 1, cap, 0)]


def policy_spec(
    rs: ResolvedScenario,
    config: Config,
    engine: str | None = None,
    bands: list[Band] | None = None,
) -> dict[str, Any] | None:
    """``spec.policy`` for ``config`` (None for fixed k, trees and plain decoding).

    Args:
        rs: the scenario (serving caps, drafters, search space).
        config: the configuration.
        engine: the engine it is simulated for (the batch-size count; default vLLM's).
        bands: the ``schedule`` bands when already computed.
    """
    c = config.normalized()
    if not c.speculates or c.is_tree or c.policy == "fixed":
        return None
    counts = COUNTS.get(engine or "vllm", "scheduled")
    cap = c.max_num_seqs or rs.scenario.serving.max_num_seqs
    if c.policy == "schedule":
        b = bands if bands is not None else schedule_bands(rs, c)
        return {"kind": "batch_schedule", "bands": [list(x) for x in b], "counts": counts}
    if c.policy == "cutoff":
        b = cutoff_bands(c, cap)
        return {"kind": "batch_schedule", "bands": [list(x) for x in b], "counts": counts}
    if c.policy == "sglang_adaptive":
        return {"kind": "sglang_adaptive"}
    if c.policy == "goodput":
        return {"kind": "goodput"}
    raise ValueError(f"unknown policy {c.policy!r}")


def policy_rows(top: Config, drafter: str | None, default_k: int) -> dict[str, Config]:
    """The comparison table's policy rows, on the search's top chain (its drafter and k;
    else ``drafter`` at ``default_k``): the batch-size schedule, SGLang's
    adaptive default and the goodput rule per step (a reference no engine runs here)."""
    if top.speculates and not top.is_tree:
        base = Config(top.drafter, top.num_spec_tokens, max_num_seqs=top.max_num_seqs)
    elif drafter is not None:
        base = Config(drafter, default_k)
    else:
        return {}
    k = f"{base.drafter} k<={base.num_spec_tokens}"
    rows = {
        f"batch-size schedule ({k})": "schedule",
        f"SGLang adaptive default ({base.drafter}, starts at k={base.num_spec_tokens})": (
            "sglang_adaptive"
        ),
        f"goodput per step ({k}; no engine runs it)": "goodput",
    }
    return {
        label: dataclasses.replace(base, policy=pol)
        for label, pol in rows.items()
        if pol != top.policy or top.is_tree
    }
