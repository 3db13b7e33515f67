"""Shared fixtures: small valid profile and scenario files written to a temp folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def latency_profile_dict(base_ms: float = 5.0, per_token_ms: float = 0.01) -> dict[str, Any]:
    """A small full-grid latency profile: latency = base + per_token * batch * query (+ ctx)."""
    points = []
    for b in (1, 2, 4, 8, 16, 32, 64):
        for q in (1, 2, 4, 8, 16, 64, 256, 1024):
            for c in (128, 1024, 8192):
                ms = base_ms + per_token_ms * b * q + 1e-5 * b * c
                points.append(
                    {
                        "batch": b,
                        "query_tokens": q,
                        "context_tokens": c,
                        "latency_ms": {"min": ms, "p50": ms, "p90": ms, "n": 1},
                    }
                )
    return {
        "schema": "spectune/latency/v1",
        "device": {
            "name": "test-gpu",
            "kind": "gpu",
            "dtype": "bf16",
            "memory_gib": 80,
            "count": 1,
        },
        "model": {
            "name": "test-8b",
            "params": 8_000_000_000,
            "layers": 32,
            "hidden": 4096,
            "heads": 32,
            "kv_heads": 8,
            "vocab": 128256,
        },
        "provenance": {"kind": "roofline", "how": "synthetic test grid"},
        "points": points,
    }


def acceptance_profile_dict() -> dict[str, Any]:
    return {
        "schema": "spectune/acceptance/v1",
        "target": "test-8b",
        "drafter": "test-1b",
        "drafter_kind": "draft_model",
        "dataset": "synthetic",
        "temperature": 0.0,
        "acceptance": {"per_position": [0.8, 0.75, 0.7, 0.65], "ranked": [0.8, 0.3, 0.1]},
        "counts": {
            "num_requests": 10,
            "num_steps": 100,
            "num_draft_tokens": 400,
            "num_accepted_tokens": 250,
        },
    }


def scenario_dict() -> dict[str, Any]:
    return {
        "schema": "spectune/scenario/v1",
        "target": {"latency_profile": "target.yaml"},
        "drafters": [
            {
                "name": "small",
                "kind": "draft_model",
                "latency_profile": "drafter.yaml",
                "acceptance": {"profile": "acc.yaml"},
            },
            {"name": "ngram", "kind": "ngram", "acceptance": {"per_position": [0.5, 0.4]}},
        ],
        "workload": {
            "mode": "open",
            "arrival": {"process": "poisson", "rate_per_s": 2.0},
            "num_requests": 20,
            "prompt_tokens": {"dist": "constant", "value": 100},
            "output_tokens": {"dist": "uniform", "low": 10, "high": 50},
        },
        "serving": {"max_num_seqs": 8, "max_batched_tokens": 2048, "kv_cache_tokens": 20000},
        "slo": {"ttft_s": 2.0, "tpot_s": 0.1},
        "spec": {"drafter": "small", "num_spec_tokens": 3},
    }


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    """A folder with scenario.yaml + target/drafter latency profiles + an acceptance profile."""
    write_yaml(tmp_path / "target.yaml", latency_profile_dict())
    drafter = latency_profile_dict(base_ms=1.0, per_token_ms=0.002)
    drafter["model"].update(name="test-1b", params=1_000_000_000, layers=16, hidden=2048)
    write_yaml(tmp_path / "drafter.yaml", drafter)
    write_yaml(tmp_path / "acc.yaml", acceptance_profile_dict())
    write_yaml(tmp_path / "scenario.yaml", scenario_dict())
    return tmp_path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live_timing: a live engine timed against a prediction, or one that must start and "
        "stop within a deadline (runs last, after the parsers)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Live engines measured against a prediction (marker ``live_timing``) run last: the
    engine parsers of the export tests run beside the suite from its start, and a live
    timing must not share the CPU with them."""
    late = [i for i in items if i.get_closest_marker("live_timing")]
    if late:
        items[:] = [i for i in items if not i.get_closest_marker("live_timing")] + late
