"""Optuna journal files as ``--storage``: checked before Optuna opens them.

Optuna's :class:`~optuna.storages.journal.JournalFileBackend` appends to whatever file it is
given and skips a last line without its newline when reading. So a file that is not a
journal would be appended to (data loss for the user's file), and a journal torn by a crash
mid-write would get its next record glued to the torn bytes. :func:`check_journal` refuses
the first untouched and repairs the second.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

from optuna.storages.journal._file import BaseJournalFileLock

from spectune.simulator.errors import InputError

SQLITE_MAGIC = b"SQLite format 3\x00"
JOURNAL_START = b'{"op_code"'  # Optuna writes each record's op_code first


def check_journal(path: Path, lock: BaseJournalFileLock) -> str | None:
    """Check an existing journal file before Optuna opens it; repair a torn last record.

    A crash mid-write leaves the last record without its newline (Optuna writes a record
    and its newline in one write): it is dropped (or, if it is whole, closed with its
    newline) and every complete record is kept. Optuna alone would skip the torn bytes on
    reading and then append the next record to them, corrupting both. A file that is not
    an Optuna journal (any complete line that is not a journal record; a database; a
    special file) is refused untouched: opening it would append to it.

    Args:
        path: the ``--storage`` file (may not exist yet).
        lock: the journal's own lock (another worker may be appending).

    Returns:
        What was repaired, in words, or None.

    Raises:
        InputError: the file is not a journal (nothing is written to it).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})", source="--storage") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a regular file", source="--storage")
    if st.st_size == 0 or _tail(path, _read(path)) is None:
        return None  # a journal whose last record is whole (or empty): nothing to repair
    lock.acquire()  # another worker may be appending: look again, and repair, under its lock
    try:
        data = _read(path)
        tail = _tail(path, data)
        if tail is None:
            return None
        kept = sum(1 for line in data.split(b"\n")[:-1] if line.strip())
        whole = False
        with contextlib.suppress(ValueError, TypeError):
            whole = "op_code" in json.loads(tail)
        if whole:
            with path.open("ab") as f:
                f.write(b"\n")
            return (
                "the last record had no newline (a crash mid-write); closed it, kept "
                f"{kept + 1} records"
            )
        os.truncate(path, len(data) - len(tail))
        return (
            f"dropped a partial last record ({len(tail)} bytes; a crash mid-write), "
            f"kept the {kept} complete records"
        )
    finally:
        lock.release()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})", source="--storage") from None


def _tail(path: Path, data: bytes) -> bytes | None:
    """The bytes after the last newline (None when there are none) of a journal's content.

    Raises:
        InputError: the content is not an Optuna journal.
    """
    refuse = f"{path} is not an Optuna journal file; left untouched (give a new file name"
    if data.startswith(SQLITE_MAGIC):
        raise InputError(
            f"{refuse}, or --storage sqlite:///{path} for an SQLite study database)",
            source="--storage",
        )
    *complete, tail = data.split(b"\n")
    for i, line in enumerate(complete):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            raise InputError(f"{refuse}; line {i + 1} is not a journal record)", source="--storage")
    if not tail:
        return None
    if not (tail.startswith(JOURNAL_START) or JOURNAL_START.startswith(tail)):
        raise InputError(f"{refuse}; its last line is not a journal record)", source="--storage")
    return tail
