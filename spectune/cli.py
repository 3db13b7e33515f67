"""The ``spectune`` command line.

Each subcommand lives in its own module under ``spectune/commands/`` and exposes
``register(subparsers)``; the module's parser sets ``func`` (``args -> int``). Commands
that need torch (``generate``, ``profile``) import it inside their handlers, so the rest of
the CLI runs on machines without torch.

Expected errors (:class:`~spectune.simulator.errors.SpectuneError`) print one line,
``spectune: error: ...``, and exit with code 2; argparse usage errors also exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from spectune import __version__
from spectune.output import check_args
from spectune.simulator.errors import SpectuneError

# Order here is the order in --help.
COMMANDS = (
    "simulate",
    "estimate",
    "recommend",
    "plan",
    "sweep",
    "roofline",
    "profile",
    "acceptance",
    "generate",
    "validate",
    "worker",
)

DESCRIPTION = """\
spectune: speculative-decoding simulator and auto-tuner.

The loop: `profile` measures latency and acceptance on this device -> `simulate` predicts
throughput and latency of one config under a workload -> `recommend` searches drafter,
draft length and tree shape -> `validate` checks predictions against live runs.
Quick answers without a scenario: `estimate` (closed form), `roofline` (GPU profiles).
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2), like every other input error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spectune",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"spectune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"spectune.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        check_args(args)
        return int(args.func(args) or 0)
    except SpectuneError as e:
        print(f"spectune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spectune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
