"""Bad-input campaign, part 1: bad values inside files the user gives (scenario, profiles,
traces). Each case mutates the valid scenario folder of conftest.scenario_dir and runs
``spectune simulate`` on it: exit 2, one line naming the file and the field, no input file
changed (tests/badinput.py). Classes: non-finite numbers, bounds that keep memory and time
sane (the limit is in the message), timestamps, duplicate YAML keys, unknown fields."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from badinput import expect_error
from conftest import write_yaml

Setup = Callable[[Path], None]


def mutate(file: str, path: str, value: Any) -> Setup:
    """Set ``path`` (dotted; list indices as numbers) in the YAML ``file`` to ``value``."""

    def setup(folder: Path) -> None:
        data = yaml.safe_load((folder / file).read_text())
        node: Any = data
        parts = path.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
        write_yaml(folder / file, data)

    return setup


def raw_yaml(file: str, text: str) -> Setup:
    """Append raw YAML text to ``file`` (to write what safe_dump cannot, e.g. a key twice)."""

    def setup(folder: Path) -> None:
        with (folder / file).open("a") as f:
            f.write(text)

    return setup


def trace(name: str, text: str | bytes, **workload: Any) -> Setup:
    """Write a trace file and point the scenario's workload at it."""

    def setup(folder: Path) -> None:
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        data = yaml.safe_load((folder / "scenario.yaml").read_text())
        data["workload"] = {"mode": "open", "trace": name, **workload}
        write_yaml(folder / "scenario.yaml", data)

    return setup


INF, NAN = float("inf"), float("nan")
AZ = "TIMESTAMP,ContextTokens,GeneratedTokens\n"

# (id, setup, text the error line must contain)
NON_FINITE: list[tuple[str, Setup, list[str]]] = [
    ("arrival rate inf", mutate("scenario.yaml", "workload.arrival.rate_per_s", INF),
     ["scenario.yaml", "workload.arrival.rate_per_s", "finite"]),
    ("arrival rate nan", mutate("scenario.yaml", "workload.arrival.rate_per_s", NAN),
     ["scenario.yaml", "workload.arrival.rate_per_s"]),
    ("time_scale inf", mutate("scenario.yaml", "workload.time_scale", INF),
     ["workload.time_scale"]),
    ("step overhead nan", mutate("scenario.yaml", "serving.step_overhead_ms", NAN),
     ["serving.step_overhead_ms"]),
    ("slo inf", mutate("scenario.yaml", "slo.tpot_s", INF), ["slo.tpot_s", "finite"]),
    ("ngram draft cost inf", mutate("scenario.yaml", "drafters.1.draft_ms_per_token", INF),
     ["drafters.1.draft_ms_per_token"]),
    ("lognormal mean inf",
     mutate("scenario.yaml", "workload.prompt_tokens", {"dist": "lognormal", "mean": INF, "cv": 1}),
     ["workload.prompt_tokens.mean"]),
    ("gpu memory nan", mutate("scenario.yaml", "serving.gpu_memory_utilization", NAN),
     ["serving.gpu_memory_utilization"]),
    ("profile latency p90 inf",
     mutate("target.yaml", "points.0.latency_ms", {"min": 1.0, "p50": 2.0, "p90": INF, "n": 3}),
     ["target.yaml", "points.0.latency_ms.p90", "finite"]),
    ("profile memory inf", mutate("target.yaml", "device.memory_gib", INF),
     ["target.yaml", "device.memory_gib"]),
    ("acceptance spread nan", mutate("acc.yaml", "acceptance.spread", NAN),
     ["acc.yaml", "acceptance.spread"]),
    ("acceptance temperature inf", mutate("acc.yaml", "temperature", INF),
     ["acc.yaml", "temperature"]),
    ("csv tokens nan", trace("t.csv", AZ + "2023-11-16 18:00:00,nan,5\n"),
     ["t.csv", "line 2", "ContextTokens"]),
    ("csv tokens inf", trace("t.csv", AZ + "2023-11-16 18:00:00,10,inf\n"),
     ["t.csv", "line 2", "GeneratedTokens"]),
    ("csv timestamp nan", trace("t.csv", "timestamp,prompt_tokens,output_tokens\n0,5,5\nnan,5,5\n"),
     ["t.csv", "line 3", "timestamp"]),
    ("jsonl NaN constant",
     trace("t.jsonl", '{"prompt_tokens": NaN, "output_tokens": 5}\n'), ["t.jsonl", "line 1"]),
    ("jsonl overflowing number",
     trace("t.jsonl", '{"prompt_tokens": 1e400, "output_tokens": 5}\n'),
     ["t.jsonl", "line 1", "prompt_tokens"]),
]  # fmt: skip

BOUNDS: list[tuple[str, Setup, list[str]]] = [
    ("1e10 requests", mutate("scenario.yaml", "workload.num_requests", 10**10),
     ["workload.num_requests", "1000000"]),
    ("max_num_seqs 1e9", mutate("scenario.yaml", "serving.max_num_seqs", 10**9),
     ["serving.max_num_seqs", "65536"]),
    ("tree budget 2000",
     mutate("scenario.yaml", "spec", {"drafter": "small", "tree": {"budget": 2000}}),
     ["spec.tree.budget", "256"]),
    ("tree depth 2000",
     mutate("scenario.yaml", "spec", {"drafter": "small", "tree": {"budget": 8, "depth": 2000}}),
     ["spec.tree.depth", "256"]),
    ("huge k", mutate("scenario.yaml", "spec.num_spec_tokens", 10**9),
     ["spec.num_spec_tokens", "256"]),
    ("search k huge", mutate("scenario.yaml", "search.num_spec_tokens", [1, 10**6]),
     ["search.num_spec_tokens.1", "256"]),
    ("search tree budget 2000", mutate("scenario.yaml", "search.tree_budgets", [8, 2000]),
     ["search.tree_budgets.1", "256"]),
    ("search max_num_seqs 1e9", mutate("scenario.yaml", "search.max_num_seqs", [10**9]),
     ["search.max_num_seqs.0", "65536"]),
    ("concurrency 1e10",
     mutate("scenario.yaml", "workload", {"mode": "closed", "concurrency": 10**10,
            "num_requests": 5, "prompt_tokens": {"dist": "constant", "value": 5},
            "output_tokens": {"dist": "constant", "value": 5}}),
     ["workload.concurrency", "1000000"]),
    ("prompt length 1e12",
     mutate("scenario.yaml", "workload.prompt_tokens", {"dist": "constant", "value": 10**12}),
     ["workload.prompt_tokens.value", "10000000"]),
    ("trace row 1e12 tokens", trace("t.csv", AZ + "2023-11-16 18:00:00,1000000000000,5\n"),
     ["t.csv", "line 2", "10,000,000"]),
    ("explicit tree of 300 paths",
     mutate("scenario.yaml", "spec", {"drafter": "small",
            "tree": {"paths": [[i] for i in range(300)]}}),
     ["spec.tree.paths", "256"]),
    ("acceptance vector of 5000",
     mutate("scenario.yaml", "drafters.1.acceptance.per_position", [0.5] * 5000),
     ["drafters.1.acceptance.per_position", "1024"]),
    ("kv tokens 1e15", mutate("scenario.yaml", "serving.kv_cache_tokens", 10**15),
     ["serving.kv_cache_tokens"]),
    ("seed 2^64 in the scenario", mutate("scenario.yaml", "seed", 2**64), ["seed"]),
    ("negative seed in the scenario", mutate("scenario.yaml", "seed", -1), ["seed", ">= 0"]),
]  # fmt: skip

TIMESTAMPS: list[tuple[str, Setup, list[str]]] = [
    ("numbers declared datetime",
     trace("t.csv", "timestamp,prompt_tokens,output_tokens\n1700000000,5,5\n",
           timestamp_unit="datetime"),
     ["t.csv", "line 2", "timestamp_unit is datetime"]),
    ("unknown unit", trace("t.csv", "timestamp,prompt_tokens,output_tokens\n0,5,5\n",
                           timestamp_unit="minutes"),
     ["workload.timestamp_unit"]),
    ("unparseable date", trace("t.csv", AZ + "yesterday,5,5\n"), ["t.csv", "line 2", "TIMESTAMP"]),
    ("some jsonl records without timestamp",
     trace("t.jsonl", '{"timestamp": 0, "prompt_tokens": 5, "output_tokens": 5}\n'
                      '{"prompt_tokens": 5, "output_tokens": 5}\n'),
     ["t.jsonl", "line 2", "no timestamp"]),
    ("lengths-only trace in open mode without arrivals",
     trace("t.csv", "prompt_tokens,output_tokens\n5,5\n"), ["workload.arrival", "no timestamps"]),
]  # fmt: skip

DUPLICATES: list[tuple[str, Setup, list[str]]] = [
    ("top-level key twice", raw_yaml("scenario.yaml", "seed: 1\nseed: 2\n"),
     ["scenario.yaml", "duplicate key 'seed'"]),
    ("section twice", raw_yaml("scenario.yaml", "slo: {tpot_s: 1.0}\n"),
     ["scenario.yaml", "duplicate key 'slo'"]),
    ("nested key twice",
     raw_yaml("scenario.yaml", "name: x\nsearch: {objective: auto, objective: latency}\n"),
     ["duplicate key 'objective'"]),
    ("profile key twice", raw_yaml("target.yaml", "notes: a\nnotes: b\n"),
     ["target.yaml", "duplicate key 'notes'"]),
    ("acceptance profile key twice", raw_yaml("acc.yaml", "dataset: a\n"),
     ["acc.yaml", "duplicate key 'dataset'"]),
]  # fmt: skip

OTHER: list[tuple[str, Setup, list[str]]] = [
    ("guessed workload.rate", mutate("scenario.yaml", "workload.rate", 3),
     ["workload.rate", "did you mean 'workload.arrival.rate_per_s'", "valid fields of workload"]),
    ("misspelt serving field", mutate("scenario.yaml", "serving.max_seqs", 3),
     ["did you mean 'serving.max_num_seqs'"]),
    ("search.drafters without none", mutate("scenario.yaml", "search.drafters", ["small"]),
     ["search", "must include none"]),
    ("search.drafters unknown name", mutate("scenario.yaml", "search.drafters", ["none", "eagle"]),
     ["search.drafters.1", "unknown drafter 'eagle'"]),
    ("scenario is a list", lambda f: (f / "scenario.yaml").write_text("- 1\n- 2\n"),
     ["scenario.yaml", "mapping"]),
    ("scenario is empty", lambda f: (f / "scenario.yaml").write_text(""),
     ["scenario.yaml", "mapping"]),
    ("scenario not UTF-8", lambda f: (f / "scenario.yaml").write_bytes(b"schema: \xff\xfe\n"),
     ["scenario.yaml", "UTF-8"]),
    ("trace not UTF-8", trace("t.csv", AZ.encode() + b"\xff,1,2\n"), ["t.csv", "UTF-8"]),
    ("json trace not an array", trace("t.json", '{"prompt_tokens": 5}'), ["t.json", "array"]),
    ("jsonl bad line", trace("t.jsonl", '{"prompt_tokens": 5, "output_tokens": 5}\n{oops\n'),
     ["t.jsonl", "line 2", "JSON"]),
    ("sharegpt without a reply",
     trace("t.json", json.dumps([{"conversations": [{"from": "human", "value": "hi"}]}])),
     ["t.json", "no usable record"]),
    ("record without lengths", trace("t.jsonl", '{"id": 3}\n'),
     ["t.jsonl", "line 1", "prompt_tokens"]),
    ("tokenizer file not a tokenizer",
     lambda f: (trace("t.jsonl", '{"prompt": "hi", "output": "yo"}\n', tokenizer="tok.json")(f),
                (f / "tok.json").write_text("{}")),
     ["tok.json", "workload.tokenizer"]),
    ("tokenizer file missing", trace("t.jsonl", '{"prompt": "hi", "output": "yo"}\n',
                                      tokenizer="missing.json"),
     ["workload.tokenizer", "file not found"]),
]  # fmt: skip

CASES = [*NON_FINITE, *BOUNDS, *TIMESTAMPS, *DUPLICATES, *OTHER]


@pytest.mark.parametrize(("setup", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_value(
    scenario_dir: Path, setup: Setup, needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    setup(scenario_dir)
    expect_error(capsys, ["simulate", scenario_dir / "scenario.yaml"], needles, scenario_dir)


def test_campaign_size() -> None:
    assert len(CASES) >= 50
