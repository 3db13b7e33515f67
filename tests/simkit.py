"""Helpers for the simulator's engine tests: small resolved scenarios built in memory.

The target (and drafter) latency profiles come from tests/conftest.py's synthetic grid;
exact-time tests replace them with ``ConstantLatency`` through ``simulate(...,
target_latency=..., draft_latency=...)``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from conftest import latency_profile_dict, write_yaml
from hypothesis import strategies as st

from spectune.simulator.latency import ConstantLatency
from spectune.simulator.scenario import ResolvedScenario, resolve_scenario
from spectune.simulator.scheduler import Scheduler
from spectune.simulator.schema import Scenario, validate_model


def write_profiles(folder: Path) -> Path:
    """Write target.yaml and drafter.yaml (synthetic grids) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_yaml(folder / "target.yaml", latency_profile_dict())
    drafter = latency_profile_dict(base_ms=1.0, per_token_ms=0.002)
    drafter["model"].update(name="test-1b", params=1_000_000_000, layers=16, hidden=2048)
    write_yaml(folder / "drafter.yaml", drafter)
    return folder


def base_scenario() -> dict[str, Any]:
    """Two requests at t = 0, plain decoding, roomy limits."""
    return {
        "schema": "spectune/scenario/v1",
        "target": {"latency_profile": "target.yaml"},
        "drafters": [
            {
                "name": "small",
                "kind": "draft_model",
                "latency_profile": "drafter.yaml",
                "acceptance": {"per_position": [1.0], "ranked": [1.0]},
            },
            {"name": "ngram", "kind": "ngram", "acceptance": {"per_position": [1.0]}},
            {
                "name": "skip",
                "kind": "self",
                "self_layers": 8,
                "acceptance": {"per_position": [1.0]},
            },
        ],
        "workload": {
            "mode": "offline",
            "num_requests": 2,
            "prompt_tokens": {"dist": "constant", "value": 10},
            "output_tokens": {"dist": "constant", "value": 3},
        },
        "serving": {"max_num_seqs": 8, "max_batched_tokens": 1000, "kv_cache_tokens": 100000},
        "spec": {"drafter": "none"},
    }


def deep_update(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with ``changes`` merged in (dicts merge, anything else replaces)."""
    out = copy.deepcopy(data)
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def make_rs(folder: Path, changes: dict[str, Any] | None = None) -> ResolvedScenario:
    """Resolve ``base_scenario()`` updated with ``changes``; profiles must be in ``folder``."""
    data = deep_update(base_scenario(), changes or {})
    sc = validate_model(Scenario, data, "test scenario")
    return resolve_scenario(sc, base_dir=folder, source="test scenario")


def drafter_acceptance(name: str, per_position: list[float], **extra: Any) -> dict[str, Any]:
    """``changes`` that set one drafter's inline acceptance (index by name in base_scenario)."""
    drafters = copy.deepcopy(base_scenario()["drafters"])
    for d in drafters:
        if d["name"] == name:
            d["acceptance"] = {"per_position": per_position, **extra}
    return {"drafters": drafters}


class CheckingScheduler(Scheduler):
    """Recomputes KV use from scratch after every plan() and checks the limits."""

    def plan(self, now: float, log: list | None = None) -> list[tuple[int, int, int]]:
        chunks = super().plan(now, log)
        assert len(self.running) <= self.max_num_seqs
        if self.recompute:
            kv = sum(self.pf_len[r] for r in self.prefilling) + sum(
                self.prompt_l[r] + int(self.gen[r]) + self.nodes for r in self.decoding
            )
        else:
            kv = sum(self.prompt_l[r] + self.output_l[r] + self.reserve_nodes for r in self.running)
        assert kv == self.kv_used() <= self.capacity
        dec_tokens = len(self.decoding) * self.query
        assert sum(c for _, c, _ in chunks) <= max(0, self.max_batched_tokens - dec_tokens)
        return chunks


def random_changes(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 10))
    prompt = draw(st.integers(1, 40))
    out_hi = draw(st.integers(1, 30))
    k = draw(st.integers(0, 4))
    mode = draw(st.sampled_from(["offline", "open", "closed"]))
    workload: dict[str, Any] = {
        "mode": mode,
        "num_requests": n,
        "prompt_tokens": {"dist": "uniform", "low": 1, "high": prompt},
        "output_tokens": {"dist": "uniform", "low": 1, "high": out_hi},
    }
    if mode == "open":
        workload["arrival"] = {"process": "poisson", "rate_per_s": draw(st.sampled_from([5, 50]))}
    if mode == "closed":
        workload["concurrency"] = draw(st.integers(1, 4))
    acc = draw(st.lists(st.sampled_from([0.0, 0.3, 0.8, 1.0]), min_size=1, max_size=4))
    drafter = draw(st.sampled_from(["none", "small", "ngram", "skip"]))
    spec: dict[str, Any] = {"drafter": drafter, "num_spec_tokens": k}
    if drafter != "none" and draw(st.booleans()):
        spec["tree"] = draw(
            st.sampled_from([{"paths": [[0], [1], [0, 0]]}, {"budget": 5, "depth": 3}])
        )
        k = 5  # the largest tree above: KV room below is sized for it
    ranked = draw(st.lists(st.sampled_from([0.0, 0.4, 0.9, 1.0]), min_size=1, max_size=3))
    return {
        "workload": workload,
        "serving": {
            "max_num_seqs": draw(st.integers(1, 4)),
            "max_batched_tokens": draw(st.integers(8, 64)),
            "kv_cache_tokens": prompt + out_hi + k + draw(st.integers(0, 60)),
            "preemption": draw(st.sampled_from(["recompute", "queue"])),
            "attention_context": draw(st.sampled_from(["mean", "max"])),
        },
        "spec": spec,
        "seed": draw(st.integers(0, 3)),
        **drafter_acceptance(
            "ngram" if drafter == "none" else drafter,
            acc,
            spread=draw(st.sampled_from([0.0, 0.2])),
            ranked=ranked,
        ),
    }


def stable(m: dict) -> dict:
    # Wall time, and how many latency calls the engine's pricing made (an implementation
    # detail of event skipping), are not results.
    skip = ("wall_s", "events_per_s", "latency_extrapolated_calls")
    return {k: v for k, v in m.items() if k not in skip}


TARGET_SMALL = ConstantLatency(2.0, 0.1, 0.001)
DRAFT_SMALL = ConstantLatency(0.5, 0.02)


def planned_and_stepped(rs: ResolvedScenario, monkeypatch: Any) -> tuple[Any, Any]:
    """(the run as planned, the same run one iteration per planned run through the
    checking scheduler): every iteration passes through the checks, and the event-skipping
    runs must reproduce it exactly."""
    from spectune.simulator import api, engine

    a = api.simulate(rs, target_latency=TARGET_SMALL, draft_latency=DRAFT_SMALL)
    with monkeypatch.context() as mp:
        mp.setattr(engine, "MAX_RUN_ITERATIONS", 1)
        mp.setattr(api, "Scheduler", CheckingScheduler)
        b = api.simulate(rs, target_latency=TARGET_SMALL, draft_latency=DRAFT_SMALL)
    return a, b
