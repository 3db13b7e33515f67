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

from spectune.simulator.scenario import ResolvedScenario, resolve_scenario
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
