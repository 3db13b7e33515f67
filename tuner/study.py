"""Optuna study plumbing: storage, samplers, resumable and shareable runs.

- Storage: in memory by default; ``--storage`` takes a journal file path (Optuna's
  ``JournalStorage`` over ``JournalFileBackend``, safe for many processes on one machine
  through its file lock) or a database URL (``sqlite:///x.db``, ``postgresql://...``,
  Optuna's ``RDBStorage`` with a heartbeat so trials of a killed worker are marked failed).
  Anything unreachable or malformed raises :class:`InputError` (one line, exit 2). A journal
  file is checked before Optuna opens it (:func:`check_journal`): a torn last record (a
  crash mid-write) is dropped and the rest kept; a file that is not a journal is refused
  untouched.
- Studies are created with ``load_if_exists=True``: rerunning the same command resumes
  (no completed trial lost; a trial that was running when its process died stays RUNNING
  in a journal file and is simply not counted), and several workers pointed at one
  storage and study name share the work. ``--trials N`` is the study's total: a run stops
  once N trials are complete or pruned, counted across all workers
  (``MaxTrialsCallback``).
- Samplers: seeded TPE (multivariate, grouped for the conditional space, constant liar
  so parallel workers do not all sample the same point) by default; NSGA-II for the
  Pareto front.
- A study records a fingerprint of what it optimises (scenario, objective, fidelity); a
  run that finds a different fingerprint under the same name stops with an InputError
  instead of mixing two problems in one study.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from spectune.simulator.errors import InputError

from .journal import check_journal

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FINGERPRINT_ATTR = "spectune_fingerprint"


def quiet_optuna() -> None:
    """Silence Optuna's INFO logging and its experimental-feature warnings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_propagation()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def make_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """Open a storage for ``--storage``.

    Args:
        url: None (in memory), a journal file path, or a database URL with ``://``.

    Returns:
        The storage, or None for Optuna's in-memory default.

    Raises:
        InputError: a malformed or unreachable storage (one line naming it).
    """
    if url is None or url == "":
        return None
    if "://" in url:
        return _rdb_storage(url)
    path = Path(url.removeprefix("journal:"))
    if path.is_dir():
        raise InputError("is a folder; give a journal file path", source="--storage")
    if not path.parent.exists():
        raise InputError(f"folder {path.parent} does not exist", source="--storage")
    from optuna.storages.journal import JournalFileBackend

    note = check_journal(path)
    if note:
        print(f"spectune: warning: --storage {path}: {note}", file=sys.stderr)
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except json.JSONDecodeError:
        raise InputError(f"{path} is not an Optuna journal file", source="--storage") from None
    except (OSError, ValueError) as e:
        raise InputError(f"cannot open journal file {path}: {e}", source="--storage") from None


def _rdb_storage(url: str) -> optuna.storages.BaseStorage:
    scheme = url.split("://", 1)[0].lower()
    if not scheme or not scheme.replace("+", "").isalnum():
        raise InputError(f"not a storage URL: {url!r}", source="--storage")
    quiet_optuna()  # heartbeat_interval is "experimental": no warning for the user
    try:
        # A heartbeat lets Optuna mark the running trial of a killed worker as failed.
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=30,
            grace_period=120,
            engine_kwargs={"pool_pre_ping": True},
        )
    except ModuleNotFoundError as e:
        raise InputError(
            f"cannot open {scheme} storage: the database driver '{e.name}' is not installed",
            source="--storage",
        ) from None
    except Exception as e:  # sqlalchemy raises many types; all mean "cannot use this URL"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"cannot open {_redact(url)}: {reason[:200]}", source="--storage"
        ) from None


def _redact(url: str) -> str:
    """The URL without a password."""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        cred, _, host = rest.rpartition("@")
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


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
) -> optuna.Study:
    """Create or load (``load_if_exists=True``) a study and check its fingerprint.

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
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
    elif stored != fingerprint:
        raise InputError(
            f"study '{name}' in this storage was created for another scenario, objective or "
            "search budget; pass a new --study-name",
            source="--storage",
        )
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise InputError(f"study '{name}' has other directions", source="--storage")
    return study


def count_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    n_trials: int,
    *,
    progress: bool | None = None,
    desc: str = "search",
) -> int:
    """Run trials until the study holds ``n_trials`` finished ones (all workers together).

    Args:
        study: the study (possibly shared with other processes).
        objective: the trial function.
        n_trials: total finished trials wanted.
        progress: show a tqdm bar on stderr; default: when stderr is a terminal.
        desc: the bar's label.

    Returns:
        The number of trials this process ran.
    """
    remaining = n_trials - count_finished(study)
    if remaining <= 0:
        return 0
    return _optimize(study, objective, remaining, n_trials, progress, desc, queue_only=False)


def _optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    n_run: int,
    total: int,
    progress: bool | None,
    desc: str,
    *,
    queue_only: bool,
) -> int:
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(
            total=total, initial=count_finished(study), desc=desc, file=sys.stderr, leave=False
        )
    ran = 0

    def tick(st: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        nonlocal ran
        ran += 1
        if bar is not None:
            bar.n = min(total, count_finished(st))
            bar.refresh()
        if queue_only and not st.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            st.stop()  # the queue is empty: never let the sampler invent a point

    callbacks = [tick]
    if not queue_only:
        callbacks.append(optuna.study.MaxTrialsCallback(total, states=FINISHED))
    logging.getLogger("optuna").setLevel(logging.WARNING)
    try:
        study.optimize(
            objective,
            n_trials=n_run,
            callbacks=callbacks,
            gc_after_trial=False,
            show_progress_bar=False,
        )
    finally:
        if bar is not None:
            bar.close()
    return ran


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
) -> int:
    """Evaluate every parameter set once (``--exhaustive``), resumable and shareable.

    Enqueues what is missing, runs until the queue is empty, then re-enqueues sets whose
    only trial is stuck RUNNING (its worker died) and runs those too.

    Returns:
        The number of trials this process ran.
    """
    total = len(params_list)
    ran = 0
    for skip_running in (True, False):
        enqueue_missing(study, params_list, skip_running=skip_running)
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        if waiting == 0:
            continue
        ran += _optimize(study, objective, waiting, total, progress, desc, queue_only=True)
    return ran


def _params_key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((str(k), str(v)) for k, v in params.items()))
