"""vLLM's offline engine (the ``LLM`` class) as a live engine (:class:`VllmOffline`).

The engine core and its worker run in subprocesses that vLLM spawns (so a script using
this adapter needs the ``if __name__ == "__main__":`` guard, as vLLM does); this process
is the front end. :meth:`VllmOffline.run` drives ``LLM.llm_engine`` step by step: it adds
each request when it is due (offline: all at once; open loop: at its arrival time;
closed loop: when a client's previous request finishes), calls ``step()`` while requests
are unfinished, and times first and last tokens as the outputs come back (delta outputs).
Per-step timings come from the same probe as the server's; spec-decode counters from the
in-process Prometheus registry (``get_metrics``); per-request spec-decode arrays from each
finished request's ``spec_decode_metrics``. The result is built exactly as the server
adapter builds its own (:func:`.vllm_server.build_result`).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spectune.profiler.live import EngineFailed, LiveResult, LiveWorkload
from spectune.simulator.schema import Slo

from . import processes
from .vllm_client import RequestRecord
from .vllm_config import VllmSettings, check_model_dir, require_vllm
from .vllm_probe import ENV_LOG
from .vllm_server import VllmEngine, build_result, counter_delta
from .vllm_steps import read_steps
from .vllm_widths import ENV_WIDTH


class VllmOffline(VllmEngine):
    """vLLM's ``LLM`` engine for one configuration (module docstring).

    Args:
        settings: the engine configuration.
        work_dir: where the step log and the width file go.
        slo: SLOs for the metrics of each run.
    """

    name = "vllm-offline"

    def __init__(self, settings: VllmSettings, work_dir: str | Path, *, slo: Slo | None = None):
        self.settings = settings
        self.work_dir = Path(work_dir)
        self.slo = slo or Slo()
        self.llm: Any = None
        self.version: str | None = None
        self.startup_s: float | None = None
        key = settings.key()
        self.step_log = self.work_dir / f"vllm-offline-{key}.steps"
        self.width_file = self.work_dir / f"vllm-offline-{key}.width"

    def start(self) -> None:
        if self.llm is not None:
            return
        self.version = require_vllm()
        check_model_dir(self.settings.model)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.step_log.unlink(missing_ok=True)
        # Read by vLLM's worker process, which inherits this environment at spawn.
        if self.settings.probe:
            os.environ[ENV_LOG] = str(self.step_log)
        os.environ[ENV_WIDTH] = str(self.width_file)
        from vllm import LLM

        t0 = time.monotonic()
        try:
            self.llm = LLM(**self.settings.engine_kwargs())
        except Exception as e:  # vLLM raises many kinds at start-up; report its last line
            last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise EngineFailed(f"vLLM's offline engine failed to start: {last}") from None
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        if self.llm is None:
            return
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None

    def pids(self) -> list[int]:
        return [os.getpid(), *processes.descendants(os.getpid())]

    def counters(self) -> dict[str, Any]:
        from vllm.v1.metrics.reader import Counter, Vector

        out: dict[str, Any] = {}
        for m in self.llm.get_metrics():
            if not m.name.startswith("vllm:spec_decode"):
                continue
            if isinstance(m, Counter):
                out[m.name] = out.get(m.name, 0.0) + float(m.value)
            elif isinstance(m, Vector):
                out[m.name] = [float(x) for x in m.values]
        return out

    def run(
        self, workload: LiveWorkload, on_finish: Callable[[int], None] | None = None
    ) -> LiveResult:
        if self.llm is None:
            raise EngineFailed("run() on an engine that is not running: call start() first")
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        req = workload.requests
        n = req.num_requests
        outs = req.output_tokens.tolist()
        recs = [RequestRecord() for _ in range(n)]
        offset = self.step_log.stat().st_size if self.step_log.is_file() else 0
        before = self.counters()
        times = None if req.arrival_s is None else req.arrival_s.tolist()
        pending: deque[int] = deque(range(n))
        clients = min(req.concurrency or 1, n) if times is None else 0
        t0 = time.monotonic()

        def send(i: int) -> None:
            sp = SamplingParams(
                temperature=0.0,
                max_tokens=int(outs[i]),
                ignore_eos=True,
                detokenize=False,
                output_kind=RequestOutputKind.DELTA,
            )
            prompt = TokensPrompt(prompt_token_ids=workload.prompts[i].tolist())
            recs[i].send_s = time.monotonic()
            engine.add_request(str(i), prompt, sp)

        for _ in range(clients):
            send(pending.popleft())
        done = 0
        try:
            while done < n:
                now = time.monotonic() - t0
                while times is not None and pending and times[pending[0]] <= now:
                    send(pending.popleft())
                if not engine.has_unfinished_requests():
                    if times is None or not pending:
                        raise EngineFailed("the offline engine went idle with requests left")
                    time.sleep(max(0.0, times[pending[0]] - (time.monotonic() - t0)))
                    continue
                for out in engine.step():
                    i = int(out.request_id)
                    toks = out.outputs[0].token_ids
                    if toks:
                        stamp = time.monotonic()
                        if not recs[i].tokens:
                            recs[i].first_s = stamp
                        recs[i].tokens.extend(int(t) for t in toks)
                        recs[i].finish_s = stamp
                        recs[i].chunks += 1
                    if out.finished:
                        done += 1
                        sd = getattr(out.outputs[0], "spec_decode_metrics", None)
                        recs[i].metrics = {"speculative_decoding": sd.to_dict()} if sd else {}
                        recs[i].usage = {"prompt_tokens": len(workload.prompts[i])}
                        if on_finish is not None:
                            on_finish(1)
                        if times is None and pending:
                            send(pending.popleft())
        except EngineFailed:
            raise
        except Exception as e:  # the engine core died: vLLM raises its own error types
            raise EngineFailed(f"vLLM's offline engine failed during a run: {e}") from None
        t_end = time.monotonic()
        steps = read_steps(self.step_log, t0 - 1e-3, t_end, offset)
        res = build_result(
            workload,
            t0,
            recs,
            steps.step_log(t0),
            self.settings,
            self.slo,
            counter_delta(before, self.counters()),
            self.info(),
        )
        res.step_extra = {
            "draft_calls": steps.calls,
            "fwd_cpu_ms": steps.cols["fwd_cpu_ms"].tolist(),
        }
        res.metrics["live"]["fwd_cpu_share"] = steps.cpu_share()
        return res
