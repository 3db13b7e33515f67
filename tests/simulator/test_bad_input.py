"""Bad input: every malformed scenario or profile gives one line naming file and field.

Each case mutates a valid scenario folder (see conftest.scenario_dir) and checks that
loading fails with an InputError whose text names the file and the dotted field, and that
the CLI turns it into exactly one stderr line and exit code 2, with no traceback.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_yaml

from spectune.cli import main
from spectune.simulator.errors import InputError
from spectune.simulator.scenario import load_scenario

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def f(d: dict[str, Any]) -> None:
        node: Any = d
        parts = path.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return f


def _del(path: str) -> Mutation:
    def f(d: dict[str, Any]) -> None:
        node: Any = d
        parts = path.split(".")
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[parts[-1]]

    return f


# (case id, file to mutate, mutation, text the error must contain: file, field)
CASES: list[tuple[str, str, Mutation, str, str]] = [
    ("missing schema", "scenario.yaml", _del("schema"), "scenario.yaml", "schema"),
    (
        "wrong schema",
        "scenario.yaml",
        _set("schema", "spectune/scenario/v9"),
        "scenario.yaml",
        "schema",
    ),
    ("missing target", "scenario.yaml", _del("target"), "scenario.yaml", "target"),
    ("missing workload", "scenario.yaml", _del("workload"), "scenario.yaml", "workload"),
    ("unknown top field", "scenario.yaml", _set("colour", "red"), "scenario.yaml", "colour"),
    (
        "negative max_num_seqs",
        "scenario.yaml",
        _set("serving.max_num_seqs", -3),
        "scenario.yaml",
        "serving.max_num_seqs",
    ),
    (
        "max_num_seqs wrong type",
        "scenario.yaml",
        _set("serving.max_num_seqs", "many"),
        "scenario.yaml",
        "serving.max_num_seqs",
    ),
    (
        "kv tokens zero",
        "scenario.yaml",
        _set("serving.kv_cache_tokens", 0),
        "scenario.yaml",
        "serving.kv_cache_tokens",
    ),
    (
        "memory utilization > 1",
        "scenario.yaml",
        _set("serving.gpu_memory_utilization", 1.5),
        "scenario.yaml",
        "serving.gpu_memory_utilization",
    ),
    (
        "acceptance above 1",
        "scenario.yaml",
        _set("drafters.1.acceptance.per_position", [0.5, 1.2]),
        "scenario.yaml",
        "drafters.1.acceptance.per_position.1",
    ),
    (
        "acceptance negative",
        "scenario.yaml",
        _set("drafters.1.acceptance.per_position", [-0.1]),
        "scenario.yaml",
        "drafters.1.acceptance.per_position.0",
    ),
    (
        "unknown drafter name",
        "scenario.yaml",
        _set("spec.drafter", "llama-70b"),
        "scenario.yaml",
        "spec.drafter",
    ),
    (
        "unknown drafter kind",
        "scenario.yaml",
        _set("drafters.0.kind", "oracle"),
        "scenario.yaml",
        "drafters.0.kind",
    ),
    (
        "duplicate drafter names",
        "scenario.yaml",
        _set("drafters.1.name", "small"),
        "scenario.yaml",
        "drafters",
    ),
    (
        "draft_model without latency profile",
        "scenario.yaml",
        _del("drafters.0.latency_profile"),
        "scenario.yaml",
        "drafters.0.latency_profile",
    ),
    (
        "negative k",
        "scenario.yaml",
        _set("spec.num_spec_tokens", -1),
        "scenario.yaml",
        "spec.num_spec_tokens",
    ),
    (
        "tree path without parent",
        "scenario.yaml",
        _set("spec.tree", {"paths": [[0], [1, 0]]}),
        "scenario.yaml",
        "spec.tree",
    ),
    (
        "missing trace file",
        "scenario.yaml",
        _set("workload.trace", "no/such/trace.csv"),
        "scenario.yaml",
        "workload.trace",
    ),
    (
        "missing target profile file",
        "scenario.yaml",
        _set("target.latency_profile", "nope.yaml"),
        "scenario.yaml",
        "target.latency_profile",
    ),
    (
        "negative arrival rate",
        "scenario.yaml",
        _set("workload.arrival.rate_per_s", -2),
        "scenario.yaml",
        "workload.arrival.rate_per_s",
    ),
    (
        "closed loop without concurrency",
        "scenario.yaml",
        _set("workload.mode", "closed"),
        "scenario.yaml",
        "workload.concurrency",
    ),
    (
        "uniform low > high",
        "scenario.yaml",
        _set("workload.output_tokens", {"dist": "uniform", "low": 50, "high": 10}),
        "scenario.yaml",
        "workload.output_tokens.low",
    ),
    (
        "unknown length dist",
        "scenario.yaml",
        _set("workload.prompt_tokens", {"dist": "zipf"}),
        "scenario.yaml",
        "workload.prompt_tokens.dist",
    ),
    ("negative SLO", "scenario.yaml", _set("slo.tpot_s", -0.05), "scenario.yaml", "slo.tpot_s"),
    (
        "profile negative latency",
        "target.yaml",
        _set("points.0.latency_ms", {"min": -1.0, "p50": 1.0, "p90": 2.0, "n": 3}),
        "target.yaml",
        "points.0.latency_ms.min",
    ),
    (
        "profile latency quantiles out of order",
        "target.yaml",
        _set("points.0.latency_ms", {"min": 5.0, "p50": 1.0, "p90": 2.0, "n": 3}),
        "target.yaml",
        "points.0.latency_ms",
    ),
    ("profile missing points", "target.yaml", _del("points"), "target.yaml", "points"),
    (
        "profile zero batch",
        "drafter.yaml",
        _set("points.0.batch", 0),
        "drafter.yaml",
        "points.0.batch",
    ),
    (
        "profile bad provenance",
        "target.yaml",
        _set("provenance.kind", "guessed"),
        "target.yaml",
        "provenance.kind",
    ),
    (
        "profile heads not multiple of kv heads",
        "target.yaml",
        _set("model.kv_heads", 7),
        "target.yaml",
        "model",
    ),
    (
        "acceptance profile ranked above 1",
        "acc.yaml",
        _set("acceptance.ranked", [0.9, 1.5]),
        "acc.yaml",
        "acceptance.ranked.1",
    ),
    (
        "acceptance profile wrong kind",
        "acc.yaml",
        _set("drafter_kind", "ngram"),
        "scenario.yaml",
        "drafters.0.acceptance.profile",
    ),
]


def _mutate(folder: Path, name: str, mutation: Mutation) -> None:
    path = folder / name
    data = yaml.safe_load(path.read_text())
    mutation(data)
    write_yaml(path, data)


@pytest.mark.parametrize(
    ("file", "mutation", "want_file", "want_field"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_bad_file_names_file_and_field(
    scenario_dir: Path, file: str, mutation: Mutation, want_file: str, want_field: str
) -> None:
    _mutate(scenario_dir, file, mutation)
    with pytest.raises(InputError) as info:
        load_scenario(scenario_dir / "scenario.yaml")
    text = str(info.value)
    assert want_file in text
    assert f"{want_field}:" in text or text.endswith(want_field), text
    assert "\n" not in text


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("serving.max_num_seqs=-3", "serving.max_num_seqs"),
        ("serving.no_such_field=1", "serving.no_such_field"),
        ("drafters.9.kind=ngram", "drafters.9"),
        ("spec.num_spec_tokens.deeper=1", "spec.num_spec_tokens.deeper"),
        ("no-equals-sign", "--set"),
        ("spec.drafter=ghost", "spec.drafter"),
    ],
)
def test_bad_set_override(scenario_dir: Path, override: str, field: str) -> None:
    with pytest.raises(InputError) as info:
        load_scenario(scenario_dir / "scenario.yaml", [override])
    assert field in str(info.value)


def test_set_override_is_validated_like_the_file(scenario_dir: Path) -> None:
    rs = load_scenario(
        scenario_dir / "scenario.yaml", ["spec.num_spec_tokens=0", "serving.max_num_seqs=4"]
    )
    assert rs.scenario.spec.num_spec_tokens == 0
    assert rs.scenario.serving.max_num_seqs == 4


def test_not_yaml_and_not_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: [unclosed\n")
    with pytest.raises(InputError, match=r"bad\.yaml: line"):
        load_scenario(bad)
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(InputError, match="must be a YAML mapping"):
        load_scenario(bad)
    with pytest.raises(InputError, match="file not found"):
        load_scenario(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "argv_tail",
    [
        ["--set", "serving.max_num_seqs=-3"],
        ["--set", "spec.drafter=ghost"],
        ["--set", "workload.trace=missing.csv"],
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    scenario_dir: Path, argv_tail: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", str(scenario_dir / "scenario.yaml"), *argv_tail])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spectune: error: ")
    assert "scenario.yaml" in lines[0]


def test_cli_subprocess_no_traceback(scenario_dir: Path) -> None:
    _mutate(scenario_dir, "acc.yaml", _set("acceptance.per_position", [2.0]))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spectune.cli",
            "simulate",
            str(scenario_dir / "scenario.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "acc.yaml: acceptance.per_position.0" in proc.stderr
