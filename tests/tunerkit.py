"""Tiny tuner scenarios: synthetic latency grids (exact formulas), a cheap draft model with
ranked acceptance, an n-gram drafter, a short Poisson workload. Simulations take ~10 ms."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from conftest import acceptance_profile_dict, latency_profile_dict, write_yaml


def tiny_scenario() -> dict[str, Any]:
    return {
        "schema": "spectune/scenario/v1",
        "name": "tiny",
        "target": {"name": "test-8b", "latency_profile": "target.yaml"},
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
            "arrival": {"process": "poisson", "rate_per_s": 20.0},
            "num_requests": 120,
            "prompt_tokens": {"dist": "constant", "value": 100},
            "output_tokens": {"dist": "uniform", "low": 40, "high": 80},
        },
        "serving": {"max_num_seqs": 64, "max_batched_tokens": 4096, "kv_cache_tokens": 200000},
        "slo": {"ttft_s": 2.0, "tpot_s": 0.1},
        "spec": {"drafter": "small", "num_spec_tokens": 3},
        "search": {
            "drafters": ["none", "small", "ngram"],
            "num_spec_tokens": [0, 1, 2, 3, 4, 5, 6],
            "tree_budgets": [4, 8],
            "tree_depths": [2, 3],
        },
        "seed": 0,
    }


def write_tiny(folder: Path, changes: dict[str, Any] | None = None) -> Path:
    """Write the tiny scenario (top-level keys replaced by ``changes``) and its profiles."""
    write_yaml(folder / "target.yaml", latency_profile_dict(base_ms=5.0, per_token_ms=0.04))
    drafter = latency_profile_dict(base_ms=0.3, per_token_ms=0.002)
    drafter["model"].update(name="test-1b", params=1_000_000_000, layers=16, hidden=2048)
    write_yaml(folder / "drafter.yaml", drafter)
    write_yaml(folder / "acc.yaml", acceptance_profile_dict())
    sc = copy.deepcopy(tiny_scenario())
    sc.update(changes or {})
    return write_yaml(folder / "scenario.yaml", sc)
