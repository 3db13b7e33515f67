"""What every live engine shares with the simulator: the requests of a run, the engine
contract, and a run's result.

A live run serves the *same* requests as :func:`spectune.simulator.api.simulate` for one
seed: :func:`request_set` spawns the simulator's random streams and builds its request list
(prompt and output lengths, arrival times); prompt *content* comes from a
:class:`PromptSource` on the next stream (:func:`prompt_rng`); :func:`build_workload` puts
both into a :class:`LiveWorkload`, what every engine runs. Engines are driven through one
contract, :class:`LiveEngine` (spectune's own engine:
:mod:`spectune.profiler.native.adapter`; real serving engines: :mod:`spectune.profiler.engines`).
A run's result is a :class:`LiveResult` whose metrics have the simulator's contract
(:func:`timed_result` builds it from per-request times), plus per-step timings
(:class:`StepLog`) where the engine exposes them.

No torch: engine adapters (spectune's own engine, vLLM) and the validation build on it.
Units: seconds since the run started (``_s``), milliseconds per step (``_ms``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectune.simulator.api import STREAMS
from spectune.simulator.engine import EngineResult
from spectune.simulator.errors import InputError, SpectuneError
from spectune.simulator.metrics import compute_metrics
from spectune.simulator.scenario import ResolvedScenario
from spectune.simulator.schema import Slo
from spectune.simulator.workload import RequestSet, build_requests

PROMPT_STREAM = len(STREAMS)  # the prompt-content stream comes after the simulator's four


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptSource:
    """Prompt content: windows of a token corpus (``pool``, int64 token ids).

    A prompt of ``n`` tokens is ``pool[s : s + n]`` at a random start ``s``; ``starts``
    (optional) restricts starts to given offsets, e.g. line beginnings of source code, so
    prompts look like the text the acceptance profile was measured on.
    """

    pool: np.ndarray
    starts: np.ndarray | None = None
    name: str = "pool"

    def prompts(self, lengths: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
        """One prompt per length.

        Raises:
            InputError: a length longer than the pool.
        """
        out = []
        size = len(self.pool)
        for n in lengths:
            n = int(n)
            if n > size:
                raise InputError(f"prompt of {n} tokens is longer than the {size}-token pool")
            if self.starts is not None:
                ok = self.starts[self.starts <= size - n]
                s = int(ok[rng.integers(len(ok))]) if ok.size else 0
            else:
                s = int(rng.integers(0, size - n + 1))
            out.append(self.pool[s : s + n].copy())
        return out

    @classmethod
    def from_texts(cls, texts: Sequence[str], name: str = "texts") -> PromptSource:
        """Byte-tokenised texts (UTF-8), joined; starts at line beginnings."""
        blob = "".join(t if t.endswith("\n") else t + "\n" for t in texts).encode()
        pool = np.frombuffer(blob, dtype=np.uint8).astype(np.int64)
        starts = np.concatenate(([0], np.flatnonzero(pool[:-1] == 10) + 1))
        return cls(pool, starts, name)

    @classmethod
    def random(cls, vocab_size: int, tokens: int, seed: int) -> PromptSource:
        """Uniform random token ids (models without a tokenizer; tests)."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        return cls(rng.integers(0, vocab_size, size=tokens, dtype=np.int64), None, "random")


# --------------------------------------------------------------------------- results


@dataclass
class StepLog:
    """Per engine step (one list entry each): what ran and how long it took (ms)."""

    start_s: list[float] = field(default_factory=list)
    batch: list[int] = field(default_factory=list)  # sequences in the draft + verify part
    query: list[int] = field(default_factory=list)  # verify tokens per sequence
    context: list[float] = field(default_factory=list)  # mean context of the decode batch
    context_max: list[float] = field(default_factory=list)  # its longest context
    prefills: list[int] = field(default_factory=list)
    prefill_tokens: list[int] = field(default_factory=list)
    prefill_ms: list[float] = field(default_factory=list)
    draft_ms: list[float] = field(default_factory=list)
    verify_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)  # engine work outside forwards
    total_ms: list[float] = field(default_factory=list)  # engine step wall time
    driver_ms: list[float] = field(default_factory=list)  # driver work before the step

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.__dict__.items()}


@dataclass
class LiveResult:
    """One live run.

    Attributes:
        metrics: ``spectune simulate --json``'s contract, measured (plus ``config``,
            ``live``: the engine's counters and mean per-step times).
        engine: the per-request arrays behind the metrics.
        steps: per-step timings.
        outputs: generated tokens per request (request order).
        requests: what the engine reported per request (request order), where it reports
            anything: e.g. vLLM's server-side TTFT / ITL / queue time and its per-request
            spec-decode metrics (``per_step_accepted`` / ``per_step_drafted``).
        counters: the engine's spec-decode counters over the run (vLLM's Prometheus
            ``spec_decode`` counters), where it has them.
        step_extra: per-step data beyond :class:`StepLog`, by name, one entry per step
            (vLLM: ``draft_calls``, each drafter model call's tokens and milliseconds).
    """

    metrics: dict[str, Any]
    engine: EngineResult
    steps: StepLog
    outputs: list[list[int]]
    requests: list[dict[str, Any]] | None = None
    counters: dict[str, Any] | None = None
    step_extra: dict[str, list[Any]] | None = None


# --------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class LiveWorkload:
    """What an engine serves in one run: the requests (lengths, arrivals) and their prompts.

    Attributes:
        requests: lengths and arrival times (or closed-loop concurrency), as simulated.
        prompts: token ids per request (request order).
        seed: the run's seed (the simulator's, for the same requests).
    """

    requests: RequestSet
    prompts: list[np.ndarray]
    seed: int

    @property
    def num_requests(self) -> int:
        return self.requests.num_requests

    @property
    def mode(self) -> str:
        return self.requests.mode


def build_workload(
    rs: ResolvedScenario, prompts: PromptSource, seed: int | None = None
) -> LiveWorkload:
    """The requests :func:`~spectune.simulator.api.simulate` serves for ``seed`` (None: the
    scenario's), with prompt content from ``prompts`` on the prompt stream."""
    seed = rs.scenario.seed if seed is None else int(seed)
    req = request_set(rs, seed)
    contents = prompts.prompts(req.prompt_tokens.tolist(), prompt_rng(seed))
    return LiveWorkload(req, contents, seed)


# --------------------------------------------------------------------------- the contract


class LiveEngine(ABC):
    """A serving engine driven live, behind one contract (DESIGN.md §6).

    Call order: build (cheap, no side effects) -> :meth:`start` once (loads the model,
    spawns processes, warms up: tens of seconds for vLLM) -> :meth:`run` any number of
    times, one at a time -> :meth:`stop` once, always, also after an error or Ctrl-C (use
    ``with engine: ...``, which stops it on the way out). One instance has one
    configuration (drafter, k, max_num_seqs, ...): another configuration is another
    engine. :meth:`run` before :meth:`start` or after :meth:`stop` raises.

    Implementations: spectune's own engine
    (:class:`spectune.profiler.native.adapter.NativeEngine`) and vLLM's OpenAI server and
    offline engine (:mod:`spectune.profiler.engines`).
    """

    name: str = "engine"

    @abstractmethod
    def start(self) -> None:
        """Bring the engine up (idempotent while running).

        Raises:
            SpectuneError: it cannot start (the error names the cause in one line).
        """

    @abstractmethod
    def run(
        self, workload: LiveWorkload, on_finish: Callable[[int], None] | None = None
    ) -> LiveResult:
        """Serve ``workload`` in real time and measure it.

        Args:
            workload: the requests; open-loop arrivals are honoured in wall-clock time.
            on_finish: called with the number of requests just finished.

        Returns:
            Per-request times as metrics, per-step timings where the engine exposes them,
            the outputs, and the engine's own per-request metrics and counters.

        Raises:
            SpectuneError: the engine failed during the run (it is then stopped).
        """

    @abstractmethod
    def stop(self) -> None:
        """Shut the engine down and release everything it holds (idempotent)."""

    def pids(self) -> list[int]:
        """Processes that do the engine's work (the interference monitor watches them)."""
        return [os.getpid()]

    def info(self) -> dict[str, Any]:
        """What ran: engine name, version, execution mode (for reports and profiles)."""
        return {"engine": self.name}

    def __enter__(self) -> LiveEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EngineFailed(SpectuneError):
    """A live engine failed to start or died during a run."""


# --------------------------------------------------------------------------- results from times


def timed_result(
    workload: LiveWorkload,
    arrival_s: np.ndarray,
    first_token_s: np.ndarray,
    finish_s: np.ndarray,
    outputs: list[list[int]],
    *,
    steps: StepLog,
    slo: Slo,
    config: dict[str, Any],
    nodes: int = 0,
    depth: int = 0,
    decode_steps: int = 0,
    accepted_tokens: int = 0,
    max_num_seqs: int = 1,
    kv_cache_tokens: int = 0,
) -> LiveResult:
    """A run's :class:`LiveResult` from per-request times measured by a driver.

    The metrics come from :func:`~spectune.simulator.metrics.compute_metrics`, the
    simulator's own definitions. ``decode_steps`` are the sequence-steps that verified
    drafts (vLLM's ``num_drafts``; for plain decoding every decode step), ``accepted_tokens``
    the drafts accepted in them, so ``mean_accepted_len`` = 1 + accepted / steps (vLLM's
    convention). Batch histogram, iterations and busy time come from ``steps`` when the
    engine logged them.
    """
    req = workload.requests
    n = req.num_requests
    hist = [0] * (max_num_seqs + 1)
    a = steps.arrays()
    busy = 0.0
    if a["batch"].size:
        seqs = np.minimum(a["batch"] + a["prefills"], max_num_seqs)
        for b in seqs.tolist():
            hist[int(b)] += 1
        busy = float(a["total_ms"].sum()) / 1e3
    gen = np.array([len(o) for o in outputs], dtype=np.int64)
    res = EngineResult(
        arrival_s=np.asarray(arrival_s, dtype=float),
        first_token_s=np.asarray(first_token_s, dtype=float),
        finish_s=np.asarray(finish_s, dtype=float),
        prompt_tokens=req.prompt_tokens,
        output_tokens=req.output_tokens,
        preemptions=np.zeros(n, dtype=np.int64),
        iterations=int(a["batch"].size),
        runs=int(a["batch"].size),
        arrivals=n,
        decode_steps=int(decode_steps),
        drawn_tokens=int(decode_steps + accepted_tokens),
        decode_tokens=int(gen.sum() - n),
        generated=gen,
        nodes=nodes,
        depth=depth,
        batch_hist=hist,
        busy_s=busy,
        end_s=float(np.nanmax(finish_s)) if n else 0.0,
        kv_cache_tokens=kv_cache_tokens,
    )
    metrics = compute_metrics(res, slo)
    metrics["config"] = {**config, "workload_mode": req.mode, "seed": workload.seed}
    metrics["live"] = step_summary(steps)
    return LiveResult(metrics, res, steps, outputs)


def request_set(rs: ResolvedScenario, seed: int | None = None) -> RequestSet:
    """The requests :func:`~spectune.simulator.api.simulate` serves for this seed."""
    seed = rs.scenario.seed if seed is None else int(seed)
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    rngs = {n: np.random.default_rng(c) for n, c in zip(STREAMS, children, strict=True)}
    return build_requests(rs.scenario.workload, rs.trace_path, rngs["arrivals"], rngs["lengths"])


def prompt_rng(seed: int) -> np.random.Generator:
    """The prompt-content stream: child ``PROMPT_STREAM`` of ``SeedSequence(seed)``."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(PROMPT_STREAM + 1)[-1])


def step_summary(steps: StepLog) -> dict[str, Any]:
    """Means over decode steps (ms) and totals, for reports."""
    a = steps.arrays()
    dec = a["batch"] > 0 if a["batch"].size else np.zeros(0, dtype=bool)
    out: dict[str, Any] = {"steps": int(a["batch"].size), "decode_steps": int(dec.sum())}
    for key in ("draft_ms", "verify_ms", "overhead_ms", "total_ms", "driver_ms"):
        out[f"mean_{key}"] = float(a[key][dec].mean()) if dec.any() else 0.0
    out["prefill_ms_total"] = float(a["prefill_ms"].sum()) if a["prefill_ms"].size else 0.0
    out["mean_batch"] = float(a["batch"][dec].mean()) if dec.any() else 0.0
    return out
