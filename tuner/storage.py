"""Where Optuna studies live: ``--storage`` in memory, a journal file, or a database URL.

- A **journal file** (Optuna's ``JournalStorage`` over ``JournalFileBackend``) serves many
  worker processes on one machine. Its lock is :class:`FlockLock`, an ``flock(2)`` on a
  ``<journal>.lock`` file: the kernel releases it when its holder dies, so a worker killed
  with SIGKILL while appending never stalls the others (Optuna's own symlink and open-file
  locks wait out a 30 s grace period, then warn). Before Optuna opens the file it is
  checked (:func:`~.journal.check_journal`): a torn last record is dropped, a file that is
  not a journal is refused untouched.
- A **database URL** (``sqlite:///x.db``, ``postgresql://user@host/db``: Optuna's
  ``RDBStorage`` over SQLAlchemy; PostgreSQL needs the ``postgres`` extra, psycopg 3)
  serves workers on many machines. It runs with a heartbeat: a trial whose worker stops
  beating for ``grace_period_s`` is failed and retried by the next worker
  (:mod:`.study`). Workers that create the schema of a new database at the same moment
  race on Alembic's version table; creation is retried until one has made it. An
  unreachable server fails within ``CONNECT_TIMEOUT_S`` with one line (no hang).

Every failure is an :class:`~spectune.simulator.errors.InputError` naming ``--storage``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages.journal._file import BaseJournalFileLock

from spectune.simulator.errors import InputError

from .journal import check_journal

HEARTBEAT_S = 10  # a worker records it is alive this often (RDB storages)
GRACE_PERIOD_S = 60  # ... and is taken for dead after this long without a beat
CONNECT_TIMEOUT_S = 5  # to reach a database server
CREATE_RETRY_S = 20.0  # how long concurrent schema creation is retried
MAX_RETRY = 3  # a trial whose worker died is re-run up to this many times
# Re-enqueues the parameters of a trial failed because its worker died (heartbeat or, for
# journals, a dead process id: :func:`spectune.tuner.study.recover_dead_trials`).
with warnings.catch_warnings():  # the callback class is marked experimental
    warnings.simplefilter("ignore")
    RETRY = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def quiet_optuna() -> None:
    """Silence Optuna's INFO logging and its experimental-feature warnings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_propagation()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


class FlockLock(BaseJournalFileLock):
    """An exclusive ``flock(2)`` on ``<journal>.lock`` (blocking; released on process exit).

    Call order (Optuna's): ``acquire()`` then ``release()``, around every append and every
    read of the journal. The lock file is left in place (removing it would let two
    processes lock two different inodes).
    """

    def __init__(self, journal: str | Path) -> None:
        self._path = f"{journal}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


@contextlib.contextmanager
def serialised(study: optuna.Study) -> Iterator[None]:
    """Hold the storage's cross-process lock where Optuna's own guard is not enough.

    SQLite ignores ``SELECT ... FOR UPDATE``, so two workers can pop the same enqueued trial
    or fail the same dead one; on an SQLite storage this takes an ``flock`` on
    ``<database>.lock``. Journal files and server databases need nothing: a no-op there.
    """
    storage = study._storage  # Optuna has no public accessor
    storage = getattr(storage, "_backend", storage)  # RDBStorage comes wrapped in a cache
    url = getattr(storage, "url", "")
    if not (isinstance(url, str) and url.startswith("sqlite:///")):
        yield
        return
    lock = FlockLock(url.removeprefix("sqlite:///"))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """While a trial runs, record that its worker is alive (database storages with a
    heartbeat; nothing otherwise), and first fail the trials of workers that stopped
    beating (Optuna's ``fail_stale_trials``, which re-enqueues them through :data:`RETRY`)."""
    storage = study._storage
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval:
        yield
        return
    optuna.storages.fail_stale_trials(study)
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="spectune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def make_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """Open a storage for ``--storage``.

    Args:
        url: None (in memory), a journal file path (``journal:`` prefix optional), or a
            database URL with ``://``.

    Returns:
        The storage, or None for Optuna's in-memory default.

    Raises:
        InputError: a malformed or unreachable storage (one line naming it).
    """
    if url is None or url == "":
        return None
    if "://" in url:
        return _rdb_storage(url)
    return _journal_storage(Path(url.removeprefix("journal:")))


def _journal_storage(path: Path) -> optuna.storages.BaseStorage:
    if path.is_dir():
        raise InputError("is a folder; give a journal file path", source="--storage")
    if not path.parent.exists():
        raise InputError(f"folder {path.parent} does not exist", source="--storage")
    from optuna.storages.journal import JournalFileBackend

    note = check_journal(path, FlockLock(path))
    if note:
        print(f"spectune: warning: --storage {path}: {note}", file=sys.stderr)
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), FlockLock(path)))
    except json.JSONDecodeError:
        raise InputError(f"{path} is not an Optuna journal file", source="--storage") from None
    except (OSError, ValueError) as e:
        raise InputError(f"cannot open journal file {path}: {e}", source="--storage") from None


def _rdb_storage(url: str) -> optuna.storages.BaseStorage:
    scheme = url.split("://", 1)[0].lower()
    if not scheme or not scheme.replace("+", "").isalnum():
        raise InputError(f"not a storage URL: {url!r}", source="--storage")
    quiet_optuna()  # heartbeat_interval is "experimental": no warning for the user
    kwargs: dict = {"pool_pre_ping": True}
    if scheme.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    elif scheme.startswith("sqlite"):
        # Several workers write one file: wait for its lock instead of failing at once.
        kwargs["connect_args"] = {"timeout": 30}
    no_driver = f"cannot open {scheme} storage: its database driver is not installed" + (
        " (pip install 'spectune[postgres]')" if scheme.startswith("postgres") else ""
    )
    deadline = time.monotonic() + CREATE_RETRY_S
    while True:
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_PERIOD_S,
                heartbeat_stale_trial_callback=RETRY,
                engine_kwargs=kwargs,
            )
        except ModuleNotFoundError:
            raise InputError(no_driver, source="--storage") from None
        except Exception as e:  # sqlalchemy raises many types; all mean "cannot use this URL"
            if "failed to import db access module" in str(e).lower():
                raise InputError(
                    f"cannot open {scheme} storage: its database driver is not installed"
                    + (
                        " (pip install 'spectune[postgres]')"
                        if scheme.startswith("postgres")
                        else ""
                    ),
                    source="--storage",
                ) from None
            if _is_creation_race(e) and time.monotonic() < deadline:
                time.sleep(0.2)  # another worker is creating the schema: try again
                continue
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(
                f"cannot open {redact(url)}: {reason[:200]}", source="--storage"
            ) from None


def _is_creation_race(e: Exception) -> bool:
    """Two workers creating one new database's tables at once (or SQLite's file lock)."""
    text = str(e).lower()
    return any(
        s in text
        for s in (
            "alembic_version",
            "unique constraint",
            "duplicate key",
            "already exists",
            "database is locked",
        )
    )


def redact(url: str) -> str:
    """The URL without a password."""
    scheme, _, rest = url.partition("://")
    cred, at, host = rest.rpartition("@")
    if at and ":" in cred:
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return url
