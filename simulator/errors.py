"""The one error base class of spectune, and the input-error type the CLI turns into exit 2.

Expected failures (bad files, bad flags, impossible requests) raise a subclass of
:class:`SpectuneError`; the CLI prints ``spectune: error: <message>`` on one line and exits
with code 2. ``assert`` is kept for internal invariants only.
"""

from __future__ import annotations

from pathlib import Path


class SpectuneError(Exception):
    """Base class of every error spectune expects and reports without a traceback."""


class InputError(SpectuneError):
    """Bad user input: a file, a field of it, a flag.

    Args:
        message: what is wrong, e.g. ``must be > 0, got -3``.
        source: the file (or ``--set``/flag) the bad value came from.
        field: dotted path of the bad field, e.g. ``serving.max_num_seqs``.
    """

    def __init__(self, message: str, source: str | Path | None = None, field: str | None = None):
        self.message = message
        self.source = str(source) if source is not None else None
        self.field = field
        parts = [p for p in (self.source, field) if p]
        super().__init__(": ".join([*parts, message]))


class ExtrapolationError(SpectuneError):
    """A latency query fell outside a profile's grid where extrapolation is not allowed."""
