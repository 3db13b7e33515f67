"""Console entry point: ``spectune`` -> :func:`spectune.tuner.cli.main`."""

from __future__ import annotations

from spectune.tuner.cli import main

__all__ = ["main"]
