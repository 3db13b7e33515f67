"""The scenario's ``workload`` section: where requests come from and when (re-exported by
:mod:`.schema`; the readers of trace files are in :mod:`.trace_readers`).

Times are in seconds, lengths in tokens. Every bound is named in the error a value past it
gets (:mod:`.schema_base`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .schema_base import MAX_REQUESTS, MAX_TOKENS, Frozen, PosFloat

Tokens = Annotated[int, Field(gt=0, le=MAX_TOKENS)]
TokensF = Annotated[float, Field(gt=0.0, le=MAX_TOKENS)]
Requests = Annotated[int, Field(gt=0, le=MAX_REQUESTS)]

TraceFormat = Literal["auto", "csv", "jsonl", "json"]
TimestampUnit = Literal["auto", "s", "ms", "us", "ns", "datetime"]


class LengthDist(Frozen):
    """A token-length distribution: constant, uniform [low, high], or lognormal(mean, cv)."""

    dist: Literal["constant", "uniform", "lognormal"]
    """Which distribution; each needs its own parameters below."""
    value: Tokens | None = None
    """constant: every request has this many tokens."""
    low: Tokens | None = None
    """uniform: smallest length (inclusive)."""
    high: Tokens | None = None
    """uniform: largest length (inclusive)."""
    mean: TokensF | None = None
    """lognormal: mean length in tokens."""
    cv: Annotated[float, Field(ge=0.0, le=100.0)] | None = None
    """lognormal: coefficient of variation (std / mean; 0 = constant)."""
    max: Tokens | None = None
    """Optional cap: longer draws are cut to this length."""

    @model_validator(mode="after")
    def _params(self) -> LengthDist:
        need = {"constant": ("value",), "uniform": ("low", "high"), "lognormal": ("mean", "cv")}
        for name in need[self.dist]:
            if getattr(self, name) is None:
                raise ValueError(f"@{name}: is required for dist {self.dist}")
        if self.dist == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError(f"@low: must be <= high, got {self.low} > {self.high}")
        return self


class Arrival(Frozen):
    """Open-loop arrival process. ``gamma`` uses ``cv`` (coefficient of variation)."""

    process: Literal["poisson", "gamma"]
    """poisson: exponential gaps; gamma: gaps with coefficient of variation ``cv``."""
    rate_per_s: PosFloat
    """Mean arrival rate in requests per second."""
    cv: Annotated[float, Field(gt=0.0, le=100.0)] = 1.0
    """gamma: coefficient of variation of the gaps (1 = Poisson, > 1 = bursty)."""


class Workload(Frozen):
    """Where requests come from and when.

    mode ``open``: arrivals from ``arrival`` or, with ``trace`` and no ``arrival``, the
    trace's own timestamps (inter-arrival gaps divided by ``time_scale``: 2.0 replays twice
    as fast). mode ``closed``: ``concurrency`` clients, each sending its next request when
    its last one finishes. mode ``offline``: every request arrives at t = 0.
    Lengths come from the trace when ``trace`` is given, else from ``prompt_tokens`` /
    ``output_tokens``. Trace formats: docs/workloads.md.
    """

    mode: Literal["open", "closed", "offline"] = "open"
    """open: arrivals do not wait for the server; closed: ``concurrency`` clients; offline:
    every request at t = 0."""
    trace: Path | None = None
    """A workload file (relative to the scenario's folder): Azure-style or lengths-only CSV,
    JSONL, or a JSON array (records or ShareGPT conversations); see docs/workloads.md."""
    trace_format: TraceFormat = "auto"
    """How to read ``trace``: auto (by extension, then by content), csv, jsonl or json."""
    timestamp_unit: TimestampUnit = "auto"
    """Unit of the trace's numeric timestamps: s, ms, us, ns, or datetime (ISO 8601 text).
    auto: text that parses as a date-time is one; numbers >= 1e8 are Unix epoch times whose
    magnitude gives the unit (s < 1e11 <= ms < 1e14 <= us < 1e17 <= ns); smaller numbers
    are seconds. A column named ``*_ms`` / ``*_us`` / ``*_ns`` / ``*_s`` gives its unit."""
    tokenizer: Literal["bytes", "approx"] | Path | None = None
    """How text in a trace (ShareGPT conversations, JSONL ``prompt`` / ``output`` text)
    becomes token counts: a Hugging Face ``tokenizer.json`` file (needs the ``tokenizers``
    package: ``pip install spectune[text]``), ``bytes`` (UTF-8 bytes: byte-level models),
    or ``approx`` (ceil(characters / 4), the usual rule of thumb for English text with
    BPE tokenizers; a warning says so). Default: approx, with that warning."""
    arrival: Arrival | None = None
    """Synthetic arrivals (also for a trace without timestamps); overrides the trace's."""
    time_scale: Annotated[float, Field(gt=0.0, le=1e6)] = 1.0
    """Trace replay speed: 2.0 replays the trace's arrivals twice as fast."""
    concurrency: Requests | None = None
    """closed: number of clients."""
    num_requests: Requests | None = None
    """Requests to simulate (the first N trace rows with a trace; required without)."""
    prompt_tokens: LengthDist | None = None
    """Prompt lengths without a trace."""
    output_tokens: LengthDist | None = None
    """Output lengths without a trace."""
    identical: bool = False
    """Every request a copy of the first: same prompt and output length and the same
    acceptance trajectory (the benchmark protocol of papers and engine benchmarks; with
    mode offline, ``num_requests`` identical requests at t = 0)."""

    @model_validator(mode="after")
    def _consistent(self) -> Workload:
        if self.trace is None and (self.prompt_tokens is None or self.output_tokens is None):
            raise ValueError("@trace: give a trace, or both prompt_tokens and output_tokens")
        if self.mode == "open" and self.trace is None and self.arrival is None:
            raise ValueError("@arrival: is required for mode open without a trace to replay")
        if self.mode == "closed" and self.concurrency is None:
            raise ValueError("@concurrency: is required for mode closed")
        if self.trace is None and self.num_requests is None:
            raise ValueError("@num_requests: is required without a trace")
        return self
