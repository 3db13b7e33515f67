"""Many worker processes on one study, on every storage kind (journal file, SQLite, a real
PostgreSQL server): the budget is exact, set-up trials are enqueued once, a new database
can be started by several workers at once, a SIGKILLed worker's trial is failed and re-run,
a stale journal lock never stalls, and a study resumes after every worker died.

PostgreSQL: ``./spectune.sh test`` starts a throwaway server and exports its URL as
``SPECTUNE_TEST_POSTGRES``; each test creates its own database there. Without it those
cases skip, saying why.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from spectune.tuner import study as st
from spectune.tuner.storage import FlockLock

REPO = Path(__file__).resolve().parents[2]
PG_ENV = "SPECTUNE_TEST_POSTGRES"
SETUP = [{"x": float(i)} for i in range(5)]  # the warm start one worker enqueues

WORKER = """
import sys, time
import optuna
from spectune.tuner import study as st

url, name, budget, out, seed, sleep_s = sys.argv[1:7]
st.quiet_optuna()
storage = st.make_storage(url)
sampler = st.make_sampler("tpe", int(seed), int(budget))
study = st.open_study(name, storage, ["minimize"], sampler, "fp")
if st.claim_setup(study):
    st.enqueue_missing(study, [{"x": float(i)} for i in range(5)])
mine = []

def objective(trial):
    x = trial.suggest_float("x", -10.0, 10.0)
    mine.append(trial.number)
    with open(out, "a") as f:
        f.write(f"start {trial.number}\\n")
    time.sleep(float(sleep_s))
    return (x - 1.5) ** 2

st.run(study, objective, int(budget), progress=False)
with open(out, "a") as f:
    f.write("done " + " ".join(map(str, mine)) + "\\n")
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _postgres_url() -> str:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"no PostgreSQL server ({PG_ENV} unset): run the tests with ./spectune.sh test")
    psycopg = pytest.importorskip("psycopg")
    db = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    head, _, query = base.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{db}" + (f"?{query}" if query else "")


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "journal":
        return str(tmp_path / "study.log")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return _postgres_url()


def _start(tmp_path: Path, url: str, budget: int, i: int, sleep_s: float = 0.02):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"w{i}.txt"
    args = [sys.executable, str(script), url, "s", str(budget), str(out), str(i), str(sleep_s)]
    return subprocess.Popen(args, env=_env(), stderr=subprocess.PIPE, text=True), out


def _study(url: str) -> optuna.Study:
    st.quiet_optuna()
    return optuna.load_study(study_name="s", storage=st.make_storage(url))


def _check_complete(study: optuna.Study, budget: int) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials()
    finished = [t for t in trials if t.state in st.FINISHED]
    assert len(finished) == budget, "the budget is exact"
    for t in trials:
        if t.state == TrialState.FAIL:  # only lost races and trials of dead workers fail
            assert t.user_attrs.get(st.SURPLUS_ATTR) or t.number in _retried(trials)
        else:
            assert t.state == TrialState.COMPLETE
    setup = [t.params["x"] for t in finished if t.params["x"] in {s["x"] for s in SETUP}]
    assert sorted(setup) == [s["x"] for s in SETUP], "set-up trials enqueued and run once"
    return trials


def _retried(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    return {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}


@pytest.mark.slow
def test_four_workers_finish_an_exact_budget(storage_url: str, tmp_path: Path) -> None:
    budget = 24
    procs = [_start(tmp_path, storage_url, budget, i) for i in range(4)]
    for p, _ in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read()
    trials = _check_complete(_study(storage_url), budget)
    ran = [set(map(int, out.read_text().split("done")[1].split())) for _, out in procs]
    assert sum(bool(r) for r in ran) >= 2, "the work was shared"
    assert sum(len(r) for r in ran) == len({n for r in ran for n in r}), "no trial run twice"
    done = {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert done == set().union(*ran), "no trial lost"
    # a new database: every worker started at the same moment and none failed to open it
    errors = [p.stderr.read() for p, _ in procs]
    assert not any("Traceback" in e or "alembic" in e for e in errors), errors


@pytest.mark.slow
def test_killed_worker_trial_is_failed_and_rerun(storage_url: str, tmp_path: Path) -> None:
    budget = 10
    slow, slow_out = _start(tmp_path, storage_url, budget, 0, sleep_s=30.0)
    deadline = time.monotonic() + 120
    while "start" not in (slow_out.read_text() if slow_out.exists() else ""):
        assert time.monotonic() < deadline, "the worker never started a trial"
        time.sleep(0.1)
    killed = int(slow_out.read_text().split()[1])
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=30)
    fast, _ = _start(tmp_path, storage_url, budget, 1)
    assert fast.wait(timeout=240) == 0, fast.stderr.read()
    trials = _check_complete(_study(storage_url), budget)
    dead = next(t for t in trials if t.number == killed)
    assert dead.state == TrialState.FAIL
    rerun = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(rerun) == 1 and rerun[0].state == TrialState.COMPLETE
    assert rerun[0].params == dead.params


@pytest.mark.slow
def test_study_resumes_after_every_worker_died(storage_url: str, tmp_path: Path) -> None:
    budget = 12
    procs = [_start(tmp_path, storage_url, budget, i, sleep_s=0.3) for i in range(2)]
    deadline = time.monotonic() + 120
    while len(_study_if_any(storage_url)) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    for p, _ in procs:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    assert len(_study(storage_url).get_trials(states=st.FINISHED)) < budget
    again, _ = _start(tmp_path, storage_url, budget, 9)
    assert again.wait(timeout=240) == 0, again.stderr.read()
    _check_complete(_study(storage_url), budget)


def _study_if_any(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return _study(url).get_trials(states=st.FINISHED)
    except KeyError:  # not created yet
        return []


def test_a_killed_lock_holder_does_not_stall_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from spectune.tuner.storage import FlockLock\n"
            f"FlockLock({str(journal)!r}).acquire()\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert holder.stdout.readline().strip() == "locked"
    lock = FlockLock(journal)  # held by the other process right now
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    t0 = time.monotonic()
    lock.acquire()
    lock.release()
    st.quiet_optuna()
    study = optuna.create_study(study_name="j", storage=st.make_storage(str(journal)))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert time.monotonic() - t0 < 5.0, "no grace period waited out"


def test_setup_is_claimed_once_per_study(tmp_path: Path) -> None:
    storage = st.make_storage(str(tmp_path / "c.log"))
    a = optuna.create_study(study_name="a", storage=storage)
    b = optuna.create_study(study_name="b", storage=storage)
    assert st.claim_setup(a) is True
    assert st.claim_setup(a) is False  # a second worker, or a resumed run
    assert st.claim_setup(b) is True  # per study


def test_unreachable_postgres_fails_fast_with_one_line() -> None:
    pytest.importorskip("psycopg")
    t0 = time.monotonic()
    # a TEST-NET address (RFC 5737): routed nowhere, so only the connect timeout ends it
    with pytest.raises(
        Exception, match=re.escape("cannot open postgresql://spectune:***@192.0.2.1")
    ):
        st.make_storage("postgresql://spectune:secret@192.0.2.1:5432/x")
    assert time.monotonic() - t0 < 15


def test_sqlite_pops_and_recoveries_are_serialised(tmp_path: Path) -> None:
    # SQLite ignores SELECT ... FOR UPDATE: without this lock two workers pop one trial.
    import fcntl

    from spectune.tuner.storage import serialised

    db = tmp_path / "s.db"
    st.quiet_optuna()
    study = optuna.create_study(study_name="s", storage=st.make_storage(f"sqlite:///{db}"))
    with open(f"{db}.lock", "a") as other:
        with serialised(study), pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again afterwards
