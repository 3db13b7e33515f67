"""vLLM's OpenAI-compatible server as a live engine (:class:`VllmServer`).

:meth:`VllmServer.start` launches ``vllm serve`` (through :mod:`.vllm_main`) on
127.0.0.1 at a free port in its own process group (:mod:`.processes`), waits for
``/health`` while watching that the process lives (a start-up failure is reported with
vLLM's own last error line), and warms the engine up with a few untimed requests (the
first request after start-up pays one-off costs: measured 1.3 s TTFT; the n-gram proposer
compiles its lookup on first use). :meth:`VllmServer.run` sends a workload through
:func:`.vllm_client.drive`, reads the step probe's records of the run
(:mod:`.vllm_steps`) and the spec-decode counters before and after (``/metrics``), and
returns a :class:`~spectune.profiler.live.LiveResult`. :meth:`VllmServer.stop` stops the
whole process group. A server that dies during a run raises
:class:`~spectune.profiler.live.EngineFailed` with its last error line.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spectune.profiler.live import (
    EngineFailed,
    LiveEngine,
    LiveResult,
    LiveWorkload,
    PromptSource,
    timed_result,
)
from spectune.simulator.errors import InputError
from spectune.simulator.schema import Slo
from spectune.simulator.workload import RequestSet

from . import processes
from .vllm_client import RequestRecord, drive
from .vllm_config import VllmSettings, check_model_dir, require_vllm
from .vllm_probe import ENV_LOG
from .vllm_steps import read_steps
from .vllm_widths import ENV_WIDTH

SERVED_NAME = "spectune-target"
HOST = "127.0.0.1"


class VllmEngine(LiveEngine):
    """What both vLLM front ends (the server here, the offline ``LLM`` in
    :mod:`.vllm_offline`) share: their description and the proposer's width file."""

    name: str
    version: str
    settings: VllmSettings
    startup_s: float | None
    width_file: Path

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "vllm": self.version,
            "mode": self.settings.mode,
            "config": self.settings.label(),
            "startup_s": self.startup_s,
        }

    def set_width(self, width: int) -> None:
        """Drafts per request per step for the fixed-width proposer (profiling)."""
        self.width_file.write_text(str(int(width)))


class VllmServer(VllmEngine):
    """``vllm serve`` for one configuration (module docstring).

    Args:
        settings: the engine configuration.
        work_dir: where the server's log, the step log and the width file go.
        port: a port to listen on (None: a free one).
        start_timeout_s: give up waiting for ``/health`` after this long.
        slo: SLOs for the metrics of each run.
        warmup_requests: untimed requests after start-up (0: none).
    """

    name = "vllm-server"

    def __init__(
        self,
        settings: VllmSettings,
        work_dir: str | Path,
        *,
        port: int | None = None,
        start_timeout_s: float = 300.0,
        slo: Slo | None = None,
        warmup_requests: int = 4,
    ):
        self.settings = settings
        self.work_dir = Path(work_dir)
        self.port = port
        self.start_timeout_s = start_timeout_s
        self.slo = slo or Slo()
        self.warmup_requests = warmup_requests
        self.proc: Any = None
        self.version: str | None = None
        self.startup_s: float | None = None
        key = settings.key()
        self.log_path = self.work_dir / f"vllm-{key}.log"
        self.step_log = self.work_dir / f"vllm-{key}.steps"
        self.width_file = self.work_dir / f"vllm-{key}.width"
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        if self._stopped:
            raise EngineFailed("this server was stopped; build another")
        self.version = require_vllm()
        check_model_dir(self.settings.model)
        if self.settings.spec is not None and self.settings.spec.model:
            check_model_dir(self.settings.spec.model, field="--drafter")
        if self.port is None:
            self.port = processes.free_port(HOST)
        elif processes.port_in_use(HOST, self.port):
            raise InputError(f"port {self.port} on {HOST} is in use", field="--port")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.step_log.unlink(missing_ok=True)
        env = dict(os.environ)
        if self.settings.probe:
            env[ENV_LOG] = str(self.step_log)
        env[ENV_WIDTH] = str(self.width_file)
        cmd = [
            sys.executable,
            "-m",
            "spectune.profiler.engines.vllm_main",
            "serve",
            *self.settings.serve_args(HOST, self.port, SERVED_NAME),
        ]
        t0 = time.monotonic()
        self.proc = processes.spawn(cmd, self.log_path, env)
        try:
            self._wait_healthy(t0)
            self.startup_s = time.monotonic() - t0
            if self.warmup_requests:
                self._warm_up()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, t0: float) -> None:
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise EngineFailed(self._death_message(f"exited during start-up (rc {rc})"))
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() - t0 > self.start_timeout_s:
                raise EngineFailed(
                    self._death_message(f"not healthy after {self.start_timeout_s:g} s")
                )
            time.sleep(0.5)

    def _failure(self, err: Exception) -> str:
        """What went wrong in a failed run: a server that died (its exit code and last
        error line; vLLM's API server exits some seconds after its engine core dies), one
        that no longer answers /health, or the request error itself."""
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return self._death_message(f"died during a run (rc {rc})")
            time.sleep(0.25)
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=5) as r:
                healthy = r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            healthy = False
        if not healthy:
            return self._death_message("stopped answering /health during a run")
        return f"vLLM server run failed: {err}"

    def _death_message(self, what: str) -> str:
        err = processes.last_error_line(self.log_path)
        return f"vLLM server {what}: {err or 'no error line'} (log: {self.log_path})"

    def _warm_up(self) -> None:
        """Untimed requests at batch 1 and at the batch cap (one-off costs, lookups)."""
        n = max(1, min(self.warmup_requests, self.settings.max_num_seqs))
        rng = np.random.default_rng(0)
        pool = PromptSource(rng.integers(1, 200, size=4096, dtype=np.int64), None, "warmup")
        for batch in (1, n):
            req = RequestSet(
                prompt_tokens=np.full(batch, 48, dtype=np.int64),
                output_tokens=np.full(batch, 24, dtype=np.int64),
                arrival_s=np.zeros(batch),
                mode="offline",
            )
            prompts = pool.prompts(req.prompt_tokens.tolist(), rng)
            drive(self.base_url, SERVED_NAME, LiveWorkload(req, prompts, 0), time_limit_s=120)

    def stop(self) -> None:
        self._stopped = True
        if self.proc is not None:
            processes.stop_group(self.proc)

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return processes.group_pids(self.proc.pid)

    # ------------------------------------------------------------------ runs

    def counters(self) -> dict[str, Any]:
        """vLLM's spec-decode counters now (``/metrics``; summed over engines)."""
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=10) as r:
            return parse_spec_counters(r.read().decode())

    def run(
        self, workload: LiveWorkload, on_finish: Callable[[int], None] | None = None
    ) -> LiveResult:
        if self.proc is None or self._stopped:
            raise EngineFailed("run() on a server that is not running: call start() first")
        offset = self.step_log.stat().st_size if self.step_log.is_file() else 0
        try:
            before = self.counters()
            t0, recs = drive(self.base_url, SERVED_NAME, workload, on_finish)
            t_end = time.monotonic()
            after = self.counters()
        except (EngineFailed, urllib.error.URLError, ConnectionError, OSError) as e:
            raise EngineFailed(self._failure(e)) from None
        steps = read_steps(self.step_log, t0 - 1e-3, t_end, offset)
        res = build_result(
            workload,
            t0,
            recs,
            steps.step_log(t0),
            self.settings,
            self.slo,
            counter_delta(before, after),
            self.info(),
        )
        res.step_extra = {
            "draft_calls": steps.calls,
            "fwd_cpu_ms": steps.cols["fwd_cpu_ms"].tolist(),
        }
        res.metrics["live"]["fwd_cpu_share"] = steps.cpu_share()
        return res


def build_result(
    workload: LiveWorkload,
    t0: float,
    recs: list[RequestRecord],
    steps: Any,
    settings: VllmSettings,
    slo: Slo,
    counters: dict[str, Any] | None,
    info: dict[str, Any],
) -> LiveResult:
    """A :class:`LiveResult` from the client's records and the probe's steps."""
    arrival = np.array([r.send_s - t0 for r in recs])
    first = np.array([r.first_s - t0 for r in recs])
    finish = np.array([r.finish_s - t0 for r in recs])
    k = settings.spec.k if settings.spec else 0
    requests: list[dict[str, Any]] = []
    drafts = accepted = 0
    for r in recs:
        m = dict(r.metrics or {})
        sd = m.pop("speculative_decoding", None)
        if sd:
            drafts += int(sd.get("num_spec_steps", 0))
            accepted += int(sd.get("num_accepted_draft_tokens", 0))
        requests.append(
            {
                "prompt_tokens": (r.usage or {}).get("prompt_tokens"),
                "output_tokens": len(r.tokens),
                "chunks": r.chunks,
                "server": m,
                "speculative_decoding": sd,
            }
        )
    if k == 0:
        drafts = int(sum(max(len(r.tokens) - 1, 0) for r in recs))
    else:
        # Decode steps that drafted nothing (an n-gram without a match) are not in vLLM's
        # per-request arrays; they count as steps that accepted nothing, as the simulator
        # counts them until acceptance profiles carry a match probability.
        drafts += sum(undrafted_steps(q) for q in requests)
    config = {
        "drafter": settings.spec.label() if settings.spec else "none",
        "num_spec_tokens": k,
        "tree": None,
        "tree_depth": k,
        "max_num_seqs": settings.max_num_seqs,
        "engine": info,
    }
    res = timed_result(
        workload,
        arrival,
        first,
        finish,
        [r.tokens for r in recs],
        steps=steps,
        slo=slo,
        config=config,
        nodes=k,
        depth=k,
        decode_steps=drafts,
        accepted_tokens=accepted,
        max_num_seqs=settings.max_num_seqs,
    )
    res.requests = requests
    res.counters = counters
    return res


def undrafted_steps(request: dict[str, Any]) -> int:
    """Decode steps of a request that verified no draft: its tokens after the first, minus
    what its drafting steps emitted (accepted + 1 each), when positive."""
    sd = request.get("speculative_decoding")
    if not sd or sd.get("per_step_accepted") is None:
        return 0
    emitted = sum(int(a) + 1 for a in sd["per_step_accepted"])
    return max(0, int(request["output_tokens"]) - 1 - emitted)


def parse_spec_counters(text: str) -> dict[str, Any]:
    """``vllm:spec_decode_*`` counters of a Prometheus text page, summed over label sets;
    the per-position counter as a list by position."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:spec_decode"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        name = name.removesuffix("_total")
        try:
            v = float(value)
        except ValueError:
            continue
        if "position=" in labels:
            pos = int(labels.split('position="')[1].split('"')[0])
            lst = out.setdefault(name, [])
            lst.extend([0.0] * (pos + 1 - len(lst)))
            lst[pos] += v
        elif not name.endswith(("_created", "_bucket", "_sum", "_count")):
            out[name] = out.get(name, 0.0) + v
    return out


def counter_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``after - before`` per counter (lists position by position)."""
    out: dict[str, Any] = {}
    for k, v in after.items():
        b = before.get(k)
        if isinstance(v, list):
            b = b or []
            out[k] = [x - (b[i] if i < len(b) else 0.0) for i, x in enumerate(v)]
        else:
            out[k] = v - (b or 0.0)
    return out


def dump_requests(path: Path, res: LiveResult) -> None:
    """The run's per-request records as JSONL, one vLLM-style response per line
    (``usage`` + ``metrics.speculative_decoding``: ``spectune acceptance import --format
    vllm-requests`` reads it)."""
    with path.open("w") as fh:
        for r in res.requests or []:
            metrics = dict(r["server"])
            if r["speculative_decoding"]:
                metrics["speculative_decoding"] = r["speculative_decoding"]
            usage = {"prompt_tokens": r["prompt_tokens"], "completion_tokens": r["output_tokens"]}
            fh.write(json.dumps({"usage": usage, "metrics": metrics}) + "\n")
