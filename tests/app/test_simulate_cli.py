"""``spectune simulate``: the summary, the --json contract, --set and --seed, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spectune.cli import main
from spectune.commands.simulate import compact_hist

REPO = Path(__file__).resolve().parents[2]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["simulate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_contract(scenario_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = run_json(capsys, str(scenario_dir / "scenario.yaml"))
    for key in (
        "throughput_tok_per_s",
        "requests_per_s",
        "mean_accepted_len",
        "goodput_req_per_s",
        "num_requests",
    ):
        assert isinstance(m[key], int | float), key
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(m[key]) >= {"p50", "p90", "p99"}
        assert m[key]["p50"] <= m[key]["p90"] <= m[key]["p99"]
    assert m["num_requests"] == 20
    assert m["config"]["drafter"] == "small" and m["config"]["num_spec_tokens"] == 3
    assert m["mean_accepted_len"] > 1.0


def test_set_overrides_and_seed(scenario_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(scenario_dir / "scenario.yaml")
    plain = run_json(capsys, path, "--set", "spec.drafter=none", "--set", "workload.num_requests=7")
    assert plain["config"]["drafter"] == "none" and plain["num_requests"] == 7
    assert plain["mean_accepted_len"] == 1.0 and plain["acceptance_rate"] is None
    a = run_json(capsys, path, "--seed", "1")
    b = run_json(capsys, path, "--seed", "2")
    c = run_json(capsys, path, "--seed", "1")
    assert a["config"]["seed"] == 1 and a["e2e_s"] != b["e2e_s"] and a["e2e_s"] == c["e2e_s"]


def test_summary_table(scenario_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(scenario_dir / "scenario.yaml")]) == 0
    out, err = capsys.readouterr()
    for text in (
        "drafter small (draft_model), k=3",
        "throughput (output tok/s)",
        "mean accepted length",
        "goodput (req/s)",
        "TTFT <= 2 s, TPOT <= 0.1 s",
        "TPOT",
        "batch sizes (% of iterations)",
        "DES events",
    ):
        assert text in out, text
    assert "warning: target:" in out  # the test grid starts at context 128: flagged
    assert err == ""  # no progress bar when stderr is not a terminal


def test_bad_override_exits_2_with_one_line(
    scenario_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(scenario_dir / "scenario.yaml")
    assert main(["simulate", path, "--set", "serving.kv_cache_tokens=50"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "serving.kv_cache_tokens" in err and "needs" in err


def test_shipped_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    m = run_json(
        capsys,
        str(REPO / "examples" / "azure-code-h100.yaml"),
        "--set",
        "workload.num_requests=300",
    )
    assert m["num_requests"] == 300 and m["config"]["drafter"] == "eagle"
    assert 1.0 < m["mean_accepted_len"] < 5.0
    assert m["warnings"] == []


def test_compact_hist() -> None:
    assert (
        compact_hist({1: 50, 2: 20, 3: 10, 4: 10, 7: 9, 40: 1})
        == "1:50% 2:20% 3-4:20% 5-8:9% 33-64:1%"
    )
    assert compact_hist({}) == "-"


def test_progress_bar_only_on_a_terminal(
    scenario_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["simulate", str(scenario_dir / "scenario.yaml"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "simulate" in err and "req" in err  # tqdm's bar
    assert json.loads(out)["num_requests"] == 20  # stdout stays clean JSON
