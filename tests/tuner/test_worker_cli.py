"""`recommend --workers N` and `spectune worker`: a study records what it computes, so any
process joins it by name; the budget stays exact; a study of another scenario is refused
naming both; bad storages and names get one line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from tunerkit import write_tiny

from spectune.cli import main
from spectune.tuner import study as st
from spectune.tuner.jobs import read_job
from spectune.tuner.storage import make_storage

REPO = Path(__file__).resolve().parents[2]
FAST = ["--set", "search.tree_budgets=[]", "--search-requests", "60", "--final-requests", "60"]


def _trials(store: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=make_storage(store)).get_trials()


def test_recommend_with_two_workers_keeps_the_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scen = write_tiny(tmp_path)
    store = str(tmp_path / "s.log")
    argv = ["recommend", str(scen), "--trials", "12", "--workers", "2", "--storage", store]
    assert main([*argv, "--study-name", "w2", "--json", *FAST]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recommendation"]["config"]
    trials = _trials(store, "w2")
    done = [t for t in trials if t.state in st.FINISHED]
    assert len(done) == 12
    job = read_job(store, "w2")
    assert job.kind == "recommend" and job.file == str(scen.resolve())
    assert job.settings["trials"] == 12 and job.settings["search_requests"] == 60
    assert "search.tree_budgets=[]" in job.overrides


def test_worker_joins_by_name_until_the_budget_is_spent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scen = write_tiny(tmp_path)
    store = str(tmp_path / "s.log")
    argv = ["recommend", str(scen), "--trials", "6", "--storage", store, "--study-name", "j"]
    assert main([*argv, *FAST]) == 0
    capsys.readouterr()
    # the study is complete: a worker finds nothing left to do
    assert main(["worker", "j", "--storage", store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {**out, "ran": 0, "finished": 6, "budget": 6, "kind": "recommend"}
    # a worker started first on the scenario file: recommend (same defaults) joins its
    # study and runs the rest of the budget
    assert main(["worker", str(scen), "--storage", store, "--n-trials", "4", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["ran"] == 4 and first["budget"] > 4
    assert main(["recommend", str(scen), "--storage", store, "--json"]) == 0
    capsys.readouterr()
    done = [t for t in _trials(store, first["study"]) if t.state in st.FINISHED]
    assert len(done) == first["budget"]


def test_worker_on_a_new_study_from_a_scenario_file_with_a_trial_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scen = write_tiny(tmp_path)
    store = str(tmp_path / "s.log")
    assert main(["worker", str(scen), "--storage", store, "--n-trials", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ran"] == 3 and out["finished"] == 3 and out["budget"] > 3


def test_a_study_of_another_scenario_is_refused_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    a = write_tiny(tmp_path / "a")
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b = write_tiny(b_dir, {"name": "other", "slo": {"tpot_s": 0.2}})
    store = str(tmp_path / "s.log")
    base = ["--trials", "3", "--storage", store, "--study-name", "shared", *FAST]
    assert main(["recommend", str(a), *base]) == 0
    capsys.readouterr()
    assert main(["recommend", str(b), *base]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "belongs to scenario 'tiny'" in err and str(a) in err
    assert "this run is for scenario 'other'" in err and str(b) in err


def test_worker_bad_input_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = write_tiny(tmp_path)
    store = str(tmp_path / "s.log")
    assert main(["recommend", str(scen), "--trials", "2", "--storage", store, *FAST]) == 0
    capsys.readouterr()
    assert main(["worker", "nope", "--storage", store]) == 2
    err = capsys.readouterr().err
    assert "no study 'nope'" in err and "scenario-latency-tpe" in err.replace("tiny", "scenario")
    assert main(["worker", "x", "--storage", store, "--n-trials", "0"]) == 2
    assert "--n-trials" in capsys.readouterr().err
    assert main(["recommend", str(scen), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    # an unreachable database: one line within seconds, not a hang
    t0 = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "spectune.cli",
            "worker",
            "s",
            "--storage",
            "postgresql://nobody@127.0.0.1:9/none",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert r.returncode == 2 and time.monotonic() - t0 < 20
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_study_without_a_job_is_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s.log")
    optuna.create_study(study_name="foreign", storage=make_storage(store))
    assert main(["worker", "foreign", "--storage", store]) == 2
    assert "not created by spectune" in capsys.readouterr().err


def test_worker_with_its_own_copy_of_the_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    scen = write_tiny(tmp_path / "a")
    copy = write_tiny(tmp_path / "b")  # the same files at another path (another checkout)
    store = str(tmp_path / "s.log")
    argv = ["recommend", str(scen), "--trials", "5", "--storage", store, "--study-name", "c"]
    assert main([*argv, *FAST]) == 0
    capsys.readouterr()
    # the study is done; the copy is accepted (same content) and finds nothing to do
    assert main(["worker", str(copy), "--study-name", "c", "--storage", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["finished"] == 5
    # a copy whose content differs is refused, naming both
    changed = write_tiny(tmp_path / "b", {"slo": {"tpot_s": 0.5}})
    assert main(["worker", str(changed), "--study-name", "c", "--storage", store]) == 2
    err = capsys.readouterr().err
    assert "belongs to scenario 'tiny'" in err and str(scen) in err and str(changed) in err
