"""Live runs of a vLLM validation: engine sessions, interleaved repeats, interference.

Order (start-ups cost tens of seconds, so an engine serves all its entries; drift is
spread by sweeps): the repeats are split over ``sweeps`` sweeps (repeat ``r`` runs in sweep
``r mod sweeps``); each sweep visits every engine configuration once, in matrix order on
even sweeps and reversed on odd ones, and a session starts the server, serves the
calibration run (:mod:`.vllm_calibration`; untimed warm-up when already kept), then the
sweep's repeats of its entries interleaved (A B C A B C), then stops the server.

Every scored run is watched (:class:`~.interference.RunMonitor`); a disturbed run is run
again, up to ``retries`` times, and keeps its flag if it stays disturbed. A server that
fails to start or dies mid-run marks the session's remaining runs failed (``kind:
failed`` rows, retried by a rerun); finished runs stay in ``runs.jsonl`` (:class:`~.runs.
RunLog`), so an interrupted validation resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from spectune.profiler.live import (
    EngineFailed,
    LiveEngine,
    LiveWorkload,
    PromptSource,
    build_workload,
)
from spectune.simulator.scenario import ResolvedScenario

from .interference import RunMonitor
from .matrix import Entry, Workloads
from .runs import RunLog, key_metrics
from .vllm_calibration import CalibrationStore
from .vllm_matrix import EngineBase, entry_scenario

RETRY_PAUSE_S = 5.0


def digest(tokens: list[int]) -> str:
    """A short hash of a request's output tokens (losslessness checks)."""
    return hashlib.sha1(bytes(str(tokens), "ascii")).hexdigest()[:12]


class EngineSessions:
    """Runs a matrix on engines, configuration by configuration (module docstring).

    Args:
        rs: the validation's scenario.
        base: settings every engine shares.
        wls: the workloads.
        prompts: prompt content.
        seed: the scored runs' seed (calibration runs use ``seed + 1``).
        log: finished runs.
        store: kept calibration runs.
        make_engine: builds the engine of a configuration (a :class:`~spectune.profiler.
            engines.vllm_server.VllmServer`).
        repeats, sweeps, retries: see the module docstring.
        tick: called with 1 after each finished run.
    """

    def __init__(
        self,
        rs: ResolvedScenario,
        base: EngineBase,
        wls: Workloads,
        prompts: PromptSource,
        seed: int,
        log: RunLog,
        store: CalibrationStore,
        make_engine: Callable[[Any], LiveEngine],
        *,
        repeats: int,
        sweeps: int = 1,
        retries: int = 2,
        tick: Callable[[int], None] | None = None,
    ):
        self.rs = rs
        self.base = base
        self.wls = wls
        self.prompts = prompts
        self.seed = seed
        self.log = log
        self.store = store
        self.make_engine = make_engine
        self.repeats = repeats
        self.sweeps = max(1, min(sweeps, repeats))
        self.retries = retries
        self.tick = tick
        self.best_probe = [float("inf")]
        self.notes: list[str] = []
        self.sessions: list[dict[str, Any]] = []

    def workload(self, e: Entry, seed: int) -> LiveWorkload:
        sc = entry_scenario(self.rs, self.wls, e, self.base.kv_cache_gib)
        return build_workload(sc, self.prompts, seed)

    def todo(self, groups: list[tuple[Any, list[Entry]]]) -> int:
        """Runs still to make (scored runs and calibration runs)."""
        runs = sum(
            1
            for _st, es in groups
            for e in es
            for r in range(self.repeats)
            if (e.id, r) not in self.log.done
        )
        return runs + sum(1 for st, _es in groups if not self.store.has(st.key()))

    def run(self, groups: list[tuple[Any, list[Entry]]]) -> None:
        """Every missing run of every group (module docstring)."""
        for sweep in range(self.sweeps):
            order = groups if sweep % 2 == 0 else list(reversed(groups))
            reps = [r for r in range(self.repeats) if r % self.sweeps == sweep]
            for settings, entries in order:
                todo = [(e, r) for r in reps for e in entries if (e.id, r) not in self.log.done]
                if not todo and self.store.has(settings.key()):
                    continue
                self._session(settings, entries, todo)

    def _session(
        self,
        settings: Any,
        entries: list[Entry],
        todo: list[tuple[Entry, int]],
        row_id: Callable[[Entry], str] | None = None,
    ) -> None:
        """One server: the calibration run (of ``entries[0]``'s configuration), then the
        runs ``todo`` (logged under ``row_id(entry)``, default the entry's id)."""
        engine = self.make_engine(settings)
        t0 = time.monotonic()
        info: dict[str, Any] = {"config": settings.label(), "runs": len(todo)}
        try:
            with engine:
                info.update(engine.info())
                self._calibrate(engine, settings, entries[0])
                for e, rep in todo:
                    row = self._live(engine, e, rep)
                    if row_id is not None:
                        row["id"] = row_id(e)
                    self.log.add(row)
                    if self.tick is not None:
                        self.tick(1)
        except EngineFailed as err:
            msg = str(err)
            info["error"] = msg
            self.notes.append(f"{settings.label()}: {msg}")
            for e, rep in todo:
                rid = row_id(e) if row_id is not None else e.id
                if (rid, rep) not in self.log.done:
                    self.log.add({"kind": "failed", "id": rid, "rep": rep, "error": msg})
        finally:
            info["session_s"] = round(time.monotonic() - t0, 1)
            self.sessions.append(info)

    def _calibrate(self, engine: LiveEngine, settings: Any, e: Entry) -> None:
        """The configuration's calibration run (kept once; else an untimed warm-up)."""
        cal = Entry("offline", e.drafter, k=e.k, max_num_seqs=e.max_num_seqs)
        res = engine.run(self.workload(cal, self.seed + 1))
        key = settings.key()
        if not self.store.has(key):
            self.store.save(key, e.drafter, e.k, e.max_num_seqs, res)
            if self.tick is not None:
                self.tick(1)

    def _live(self, engine: LiveEngine, e: Entry, rep: int) -> dict[str, Any]:
        """One scored run of ``e`` (re-run while disturbed, up to ``retries`` times)."""
        wl = self.workload(e, self.seed)
        attempts: list[dict[str, Any]] = []
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(RETRY_PAUSE_S)
            mon = RunMonitor(self.best_probe)
            mon.begin(engine.pids())
            t0 = time.perf_counter()
            res = engine.run(wl)
            wall = time.perf_counter() - t0
            sig = mon.end(engine.pids(), res.metrics["live"].get("fwd_cpu_share"))
            attempts.append(sig)
            if not sig["disturbed"]:
                break
        return {
            "kind": "live",
            "id": e.id,
            "rep": rep,
            "measured": key_metrics(res.metrics),
            "live": res.metrics["live"],
            "wall_s": wall,
            "load1": sig["load1"],
            "time": time.time(),
            "interference": sig,
            "disturbed": sig["disturbed"],
            "attempts": len(attempts),
            "earlier_attempts": attempts[:-1],
            "outputs": [digest(o) for o in res.outputs],
            "server": _server_summary(res.requests or []),
        }


def _server_summary(requests: list[dict[str, Any]]) -> dict[str, float]:
    """Medians of vLLM's own per-request figures (server-side TTFT, mean ITL, queue)."""
    import numpy as np

    out = {}
    for key in ("time_to_first_token_ms", "mean_itl_ms", "queue_time_ms"):
        vals = [r["server"].get(key) for r in requests if r.get("server")]
        vals = [v for v in vals if isinstance(v, int | float)]
        if vals:
            out[f"{key}_p50"] = float(np.median(vals))
    return out
