"""``spectune worker``: join a shared study and run its trials until the budget is spent."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spectune.output import print_json
from spectune.simulator.errors import InputError
from spectune.tuner.storage import redact
from spectune.tuner.worker import work

EPILOG = """\
examples:
  # machine A starts the search (4 processes here) ...
  spectune recommend examples/azure-conv-h100.yaml --trials 200 --workers 4 \\
      --storage postgresql://spectune@db-host/studies --study-name conv-200
  # ... machines B, C join it until the 200 trials are done
  spectune worker conv-200 --storage postgresql://spectune@db-host/studies

  # a capacity grid, shared the same way
  spectune plan --grid examples/capacity-grid.yaml --storage sqlite:///grid.db
  spectune worker plan-grid-capacity-grid --storage sqlite:///grid.db --n-trials 5

A study made by `recommend` or `plan --grid` stores what it computes (the input file's
absolute path, --set overrides, seed, budget, fidelity), so a worker needs only the
storage and the study's name, and the same input files at the same paths (a shared
checkout or network file system; or pass your copy of the file with --study-name). A
worker whose files differ is refused, naming both.
The budget is the study's: with any number of workers exactly that many trials finish.
A worker killed mid-trial loses nothing: its trial is failed and run again (on this
machine at once; from other machines after the database heartbeat's grace period).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker",
        help="join a shared study (recommend or plan --grid) and run its trials",
        description="Run trials of a study shared through --storage until its budget is "
        "spent.\nThe result is read by the command that started the study (rerun it to print "
        "it).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "study",
        metavar="STUDY_OR_FILE",
        help="a study name in --storage, or the scenario / grid file itself (its study is "
        "created with the defaults of recommend / plan --grid when missing)",
    )
    p.add_argument(
        "--storage",
        required=True,
        help="journal file, or sqlite:///FILE / postgresql://user@host/db URL",
    )
    p.add_argument(
        "--study-name",
        default=None,
        help="with a file: join this study, reading the file from here (when this machine "
        "keeps its checkout at another path)",
    )
    p.add_argument(
        "--n-trials",
        type=int,
        default=None,
        help="stop after this many trials here (default: until the study's budget is spent)",
    )
    p.add_argument("--json", action="store_true", help="print what this worker did as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.n_trials is not None and args.n_trials <= 0:
        raise InputError(f"must be > 0, got {args.n_trials}", source="--n-trials")
    out = work(args.study, args.storage, study_name=args.study_name, n_trials=args.n_trials)
    if args.json:
        print_json({**out, "storage": redact(args.storage)})
    else:
        print(
            f"worker: study '{out['study']}' ({out['kind']}) in {redact(args.storage)}: "
            f"{out['ran']} trials run here, {out['finished']} of {out['budget']} finished",
            file=sys.stdout,
        )
    return 0
