"""Studies: storages, resume after a killed process, two workers sharing one journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from tunerkit import write_tiny

from spectune.simulator import load_scenario
from spectune.simulator.errors import InputError
from spectune.tuner import study as st
from spectune.tuner.search import SearchSettings, run_search

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def load(journal: Path, name: str) -> optuna.Study:
    st.quiet_optuna()
    return optuna.load_study(study_name=name, storage=st.make_storage(str(journal)))


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite:////no/such/folder/x.db", "cannot open"),
        ("postgresql://u:secret@localhost:1/db", "cannot open"),
        ("nosuchdb://x", "cannot open"),
        ("/no/such/folder/journal.log", "does not exist"),
    ],
)
def test_bad_storage_is_input_error(url: str, needle: str) -> None:
    with pytest.raises(InputError) as e:
        st.make_storage(url)
    assert needle in str(e.value)
    assert "secret" not in str(e.value)
    assert "\n" not in str(e.value)


def test_storage_kinds(tmp_path: Path) -> None:
    assert st.make_storage(None) is None
    assert isinstance(st.make_storage(str(tmp_path / "j.log")), optuna.storages.JournalStorage)
    assert isinstance(st.make_storage(f"sqlite:///{tmp_path / 's.db'}"), optuna.storages.RDBStorage)


def test_fingerprint_mismatch_refuses_to_mix(tmp_path: Path) -> None:
    scen = write_tiny(tmp_path, {"slo": {}})
    journal = str(tmp_path / "j.log")
    s = SearchSettings(trials=3, storage=journal, study_name="s", band_samples=0)
    run_search(load_scenario(scen), s)
    other = load_scenario(scen, ["workload.num_requests=60"])
    with pytest.raises(InputError, match=r"belongs to scenario 'tiny' .*this run is for scenario"):
        run_search(other, s)


RESUME_SCRIPT = """
import sys, time
from spectune.simulator import load_scenario, simulate
from spectune.tuner.search import SearchSettings, run_search

def slow(rs, seed):
    time.sleep(0.25)
    return simulate(rs, seed)

scen, journal, name, trials = sys.argv[1:5]
settings = SearchSettings(trials=int(trials), storage=journal, study_name=name,
                          band_samples=0, screen=False)
run_search(load_scenario(scen), settings, simulate=slow)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


@pytest.mark.slow
def test_resume_after_kill_loses_no_completed_trial(tmp_path: Path) -> None:
    scen = write_tiny(tmp_path, {"slo": {}})
    journal = tmp_path / "study.log"
    script = tmp_path / "worker.py"
    script.write_text(RESUME_SCRIPT)
    n_trials = 14
    proc = subprocess.Popen(
        [sys.executable, str(script), str(scen), str(journal), "resume", str(n_trials)],
        env=_env(),
    )
    try:
        deadline = time.time() + 60
        done: list[optuna.trial.FrozenTrial] = []
        while time.time() < deadline:
            time.sleep(0.2)
            if journal.exists():
                try:
                    done = load(journal, "resume").get_trials(states=FINISHED)
                except KeyError:  # study not created yet
                    continue
                if len(done) >= 4:
                    break
        assert proc.poll() is None, "the worker finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {
        t.number: (t.params, t.values) for t in load(journal, "resume").get_trials(states=FINISHED)
    }
    assert 4 <= len(before) < n_trials

    settings = SearchSettings(
        trials=n_trials, storage=str(journal), study_name="resume", band_samples=0, screen=False
    )
    out = run_search(load_scenario(scen), settings)
    after = load(journal, "resume").get_trials(states=FINISHED)
    assert len(after) == n_trials == out.trials
    by_number = {t.number: t for t in after}
    for number, (params, values) in before.items():
        assert by_number[number].params == params
        assert by_number[number].values == values
    # the trial the kill interrupted was failed and run again (its worker is dead)
    running = load(journal, "resume").get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert running == []


WORKER_SCRIPT = """
import sys, time
from spectune.simulator import load_scenario, simulate
from spectune.tuner import study as st
from spectune.tuner.objective import Evaluator, TrialObjective
from spectune.tuner.search import fingerprint
from spectune.tuner.space import SearchDims

scen, journal, name, trials, out = sys.argv[1:6]
rs = load_scenario(scen)
dims = SearchDims.from_scenario(rs)

def slow(r, seed):
    time.sleep(0.05)
    return simulate(r, seed)

ev = Evaluator(rs, seed=0, simulate=slow)
obj = TrialObjective(ev, dims, "latency")
mine = []

def objective(trial):
    mine.append(trial.number)
    return obj(trial)

st.quiet_optuna()
study = st.open_study(name, st.make_storage(journal), ["minimize"],
                      st.make_sampler("tpe", int(sys.argv[6]), int(trials)),
                      fingerprint(rs, "latency", 120, 0))
st.run(study, objective, int(trials), progress=False)
open(out, "w").write(" ".join(map(str, mine)))
"""


@pytest.mark.slow
def test_two_workers_share_one_journal(tmp_path: Path) -> None:
    scen = write_tiny(tmp_path, {"slo": {}})
    journal = tmp_path / "shared.log"
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    n_trials = 16
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(scen),
                str(journal),
                "shared",
                str(n_trials),
                str(tmp_path / f"w{i}.txt"),
                str(i),
            ],
            env=_env(),
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    ran = [set(map(int, (tmp_path / f"w{i}.txt").read_text().split())) for i in range(2)]
    assert ran[0] and ran[1], "both workers took trials"
    assert not ran[0] & ran[1], "no trial run twice"
    trials = load(journal, "shared").get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    finished = {t.number for t in trials if t.state in FINISHED}
    assert finished == ran[0] | ran[1], "no trial lost"
    assert len(finished) == n_trials, "the budget is exact"
    # a trial that lost the race for the last place is failed and marked, never counted
    assert all(t.state in FINISHED or t.user_attrs.get(st.SURPLUS_ATTR) for t in trials)


def test_exhaustive_resume_reuses_the_stored_grid(tmp_path: Path) -> None:
    scen = write_tiny(tmp_path, {"slo": {}})
    journal = str(tmp_path / "grid.log")
    s = SearchSettings(exhaustive=True, storage=journal, study_name="g", band_samples=0)
    first = run_search(load_scenario(scen), s)
    again = run_search(load_scenario(scen), s)
    assert first.trials == again.trials == first.grid_size
    # the second run found every grid point finished: only plain decoding (the
    # baseline, simulated before the study opens) and the policy rows outside this
    # fixed-k grid (final fidelity only, not stored in the study) ran again
    policy_rows = sum(1 for e in again.defaults.values() if e.config.policy != "fixed")
    assert again.simulations == 1 + policy_rows
    assert len(load(Path(journal), "g").trials) == first.grid_size
