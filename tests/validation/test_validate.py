"""``spectune validate`` on a tiny random model: the JSON summary keys, the report files,
resume (completed live runs are not run again), the tuner's-pick check, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from conftest import latency_profile_dict  # noqa: E402

from spectune.cli import main  # noqa: E402
from spectune.profiler.runtime.checkpoint import save_checkpoint  # noqa: E402
from spectune.profiler.runtime.config import ModelConfig  # noqa: E402
from spectune.profiler.runtime.model import random_model  # noqa: E402
from spectune.validation import matrix, runs  # noqa: E402
from spectune.validation import pipeline as pipeline_mod  # noqa: E402
from spectune.validation.matrix import Entry, Lengths  # noqa: E402
from spectune.validation.pipeline import ValidateSettings, run_validation  # noqa: E402

CFG = ModelConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)
TINY = Lengths(prompt_mean=12, output_mean=8, num_requests=4, trace_requests=4)
ENTRIES = (
    Entry("offline", "none", max_num_seqs=8),
    Entry("offline", "self2", k=2, max_num_seqs=8),
    Entry("closed", "ng", k=3, max_num_seqs=4),
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("validate")
    save_checkpoint(random_model(CFG, seed=0), d / "models" / "tiny-target")
    lat = latency_profile_dict()
    lat["model"]["name"] = "tiny-target"
    (d / "lat.yaml").write_text(yaml.safe_dump(lat))
    sc = {
        "schema": "spectune/scenario/v1",
        "target": {"latency_profile": "lat.yaml"},
        "drafters": [
            {
                "name": "self2",
                "kind": "self",
                "self_layers": 2,
                "acceptance": {"per_position": [0.5], "ranked": [0.5, 0.2]},
            },
            {"name": "ng", "kind": "ngram", "acceptance": {"per_position": [0.2]}},
        ],
        "workload": {
            "mode": "offline",
            "num_requests": 4,
            "prompt_tokens": {"dist": "constant", "value": 8},
            "output_tokens": {"dist": "constant", "value": 8},
        },
        "serving": {"max_num_seqs": 8},
        # No config meets this SLO: the tuner's-pick check compares throughput and must not
        # stop at "no configuration meets the SLOs".
        "slo": {"ttft_s": 1e-9},
        "search": {"num_spec_tokens": [0, 1, 2]},
    }
    p = d / "tiny.yaml"
    p.write_text(yaml.safe_dump(sc))
    return p


@pytest.fixture(autouse=True)
def tiny_lengths(monkeypatch):
    monkeypatch.setattr(matrix, "QUICK", TINY)
    monkeypatch.setattr(matrix, "FULL", TINY)
    monkeypatch.setattr(pipeline_mod, "WARM_TOKENS", 16)
    monkeypatch.setattr(pipeline_mod, "WARM_BATCH", 2)
    monkeypatch.setattr(pipeline_mod, "WARM_QUERY", 2)


def settings(scenario: Path, report: Path, **kw) -> ValidateSettings:
    base = dict(
        scenario=str(scenario),
        quick=True,
        repeats=2,
        report_dir=str(report),
        models_dir=str(scenario.parent / "models"),
        entries=ENTRIES,
        tuner=False,
        realtime=False,
        calibrate=False,
        profiles=False,
    )
    base.update(kw)
    return ValidateSettings(**base)


@pytest.mark.slow
def test_validate_runs_matrix_and_resumes(scenario, tmp_path, monkeypatch):
    report = tmp_path / "rep"
    seen: list[tuple[int, int]] = []
    result = run_validation(settings(scenario, report), lambda d, t: seen.append((d, t)))
    s = result["summary"]
    assert s["num_configs"] == len(ENTRIES)
    for key in ("median_abs_pct_error", "max_abs_pct_error", "rank_correlation"):
        assert key in s
    assert s["max_abs_pct_error"] >= s["median_abs_pct_error"] >= 0
    assert seen[-1] == (6, 6)  # 3 entries x 2 repeats, progress reported
    rows = {r["id"]: r for r in result["configs"]}
    assert rows[ENTRIES[1].id]["repeats"] == 2
    assert rows[ENTRIES[1].id]["measured"]["mean_accepted_len"] > 1.0
    assert rows[ENTRIES[0].id]["measured"]["mean_accepted_len"] == 1.0
    lines = (report / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 6  # header + runs

    # Resume: nothing left to run, so no live run may happen.
    def boom(*a, **k):
        raise AssertionError("a completed live run was run again")

    monkeypatch.setattr(runs.Runner, "live", boom)
    again = run_validation(settings(scenario, report))
    assert again["summary"]["num_configs"] == len(ENTRIES)
    assert len((report / "runs.jsonl").read_text().splitlines()) == 7


@pytest.mark.slow
def test_resume_runs_only_missing(scenario, tmp_path, monkeypatch):
    report = tmp_path / "rep"
    run_validation(settings(scenario, report, entries=ENTRIES[:1], repeats=1))
    calls: list[str] = []
    real = runs.Runner.live

    def counting(self, e, rep):
        calls.append(f"{e.id}#{rep}")
        return real(self, e, rep)

    monkeypatch.setattr(runs.Runner, "live", counting)
    run_validation(settings(scenario, report, entries=ENTRIES[:2], repeats=1))
    assert calls == [f"{ENTRIES[1].id}#0"]


@pytest.mark.slow
def test_cli_json_and_report(scenario, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline_mod, "build_matrix", lambda rs, quick: list(ENTRIES[:2]))
    report = tmp_path / "rep"
    argv = [
        "validate", str(scenario), "--quick", "--json", "--report", str(report),
        "--repeats", "1", "--models", str(scenario.parent / "models"),
        "--tuner-trials", "3", "--no-progress", "--no-calibrate", "--no-profile",
    ]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("num_configs", "median_abs_pct_error", "max_abs_pct_error", "rank_correlation"):
        assert key in out
    assert out["num_configs"] == 2
    assert len(out["configs"]) == 2
    assert out["tuner"] is not None and out["tuner"]["ratio"] > 0
    assert out["tuner_pick_ratio"] == out["tuner"]["ratio"]
    for name in ("report.md", "predicted_vs_measured.png", "validation.json", "runs.jsonl"):
        assert (report / name).is_file()
    assert "predicted vs measured" in (report / "report.md").read_text()


@pytest.mark.slow
def test_calibration_fits_overheads_once(scenario, tmp_path, monkeypatch):
    report = tmp_path / "rep"
    s = settings(scenario, report, entries=ENTRIES[:1], repeats=1, calibrate=True)
    result = run_validation(s)
    ov = result["overhead"]
    assert ov["engine"]["step_overhead_ms"] >= 0
    assert set(ov["drafters"]) == {"self2", "ng"}
    assert (report / "overhead.json").is_file()
    # acceptance measured on the validation workload, per drafter
    assert (report / "acceptance" / "self2.yaml").is_file()
    assert any("acceptance measured on the validation workload" in n for n in result["notes"])
    assert result["summary_uncalibrated"]["num_configs"] == 1
    # the fitted overheads reach a scenario that loads and carries them
    from spectune.simulator.scenario import load_scenario

    assert result["calibrated_scenario"] == str(report / "calibrated-scenario.yaml")
    cal = load_scenario(report / "calibrated-scenario.yaml").scenario
    assert cal.serving.step_overhead_ms == pytest.approx(ov["engine"]["step_overhead_ms"], abs=1e-3)
    assert cal.serving.prefill == "separate" and cal.serving.attention_context == "max"
    ng = cal.drafter("ng")
    assert ng.step_overhead_per_seq_ms == pytest.approx(
        ov["drafters"]["ng"]["step_overhead_per_seq_ms"], abs=1e-3
    )

    def boom(*a, **k):
        raise AssertionError("calibration ran again")

    monkeypatch.setattr(runs.Runner, "serve", boom)
    again = run_validation(s)
    assert again["overhead"] == ov


@pytest.mark.slow
def test_latency_profiles_not_measured_here_are_measured(scenario, tmp_path, monkeypatch):
    from spectune.profiler.measure.grid import Grid
    from spectune.validation import profiles as validation_profiles

    grid = Grid(batches=(1, 2), queries=(1, 4, 16), contexts=(0, 32))
    monkeypatch.setattr(validation_profiles, "VALIDATION_GRID", grid)
    report = tmp_path / "rep"
    s = settings(scenario, report, entries=ENTRIES[:1], repeats=1, profiles=True)
    result = run_validation(s)
    assert any("measured here" in n for n in result["notes"])
    prof = report / "profiles" / "tiny-target.yaml"
    assert prof.is_file()
    stamp = prof.stat().st_mtime_ns
    run_validation(s)  # reused, not measured again
    assert prof.stat().st_mtime_ns == stamp


def test_bad_input_is_one_line(scenario, tmp_path, capsys):
    argv = ["validate", str(scenario), "--repeats", "0"]
    assert main(argv) == 2
    assert "--repeats" in capsys.readouterr().err
    argv = ["validate", str(scenario), "--models", str(tmp_path / "nowhere"), "--no-progress"]
    assert main(argv) == 2
    assert "tiny-target" in capsys.readouterr().err


def test_quick_mode_reports_no_configs_target_it_cannot_meet() -> None:
    from spectune.validation.report import target_status

    summary = {"num_configs": 10, "median_abs_pct_error": 3.0, "max_abs_pct_error": 9.0}
    assert target_status(summary)["num_configs"] is False
    assert target_status(summary, quick=True)["num_configs"] is None
    assert target_status(summary, quick=True)["median_abs_pct_error"] is True
