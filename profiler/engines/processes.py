"""Child engine processes: start them so they can always be stopped, stop them for sure.

vLLM's server is a process tree (API server -> ``VLLM::EngineCore`` -> ``VLLM::Worker``,
plus a multiprocessing resource tracker). Killing only the top process leaves the engine
core and the worker running, re-parented to PID 1 (measured: still alive 15 s after a
SIGKILL of the API server). So the tree is started in its own session and process group
(:func:`spawn`), stopped as a group (:func:`stop_group`: SIGINT, then SIGTERM, then
SIGKILL, waiting between), and asked to die with its parent (``PR_SET_PDEATHSIG``: if
spectune itself is killed, the API server receives SIGTERM and shuts its children down).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
_ERROR_LINE = re.compile(r"\b\w*(Error|Exception)\b\W")
_PREFIX = re.compile(r"^\([^)]*\)\s*(\w+\s+[\d-]+\s+[\d:]+\s+\[[^\]]*\]\s*)?")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the group stop still applies


def spawn(cmd: Sequence[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group), output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def group_pids(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) == pgid:
                out.append(int(entry))
        except (ProcessLookupError, PermissionError):
            continue
    return sorted(out)


def descendants(pid: int) -> list[int]:
    """Processes below ``pid`` in the process tree (from /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return sorted(out)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Stop ``proc``'s whole process group: SIGINT (vLLM shuts down cleanly in < 1 s),
    SIGTERM after ``grace_s``, SIGKILL 5 s later; returns when no process of the group is
    left (or after the SIGKILL)."""
    pgid = proc.pid
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not group_pids(pgid):
            break
        _signal_group(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
            if not group_pids(pgid):
                break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound (someone listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def last_error_line(log_path: Path, max_bytes: int = 200_000) -> str | None:
    """The last line of a log that names an error (``XxxError: ...``), stripped of vLLM's
    ``(Process pid=N) LEVEL date [file:line]`` prefix; None if there is none."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if _ERROR_LINE.search(line) and "Traceback" not in line:
            return re.sub(
                r"^\([^)]*\)\s*(\w+\s+[\d-]+\s+[\d:]+\s+\[[^\]]*\]\s*)?", "", line
            ).strip()
    return None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so the
    ``finally`` / ``with`` blocks that stop engines run; the old handler is restored."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
