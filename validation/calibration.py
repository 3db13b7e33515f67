"""Host-overhead calibration runs of a validation, interleaved with the scored live runs.

The overheads (:mod:`.overhead`) are fitted on *calibration* runs: offline runs on their
own seed (other requests and prompts than the scored runs) at several batch caps and
draft shapes. Live speed on a shared machine drifts by tens of percent over minutes, and
an overhead is what is left of a step after the profiled forwards are taken out, so
calibration runs made at another moment than the profile passes and the scored runs would
carry that drift into every prediction (measured: one block of calibration runs made a
minute after the matrix fitted a drafter base overhead of 1.03 ms, against 0.39 ms when
run right after it). So the calibration runs are spread over the live repeats, as the
profile passes are: up to :data:`MAX_ROUNDS` rounds, each spread over one repeat's
entries. Each run's step log is kept (``<report>/calibration/*.npz``), so an interrupted
validation resumes and a finished one is re-fitted without running anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spectune.profiler.live import StepLog
from spectune.simulator.api import resolve_tree

from .matrix import Entry
from .overhead import OverheadProfile, fit_overheads, live_engine_model
from .runs import Runner

CALIBRATION_K = 3
CALIBRATION_TREE = (6, 3)
MAX_ROUNDS = 3


def calibration_entries(rs: Any) -> list[Entry]:
    """Offline runs the overheads are fitted on: plain decoding at caps 1, 4, 8, 16 and each
    of the scenario's drafters (the tuner may pick any) with a chain of 3 at caps 1, 4, 16,
    a chain of 1 and (with ranked acceptance) a 6-node tree at caps 4 and 16: shapes with
    other numbers of passes."""
    out = [Entry("offline", "none", max_num_seqs=m) for m in (1, 4, 8, 16)]
    for d in rs.drafters:
        out += [Entry("offline", d, k=CALIBRATION_K, max_num_seqs=m) for m in (1, 4, 16)]
        out += [Entry("offline", d, k=1, max_num_seqs=m) for m in (4, 16)]
        if rs.drafters[d].acceptance.ranked is not None:  # a tree is built from it
            out += [Entry("offline", d, tree=CALIBRATION_TREE, max_num_seqs=m) for m in (4, 16)]
    return out


def calibration_rounds(repeats: int, max_rounds: int = MAX_ROUNDS) -> list[int]:
    """The live repeats a calibration round is spread over: up to ``max_rounds``, first,
    last and evenly between."""
    n = min(repeats, max_rounds)
    if n <= 1:
        return [0]
    return sorted({round(j * (repeats - 1) / (n - 1)) for j in range(n)})


class CalibrationRuns:
    """Calibration runs spread over the live repeats (module docstring).

    Args:
        runner: the validation's live runner.
        report_dir: report folder (runs go to ``calibration/``).
        seed: the scored runs' seed (calibration runs use ``seed + 1``).
        key: identity of the live runs (:func:`~.validation.fingerprint`); runs kept under
            another key are discarded.
        repeats: live repeats of the matrix.
        max_rounds: calibration rounds at most.
    """

    def __init__(
        self,
        runner: Runner,
        report_dir: Path,
        seed: int,
        key: str,
        repeats: int,
        max_rounds: int = MAX_ROUNDS,
    ):
        self.runner = runner
        self.seed = seed
        self.entries = calibration_entries(runner.rs)
        self.rounds = calibration_rounds(repeats, max_rounds)
        self.folder = report_dir / "calibration"
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = self.folder / "key.json"
        if not stamp.is_file() or json.loads(stamp.read_text()).get("key") != key:
            for old in self.folder.glob("*.npz"):
                old.unlink()
            stamp.write_text(json.dumps({"key": key}))

    @property
    def total(self) -> int:
        return len(self.rounds) * len(self.entries)

    def done(self) -> int:
        return sum(
            1 for r in range(len(self.rounds)) for e in self.entries if self._path(e, r).is_file()
        )

    def _path(self, e: Entry, round_: int) -> Path:
        return self.folder / f"{e.id.replace('/', '__')}__r{round_}.npz"

    def _run(self, e: Entry, round_: int, tick: Callable[[int], None] | None) -> None:
        path = self._path(e, round_)
        if path.is_file():
            return
        res = self.runner.serve(e, self.seed + 1)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **res.steps.arrays())
        tmp.replace(path)
        if tick is not None:
            tick(1)

    def before_run(
        self, rep: int, index: int, count: int, tick: Callable[[int], None] | None = None
    ) -> None:
        """Hook for the live loop: in a calibration repeat, the calibration runs whose
        share of the repeat starts at live entry ``index`` of ``count``."""
        if rep not in self.rounds:
            return
        round_ = self.rounds.index(rep)
        n = len(self.entries)
        for j, e in enumerate(self.entries):
            if j * count // n == index:
                self._run(e, round_, tick)

    def finish(self, tick: Callable[[int], None] | None = None) -> None:
        """Run whatever calibration run is still missing (e.g. an ``--only`` subset)."""
        for r in range(len(self.rounds)):
            for e in self.entries:
                self._run(e, r, tick)

    def fit(self, rs: Any) -> OverheadProfile:
        """Fit the overheads on every kept run; ``rs`` = the validation's scenario (its
        latency profiles), priced with the live engine's rules."""
        plain: list[StepLog] = []
        spec: dict[str, list[tuple[StepLog, Any]]] = {}
        for r in range(len(self.rounds)):
            for e in self.entries:
                with np.load(self._path(e, r)) as z:
                    log = StepLog(**{k: z[k].tolist() for k in z.files})
                if e.drafter == "none":
                    plain.append(log)
                else:
                    tree = resolve_tree(self.runner.scenario(e))
                    spec.setdefault(e.drafter, []).append((log, tree))
        how = (
            f"calibration: {len(self.entries)} offline runs x {len(self.rounds)} rounds spread "
            f"over the live repeats, seed {self.seed + 1} (the scored runs use seed "
            f"{self.seed}); plain decoding at max_num_seqs 1/4/8/16, each drafter k = "
            f"{CALIBRATION_K} at 1/4/16, k = 1 and tree {CALIBRATION_TREE[0]}/"
            f"{CALIBRATION_TREE[1]} at 4/16"
        )
        return fit_overheads(plain, spec, live_engine_model(rs), how)
