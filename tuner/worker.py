"""``spectune worker``: run a shared study's trials, and local worker processes.

:func:`work` joins a study by name (its job, :mod:`.jobs`) or by input file and runs
trials until the study's budget is spent. :func:`local_helpers` starts worker processes
on this machine (``multiprocessing`` with ``spawn``: each opens its own database
connections; nothing is shared but the storage): what ``recommend --workers N`` and
``plan --grid ... --workers N`` start beside themselves.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from pathlib import Path
from typing import Any

from spectune.simulator import load_scenario
from spectune.simulator.errors import InputError, SpectuneError
from spectune.simulator.loading import read_yaml

from . import study as st
from .capacity import GRID_SCHEMA, GridSettings, load_grid, run_grid_study
from .jobs import Helpers, Job, WorkerPool, read_job
from .search import SearchSettings, search_stage

__all__ = ["local_helpers", "spawn", "work"]


def work(
    target: str,
    storage_url: str,
    *,
    study_name: str | None = None,
    n_trials: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run trials of a study until its budget is spent (or ``n_trials`` ran here).

    Args:
        target: a study name in ``storage_url``, or a scenario / grid file: with
            ``study_name``, that study's settings with this copy of the file (a machine
            whose checkout lives elsewhere; the study's fingerprint refuses a file whose
            content differs); without, the study ``recommend`` / ``plan --grid`` would
            use with their defaults (created when missing).
        storage_url: journal file or database URL.
        study_name: see ``target``.
        n_trials: stop after this many trials in this process.
        progress: progress on stderr (default: when stderr is a terminal).

    Returns:
        ``{"study", "kind", "ran", "finished", "budget"}``.
    """
    name = study_name
    if Path(target).is_file():
        job = _job_for_file(Path(target))
        if study_name is not None:
            stored = read_job(storage_url, study_name)
            if stored.kind != job.kind:
                raise InputError(
                    f"study '{study_name}' is a {stored.kind} study, {target} is for {job.kind}",
                    source=target,
                )
            job = Job(stored.kind, job.file, stored.overrides, stored.settings)
    else:
        if study_name is not None:
            raise InputError("give a study name or --study-name, not both", source="--study-name")
        job = read_job(storage_url, target)
        name = target
    if job.kind == "recommend":
        rs = load_scenario(job.file, list(job.overrides))
        s = SearchSettings(
            storage=storage_url,
            study_name=name,
            progress=progress,
            scenario_file=job.file,
            overrides=job.overrides,
            worker_limit=n_trials,
            **job.settings,
        )
        stage = search_stage(rs, s)
        return {
            "study": stage.study_name,
            "kind": job.kind,
            "ran": stage.ran,
            "finished": st.count_finished(stage.study),
            "budget": stage.budget,
        }
    grid = load_grid(job.file)
    gs = GridSettings(storage=storage_url, study_name=name, progress=progress, **job.settings)
    out = run_grid_study(grid, gs, limit=n_trials)
    return {
        "study": out.study_name,
        "kind": job.kind,
        "ran": out.ran,
        "finished": len(out.points),
        "budget": len(grid.points),
    }


def _job_for_file(path: Path) -> Job:
    raw = read_yaml(path)
    kind = "plan-grid" if raw.get("schema") == GRID_SCHEMA else "recommend"
    return Job(kind=kind, file=str(path.resolve()))


def _child(target: str, storage_url: str, n_trials: int | None) -> None:
    try:
        work(target, storage_url, n_trials=n_trials, progress=False)
    except SpectuneError as e:  # one line, like the CLI
        print(f"spectune worker: {e}", file=sys.stderr)
        sys.exit(2)


def local_helpers(n: int) -> Helpers:
    """A :data:`~.jobs.Helpers` starting ``n`` local worker processes (none for n <= 0)."""

    def start(study_name: str, storage_url: str) -> WorkerPool:
        return spawn(study_name, storage_url, n)

    return start


def spawn(study_name: str, storage_url: str, n: int) -> WorkerPool:
    """Start ``n`` local worker processes on study ``study_name`` (see :func:`work`)."""
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_child, args=(study_name, storage_url, None), daemon=False)
        for _ in range(max(0, n))
    ]
    for p in procs:
        p.start()
    return WorkerPool(procs)
