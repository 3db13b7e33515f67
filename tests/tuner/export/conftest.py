"""Every emitted shape through the engines' own parsers, once per session.

The parsers are set up by ``tests/tuner/export/engines/setup.py`` (``./spectune.sh test``
runs it and sets ``SPECTUNE_REQUIRE_PARSERS=1``, under which a missing parser fails the
session instead of skipping). When collection selects any test here, the five parser
subprocesses start at once, side by side and beside the rest of the suite (they load
engines for minutes, the suite runs in one process); the ``engine_runs`` fixture waits for
them.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest
from enginekit import RUNNERS, Case, ParserRun, cases, controls, parsers_missing, shell_argv

_STARTED: dict[str, Any] = {}


def _start() -> None:
    """Emit every case, run the pastes through the shell, start the parsers."""
    if _STARTED or parsers_missing() is not None:
        return
    all_cases = cases()
    payloads: dict[tuple[str, str], list[dict]] = {key: [] for key in RUNNERS}
    workdir = tempfile.mkdtemp(prefix="spectune-engines-")
    for c in all_cases:
        key = (c.caps.engine, c.caps.version)
        if c.config is None or key not in RUNNERS:
            continue
        if c.caps.engine == "hf":
            payloads[key].append({"id": c.id, "code": c.config.text})
            continue
        c.cwd = tempfile.mkdtemp(prefix=c.id + "-", dir=workdir)
        c.argv = shell_argv(c.config.text, c.cwd)
        payloads[key].append({"id": c.id, "argv": c.argv, "cwd": c.cwd})
    for engine, version, cid, entry, _ in controls():
        payloads[(engine, version)].append({"id": cid, **entry})
    _STARTED["cases"] = {c.id: c for c in all_cases}
    _STARTED["runs"] = {key: ParserRun(*RUNNERS[key], payloads[key]) for key in RUNNERS}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("engine_runs" in getattr(item, "fixturenames", ()) for item in items):
        _start()


@pytest.fixture(scope="session")
def engine_runs() -> dict[str, Any]:
    reason = parsers_missing()
    if reason is not None:
        if os.environ.get("SPECTUNE_REQUIRE_PARSERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    _start()
    results = {key: run.result() for key, run in _STARTED["runs"].items()}
    cases_by_id: dict[str, Case] = _STARTED["cases"]
    return {"cases": cases_by_id, "results": results}
