"""spectune's own engine behind the live-engine contract (:class:`~..live.LiveEngine`).

A thin wrapper over :func:`.serve.serve`, so the validation drives its own engine and vLLM
through one interface. The engine runs in this process: :meth:`NativeEngine.start` only
records that it may run (the models are loaded by the caller and shared between configs),
and every :meth:`NativeEngine.run` builds a fresh :class:`~.engine.SpecEngine` for the
configuration, as :func:`.serve.serve` always has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spectune.simulator.errors import SpectuneError
from spectune.simulator.scenario import ResolvedScenario

from ..live import LiveEngine, LiveResult, LiveWorkload
from .serve import serve


class NativeEngine(LiveEngine):
    """spectune's engine for one configuration.

    Args:
        rs: the resolved scenario of the configuration (spec, serving limits, SLOs; its
            workload is not used: :meth:`run` takes one).
        target: the target :class:`~spectune.profiler.runtime.model.DecoderLM`.
        drafter: builds a fresh drafter for each run (None: plain decoding).
        realtime: sleep for open-loop arrivals (False only in tests).
    """

    name = "native"

    def __init__(
        self,
        rs: ResolvedScenario,
        target: Any,
        drafter: Callable[[], Any] | None = None,
        realtime: bool = True,
    ):
        self.rs = rs
        self.target = target
        self.drafter = drafter
        self.realtime = realtime
        self._state = "built"

    def start(self) -> None:
        if self._state == "stopped":
            raise SpectuneError("the native engine was stopped; build another")
        self._state = "running"

    def run(
        self, workload: LiveWorkload, on_finish: Callable[[int], None] | None = None
    ) -> LiveResult:
        if self._state != "running":
            raise SpectuneError(f"run() on a {self._state} engine: call start() first")
        return serve(
            self.rs,
            self.target,
            self.drafter() if self.drafter is not None else None,
            None,
            workload=workload,
            realtime=self.realtime,
            on_finish=on_finish,
        )

    def stop(self) -> None:
        self._state = "stopped"

    def info(self) -> dict[str, Any]:
        import torch

        return {"engine": self.name, "torch": torch.__version__, "mode": "eager"}
