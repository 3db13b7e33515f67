"""Shared harness of the bad-input campaign (tests/app/test_bad_*.py).

Every case runs a command (in-process through :func:`spectune.cli.main`, or as a
subprocess with a timeout when it could hang) and checks the contract of DESIGN.md §3:
exit code 2, exactly one stderr line ``spectune: error: ...`` naming the file and field,
no traceback, and no input file changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from spectune.cli import main

REPO = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, str]:
    """Digest of every regular file under ``folder`` (what must stay unchanged)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def expect_error(
    capsys: pytest.CaptureFixture[str],
    argv: Sequence[str],
    needles: Sequence[str],
    folder: Path | None = None,
) -> str:
    """Run ``spectune ARGV`` in-process; assert the one-line exit-2 contract; return the line."""
    before = snapshot(folder) if folder is not None else None
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert code == 2, (code, cap.err, cap.out[-500:])
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    line = lines[0]
    assert line.startswith("spectune: error: "), line
    assert "Traceback" not in cap.err
    for n in needles:
        assert n in line, (n, line)
    if folder is not None:
        assert snapshot(folder) == before, "an input file was changed"
    return line


def run_subprocess(
    argv: Sequence[str], timeout: float = 90, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m spectune.cli ARGV`` with a timeout (a hang fails the test instead of
    stalling the suite); ``user="nobody"`` runs it without root's privileges."""
    cmd = [sys.executable, "-m", "spectune.cli", *map(str, argv)]
    if user is not None and os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env
    )


def assert_one_line(proc: subprocess.CompletedProcess[str], needles: Sequence[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
