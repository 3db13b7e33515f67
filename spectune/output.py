"""Small output helpers shared by the CLI commands: JSON, aligned tables, scenario flags."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spectune.simulator.errors import InputError


def add_scenario_args(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """The arguments every command that reads a scenario takes (``optional``: the
    scenario may be left out, when another flag names the input)."""
    p.add_argument(
        "scenario",
        nargs="?" if optional else None,
        help="scenario YAML (schema spectune/scenario/v1)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario field, validated like the file "
        "(e.g. --set spec.num_spec_tokens=0 --set workload.num_requests=500); repeatable",
    )


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return _clean(obj.item())
    return obj


def print_json(obj: Any) -> None:
    """Print strict JSON (NaN/inf become null) to stdout."""
    json.dump(_clean(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "-"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** (-digits)):
            return f"{x:.{digits}g}"
        return f"{x:,.{digits}f}" if abs(x) < 1000 else f"{x:,.1f}"
    return str(x)


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], digits: int = 3) -> str:
    """An aligned plain-text table; numbers right-aligned."""
    raw_rows = [list(r) for r in rows]
    body = [[fmt(c, digits) for c in r] for r in raw_rows]
    cols = list(zip(list(headers), *body, strict=True)) if body else [[h] for h in headers]
    widths = [max(len(s) for s in col) for col in cols]

    def line(cells: Sequence[str], raw: Sequence[Any] | None) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            num = raw is not None and isinstance(raw[i], int | float)
            out.append(c.rjust(w) if num else c.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line(list(headers), None), "  ".join("-" * w for w in widths)]
    lines += [line(b, r) for b, r in zip(body, raw_rows, strict=True)]
    return "\n".join(lines)


def check_output_path(path: str | Path, flag: str, folder: bool = False) -> None:
    """Fail now, not after minutes of work, if ``path`` cannot be written.

    A file path must not be a folder, FIFO or socket (a FIFO blocks the write until a
    reader comes); a folder path must not be a file; the nearest existing folder must
    take a new file (probed with a temporary file there, removed at once: permission bits
    do not tell for root or a read-only mount). Nothing at ``path`` is created or changed.

    Raises:
        InputError: naming the flag and why.
    """
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise InputError(f"{p}: cannot use ({e.strerror})", field=flag) from None
    if st is not None:
        if folder and not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{p} is a file; give a folder", field=flag)
        if not folder and stat.S_ISDIR(st.st_mode):
            raise InputError(f"{p} is a folder; give a file path", field=flag)
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            raise InputError(f"{p} is a FIFO or socket; give a regular file", field=flag)
        if not folder and not stat.S_ISREG(st.st_mode):
            return  # a device such as /dev/null
    probe_dir = p if folder and st is not None else p.parent
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise InputError(f"cannot write {p}: {probe_dir} is not a folder", field=flag)
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".spectune-probe-"):
            pass
    except OSError as e:
        raise InputError(
            f"cannot write {p}: folder {probe_dir} is not writable ({e.strerror})", field=flag
        ) from None
    if st is not None and not folder and not os.access(p, os.W_OK):
        raise InputError(f"cannot write {p}: permission denied", field=flag)


# Flags that name something a command writes: (argparse dest, flag, is a folder).
OUTPUT_FLAGS = (
    ("out", "--out", False),
    ("plot", "--plot", False),
    ("report", "--report", True),
    ("out_dir", "--out-dir", True),
)


def check_args(args: argparse.Namespace) -> None:
    """Checks every command shares, run before the command starts its work: seeds are
    >= 0 (numpy's seed sequences take no negative entropy) and output paths writable
    (:func:`check_output_path`; a command marks a folder-valued ``--out`` with
    ``set_defaults(out_is_folder=True)``)."""
    seed = getattr(args, "seed", None)
    if isinstance(seed, int) and not 0 <= seed < 2**63:
        raise InputError(f"must be in 0..2^63-1, got {seed}", field="--seed")
    for dest, flag, folder in OUTPUT_FLAGS:
        value = getattr(args, dest, None)
        if isinstance(value, str) and value:
            is_folder = folder or (dest == "out" and getattr(args, "out_is_folder", False))
            check_output_path(value, flag, folder=is_folder)


def user_doc(doc: str | None) -> str:
    """A command module's docstring as ``--help`` shows it: Sphinx markup dropped
    (````x```` -> x, ``:class:`a.b.C``` -> C) and the paragraphs meant for developers (those
    about where torch is imported) left out."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([\w]+)`", r"\1", doc or "")
    text = text.replace("``", "")
    paras = [p for p in text.strip().split("\n\n") if not p.lstrip().startswith("torch ")]
    return "\n\n".join(paras) + "\n"
