"""What every live engine shares with the simulator: the requests of a run and its result.

A live run serves the *same* requests as :func:`spectune.simulator.api.simulate` for one
seed: :func:`request_set` spawns the simulator's random streams and builds its request list
(prompt and output lengths, arrival times); prompt *content* comes from a
:class:`PromptSource` on the next stream (:func:`prompt_rng`). A run's result is a
:class:`LiveResult` whose metrics have the simulator's contract, plus per-step timings
(:class:`StepLog`) where the engine exposes them.

No torch: engine adapters (spectune's own engine, vLLM) and the validation build on it.
Units: seconds since the run started (``_s``), milliseconds per step (``_ms``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectune.simulator.api import STREAMS
from spectune.simulator.engine import EngineResult
from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario
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
    """

    metrics: dict[str, Any]
    engine: EngineResult
    steps: StepLog
    outputs: list[list[int]]


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
