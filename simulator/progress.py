"""Progress of long work on stderr: a tqdm bar on a terminal, plain lines elsewhere.

A bar redraws in place; in a log file or a pipe every redraw is a line of its own (a
latency profile wrote ~1,500 of them). Off a terminal :class:`Progress` prints one line
per 10% of the work, and at most every ``every_s`` seconds a line for slower steps, e.g.
``latency: 150/1500 visits (10%), 42 s elapsed``, plus a final line.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Counts done out of ``total`` units of work and shows it.

    Call order: construct, then :meth:`update` / :meth:`set` as work finishes (``total``
    may grow), then :meth:`close` once (prints the final line off a terminal).

    Args:
        desc: label, e.g. ``latency``.
        total: units of work (may change later through ``total`` or :meth:`set`).
        unit: the unit's name, e.g. ``visit``.
        file: where to write (default stderr).
        every_s: off a terminal, the longest quiet time while work advances, seconds.
        enabled: False shows nothing; None: shown (a bar or lines).
        bar: True / False forces a bar / lines; None: a bar when ``file`` is a terminal.
    """

    def __init__(
        self,
        desc: str,
        total: int = 0,
        unit: str = "it",
        file: TextIO | None = None,
        every_s: float = 30.0,
        enabled: bool | None = None,
        bar: bool | None = None,
    ) -> None:
        self.desc, self.unit, self.total, self.n = desc, unit, int(total), 0
        self.file = file if file is not None else sys.stderr
        self.every_s = every_s
        self.enabled = enabled is not False
        self._t0 = self._last_t = time.monotonic()
        self._last_n = 0
        self._bar: Any = None
        isatty = getattr(self.file, "isatty", lambda: False)()
        if self.enabled and (bar if bar is not None else isatty):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, leave=False)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.set(self.n + n)

    def set(self, done: int, total: int | None = None) -> None:
        """``done`` units of ``total`` (unchanged when None) are done."""
        if total is not None:
            self.total = int(total)
        self.n = int(done)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.total, self._bar.n = self.total, self.n
            self._bar.refresh()
            return
        now = time.monotonic()
        step = max(1, self.total // 10) if self.total > 0 else None
        crossed = step is not None and self.n // step > self._last_n // step
        slow = self.n > self._last_n and now - self._last_t >= self.every_s
        if crossed or slow:
            self._line(now)

    def _line(self, now: float) -> None:
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total > 0 else ""
        of = f"/{self.total:,}" if self.total > 0 else ""
        self.file.write(
            f"{self.desc}: {self.n:,}{of} {self.unit}s{pct}, {now - self._t0:.0f} s elapsed\n"
        )
        self.file.flush()
        self._last_t, self._last_n = now, self.n

    def close(self) -> None:
        """Stop: remove the bar, or print the final line when the last one is stale."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.n != self._last_n:
            self._line(time.monotonic())
        self.enabled = False
