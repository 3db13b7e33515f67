"""Optuna study plumbing: samplers, resumable studies shared by many workers.

- Storage (:mod:`.storage`): in memory by default; ``--storage`` takes a journal file
  (many processes on one machine) or a database URL (``sqlite:///x.db``,
  ``postgresql://user@host/db``: workers on many machines).
- Studies are created or loaded by name: rerunning the same command resumes (no completed
  trial lost), and every worker pointed at one storage and study name shares the work.
  Exactly one worker runs a study's set-up (:func:`claim_setup`: creating a marker study
  is atomic in every storage), so warm-start trials are enqueued once.
- The budget is exact: ``--trials N`` is the study's total of finished (complete or
  pruned) trials across all workers. A trial claims its place when it starts: it runs only
  if fewer than N unfailed trials were created before it. A trial that loses that race (two
  workers asked for the last place at once) is failed at once, marked
  ``spectune_surplus``, and never counted (:func:`run`).
- Dead workers: a trial records the process that runs it (host, pid, process start time).
  A worker that finds a RUNNING trial of a dead process on its own host fails it and
  re-enqueues its parameters (:func:`recover_dead_trials`), so a worker killed with
  SIGKILL loses no trial. Database storages also run Optuna's heartbeat, which finds dead
  workers on other machines after the grace period. A trial is retried at most
  ``MAX_RETRY`` times (:mod:`.storage`).
- Samplers: seeded TPE (multivariate, grouped for the conditional space, constant liar
  so parallel workers do not all sample the same point) by default; NSGA-II for the
  Pareto front.
- A study records a fingerprint of what it optimises (scenario, objective, fidelity); a
  run that finds a different fingerprint under the same name stops with an InputError
  instead of mixing two problems in one study.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from spectune.simulator.errors import InputError
from spectune.simulator.progress import Progress

from .storage import RETRY, heartbeat, make_storage, quiet_optuna, serialised

__all__ = [
    "FINISHED",
    "claim_setup",
    "count_finished",
    "enqueue_missing",
    "make_sampler",
    "make_storage",
    "open_study",
    "quiet_optuna",
    "recover_dead_trials",
    "run",
    "run_queue",
    "worker_id",
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FINGERPRINT_ATTR = "spectune_fingerprint"
OWNER_ATTR = "spectune_owner"  # what the study is for, in words (named when refused)
JOB_ATTR = "spectune_job"  # how a worker rebuilds the work: :mod:`.jobs`
WORKER_ATTR = "spectune_worker"  # who runs a trial: worker_id()
SURPLUS_ATTR = "spectune_surplus"  # a trial failed because the budget was already taken
UNSIGNED_GRACE_S = 30.0  # a RUNNING trial never signed by its worker is dead after this
WAIT_S = 0.5  # how often a worker looks again while others run the last trials
QUEUED_ATTR = "spectune_queued"  # run_queue: the setup worker enqueued the whole list
QUEUE_WAIT_S = 60.0  # how long a joining worker waits for that


def make_sampler(kind: str, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler for a run.

    Args:
        kind: ``tpe`` (single objective), ``nsga2`` (Pareto front) or ``grid`` (enqueued
            trials only: a random sampler never used past the queue).
        seed: sampler seed.
        n_trials: the study's trial budget (sizes TPE's random start and NSGA-II's population).
    """
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=max(4, min(20, n_trials // 4))
        )
    if kind == "grid":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=max(3, min(8, n_trials // 4)),
        multivariate=True,
        group=True,  # the space is conditional (per-drafter parameters)
        constant_liar=True,  # parallel workers see running trials as bad, not as absent
    )


def open_study(
    name: str,
    storage: optuna.storages.BaseStorage | None,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler,
    fingerprint: str,
    *,
    owner: str = "",
    job: dict[str, Any] | None = None,
) -> optuna.Study:
    """Create or load (``load_if_exists=True``) a study and check its fingerprint.

    Args:
        name, storage, directions, sampler: as ``optuna.create_study``.
        fingerprint: what the study optimises (a hash); another one under the same name is
            refused.
        owner: what the study is for, in words (e.g. ``scenario 'x' (path)``), stored with
            it so that a refusal names both.
        job: how a worker rebuilds the work (:mod:`.jobs`), stored with a new study.

    Raises:
        InputError: the stored study optimises something else (other scenario, objective
            or directions), or the storage fails.
    """
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=list(directions),
            sampler=sampler,
            load_if_exists=True,
        )
    except json.JSONDecodeError as e:
        raise InputError(f"not an Optuna journal file ({e})", source="--storage") from None
    except ValueError as e:  # e.g. directions differ from the stored study
        raise InputError(f"study '{name}': {e}", source="--storage") from None
    attrs = study.user_attrs
    stored = attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        if owner:
            study.set_user_attr(OWNER_ATTR, owner)
        if job is not None:
            study.set_user_attr(JOB_ATTR, job)
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
    elif stored != fingerprint:
        theirs = attrs.get(OWNER_ATTR, "another scenario, objective or search budget")
        ours = f"; this run is for {owner}" if owner else ""
        raise InputError(
            f"study '{name}' in this storage belongs to {theirs}{ours}; pass another "
            "--study-name (or another --storage)",
            source="--storage",
        )
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise InputError(f"study '{name}' has other directions", source="--storage")
    return study


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def claim_setup(study: optuna.Study) -> bool:
    """True for exactly one caller per study across all workers, False for every other.

    The claim is the creation of a marker study named ``spectune-claim:<study>:setup`` in
    the same storage: creating a study name is atomic in every Optuna storage (the loser
    gets ``DuplicatedStudyError``), with no lock to leave behind when a worker dies.
    """
    name = f"spectune-claim:{study.study_name}:setup"
    storage = study._storage  # Optuna has no public accessor; the study's own storage
    try:
        storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


def _proc_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ("" when unknown), so a pid
    reused by another process is not taken for the old one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # field 22 overall: starttime


def worker_id() -> str:
    """``host pid start`` of this process."""
    return f"{socket.gethostname()} {os.getpid()} {_proc_start(os.getpid())}"


def _dead(worker: str) -> bool:
    """True when ``worker`` (from :func:`worker_id`) is a process of this host that is gone."""
    host, _, rest = worker.partition(" ")
    pid_s, _, start = rest.partition(" ")
    if host != socket.gethostname() or not pid_s.isdigit():
        return False  # another machine: only a database heartbeat can tell
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return bool(start) and _proc_start(pid) != start


def recover_dead_trials(study: optuna.Study) -> int:
    """Fail the RUNNING trials whose worker process died and re-enqueue their parameters.

    Only processes on this host can be checked (database storages' heartbeat covers the
    others). Two workers recovering at once are safe: failing a trial is atomic in the
    storage, and only the worker that did it re-enqueues.

    Returns:
        The number of trials recovered by this call.
    """
    storage = study._storage
    n = 0
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(WORKER_ATTR)
        if owner is None:  # killed between asking and signing: dead once old enough
            start = t.datetime_start or now
            if (now - start).total_seconds() < UNSIGNED_GRACE_S:
                continue
        elif not _dead(owner):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recovered it first
        RETRY(study, storage.get_trial(t._trial_id))
        n += 1
    return n


def _claims_a_place(trial: optuna.Trial, budget: int) -> bool:
    """Fewer than ``budget`` unfailed trials were created before this one."""
    ahead = sum(
        1
        for t in trial.study.get_trials(deepcopy=False)
        if t.number < trial.number and t.state != TrialState.FAIL
    )
    return ahead < budget


def run(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    n_trials: int,
    *,
    progress: bool | None = None,
    desc: str = "search",
    limit: int | None = None,
) -> int:
    """Run trials until the study holds ``n_trials`` finished ones (all workers together).

    Trials of dead workers are recovered and re-run; the study never ends with more than
    ``n_trials`` finished trials, whatever the number of workers. When the last trials run
    in other workers, this one waits for them, so on return the study is complete.

    Args:
        study: the study (possibly shared with other processes).
        objective: the trial function (returns the value(s); may raise ``TrialPruned``).
        n_trials: total finished trials wanted.
        progress: show progress on stderr (a bar on a terminal, lines elsewhere); default:
            when stderr is a terminal.
        desc: the progress label.
        limit: stop after this process ran this many trials (``spectune worker --n-trials``).

    Returns:
        The number of trials this process finished.
    """
    return _work(study, objective, n_trials, progress, desc, queue_only=False, limit=limit)


def _work(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    budget: int,
    progress: bool | None,
    desc: str,
    *,
    queue_only: bool,
    limit: int | None = None,
) -> int:
    show = sys.stderr.isatty() if progress is None else progress
    bar = Progress(desc, budget, unit="trial", enabled=show)
    ran = 0
    try:
        while limit is None or ran < limit:
            with serialised(study):
                recover_dead_trials(study)
            states = [t.state for t in study.get_trials(deepcopy=False)]
            finished = sum(s in FINISHED for s in states)
            bar.set(finished)
            if finished >= budget or (
                queue_only and not {TrialState.WAITING, TrialState.RUNNING} & set(states)
            ):
                break
            if finished + states.count(TrialState.RUNNING) >= budget or (
                queue_only and TrialState.WAITING not in states
            ):
                time.sleep(WAIT_S)  # the last trials run in other workers: wait for them
                continue
            if _one_trial(study, objective, budget):
                ran += 1
    finally:
        bar.set(count_finished(study))
        bar.close()
    return ran


def _one_trial(study: optuna.Study, objective: Callable[[optuna.Trial], Any], budget: int) -> bool:
    """Ask for a trial, claim its place, evaluate it, tell the result (Optuna's ask-and-tell).

    Returns:
        False when the trial lost the race for the budget's last place (told as failed).
    """
    with serialised(study), warnings.catch_warnings():
        # Optuna warns that a heartbeat "is supposed to be used with Study.optimize": this
        # loop runs the heartbeat itself (:func:`.storage.heartbeat`).
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()  # pops an enqueued trial first
    trial.set_user_attr(WORKER_ATTR, worker_id())
    if not _claims_a_place(trial, budget):
        trial.set_user_attr(SURPLUS_ATTR, True)
        study.tell(trial, state=TrialState.FAIL)
        return False
    with heartbeat(study, trial):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return True
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
    study.tell(trial, values)
    return True


def enqueue_missing(
    study: optuna.Study, params_list: Sequence[dict[str, Any]], *, skip_running: bool = True
) -> int:
    """Enqueue every parameter set the study has not finished, queued or (optionally) running.

    Args:
        study: the study.
        params_list: trial parameters (see :func:`~spectune.tuner.space.config_params`).
        skip_running: count RUNNING trials as taken (another worker runs them); pass False
            to re-enqueue them, e.g. when their worker was killed.

    Returns:
        How many were enqueued now.
    """
    states = [*FINISHED, TrialState.RUNNING] if skip_running else list(FINISHED)
    seen = {_params_key(t.params) for t in study.get_trials(deepcopy=False, states=states)}
    seen |= {
        _params_key(t.system_attrs.get("fixed_params", {}))
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    }
    n = 0
    for params in params_list:
        key = _params_key(params)
        if key in seen:
            continue
        seen.add(key)
        study.enqueue_trial(params)
        n += 1
    return n


def run_queue(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    params_list: Sequence[dict[str, Any]],
    *,
    progress: bool | None = None,
    desc: str = "grid",
    limit: int | None = None,
) -> int:
    """Evaluate every parameter set once (``--exhaustive``), resumable and shareable.

    Enqueues what is missing and runs until the queue is empty; trials of dead workers are
    re-enqueued (:func:`recover_dead_trials`) and run too. ``limit``: as :func:`run`.

    Returns:
        The number of trials this process ran.
    """
    recover_dead_trials(study)
    if claim_setup(study):  # one worker enqueues the whole list ...
        enqueue_missing(study, params_list)
        study.set_user_attr(QUEUED_ATTR, True)
    else:  # ... the others wait for it (not for a worker that died enqueueing)
        deadline = time.monotonic() + QUEUE_WAIT_S
        while not study.user_attrs.get(QUEUED_ATTR) and time.monotonic() < deadline:
            time.sleep(WAIT_S)
        states = {t.state for t in study.get_trials(deepcopy=False)}
        if not {TrialState.WAITING, TrialState.RUNNING} & states:  # a resumed study
            with serialised(study):
                enqueue_missing(study, params_list)
    return _work(study, objective, len(params_list), progress, desc, queue_only=True, limit=limit)


def _params_key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((str(k), str(v)) for k, v in params.items()))
