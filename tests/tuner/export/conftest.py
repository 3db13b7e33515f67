"""Session fixture: every emitted shape through the engines' own parsers, once.

The parsers are set up by ``tests/tuner/export/engines/setup.py`` (``./spectune.sh test``
runs it and sets ``SPECTUNE_REQUIRE_PARSERS=1``, under which a missing parser fails the
session instead of skipping). The five parser subprocesses run side by side.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from enginekit import RUNNERS, Case, cases, controls, parsers_missing, run_parser, shell_argv


@pytest.fixture(scope="session")
def engine_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    reason = parsers_missing()
    if reason is not None:
        if os.environ.get("SPECTUNE_REQUIRE_PARSERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    all_cases = cases()
    payloads: dict[tuple[str, str], list[dict]] = {key: [] for key in RUNNERS}
    for c in all_cases:
        key = (c.caps.engine, c.caps.version)
        if c.config is None or key not in RUNNERS:
            continue
        if c.caps.engine == "hf":
            payloads[key].append({"id": c.id, "code": c.config.text})
            continue
        c.cwd = str(tmp_path_factory.mktemp(c.id))
        c.argv = shell_argv(c.config.text, c.cwd)
        payloads[key].append({"id": c.id, "argv": c.argv, "cwd": c.cwd})
    for engine, version, cid, entry, _ in controls():
        payloads[(engine, version)].append({"id": cid, **entry})

    def run(key: tuple[str, str]) -> tuple[tuple[str, str], dict]:
        script, folders = RUNNERS[key]
        return key, run_parser(script, folders, payloads[key])

    with ThreadPoolExecutor(max_workers=len(RUNNERS)) as pool:
        results = dict(pool.map(run, list(RUNNERS)))
    by_id: dict[str, Case] = {c.id: c for c in all_cases}
    return {"cases": by_id, "results": results}
