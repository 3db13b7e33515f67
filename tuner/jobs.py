"""What a shared study computes (its *job*), so that any process can join it by name.

A study created by ``recommend`` or ``plan --grid`` records its job in the study's user
attributes (``spectune_job``): the kind, the input file (absolute path), the ``--set``
overrides and the settings that decide what is computed (seed, budget, fidelity,
objective). :mod:`.worker` reads it back by study name and runs trials until the study's
budget is spent, so ``spectune worker NAME --storage URL`` on another machine needs only
the storage URL and the same files at the same paths (a shared checkout or network file
system). A worker that finds the files changed is refused by the study's fingerprint
(:func:`~spectune.tuner.study.open_study`), naming both.

:class:`WorkerPool` holds local worker processes; search and capacity studies are handed a
:data:`Helpers` callable (``(study_name, storage_url) -> WorkerPool``, from
:func:`spectune.tuner.worker.local_helpers`) that starts them once the study exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna

from spectune.simulator.errors import InputError, SpectuneError

from . import study as st

__all__ = ["Helpers", "Job", "WorkerPool", "helping", "read_job"]

KINDS = ("recommend", "plan-grid")
Helpers = Callable[[str, str], "WorkerPool"]  # (study name, storage URL) -> started pool


@dataclass(frozen=True)
class Job:
    """What a study computes, enough for a worker to rebuild it."""

    kind: str  # "recommend" | "plan-grid"
    file: str  # the scenario or grid file, absolute
    overrides: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def to_attr(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": self.file,
            "overrides": list(self.overrides),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_attr(cls, d: dict[str, Any]) -> Job:
        return cls(
            kind=str(d["kind"]),
            file=str(d["file"]),
            overrides=tuple(d.get("overrides") or ()),
            settings=dict(d.get("settings") or {}),
        )


def read_job(storage_url: str, name: str) -> Job:
    """The job of study ``name`` in ``storage_url``.

    Raises:
        InputError: no such study (the studies present are listed), or a study spectune
            did not create.
    """
    st.quiet_optuna()
    storage = st.make_storage(storage_url)
    studies = [
        s.study_name
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if not s.study_name.startswith("spectune-claim:")
    ]
    if name not in studies:
        have = ", ".join(sorted(studies)) or "none"
        raise InputError(f"no study '{name}' in this storage (studies: {have})", source="--storage")
    study = optuna.load_study(study_name=name, storage=storage)
    raw = study.user_attrs.get(st.JOB_ATTR)
    if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
        raise InputError(
            f"study '{name}' was not created by spectune recommend or plan --grid; nothing "
            "tells a worker what to run",
            source="--storage",
        )
    return Job.from_attr(raw)


# ------------------------------------------------------------------------- local workers


class WorkerPool:
    """Local worker processes on one study; :meth:`join` waits and reports failures."""

    def __init__(self, procs: list[Any]):
        self.procs = procs

    def join(self) -> None:
        """Wait for every worker.

        Raises:
            SpectuneError: a worker exited with an error (the study holds what it finished).
        """
        for p in self.procs:
            p.join()
        bad = [p.exitcode for p in self.procs if p.exitcode]
        if bad:
            raise SpectuneError(
                f"{len(bad)} of {len(self.procs)} worker processes failed (exit codes "
                f"{', '.join(str(c) for c in bad)}); the study keeps every finished trial, "
                "rerun to resume"
            )

    def terminate(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join()


@contextmanager
def helping(helpers: Helpers | None, study_name: str, storage_url: str) -> Iterator[None]:
    """Local worker processes (``helpers``) on the study while the body works: joined
    after it (a failed worker raises), terminated if the body raises."""
    if helpers is None:
        yield
        return
    pool = helpers(study_name, storage_url)
    try:
        yield
    except BaseException:
        pool.terminate()
        raise
    pool.join()
