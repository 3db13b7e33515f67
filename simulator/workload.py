"""Requests to serve: lengths and arrival times, from a trace file or from distributions.

Three workload modes (as people benchmark servers):

- ``open``: arrivals do not wait for the server. Times come from the trace's TIMESTAMP
  column (relative to the first row, divided by ``time_scale``) or from a Poisson / gamma
  process with ``rate_per_s`` (gamma inter-arrival gaps have coefficient of variation ``cv``).
- ``closed``: ``concurrency`` clients share the request list; each sends the next unsent
  request the moment its previous one finishes (like ``--max-concurrency``). Arrival times
  are decided by the engine while it runs, so :attr:`RequestSet.arrival_s` is ``None``.
- ``offline``: every request arrives at t = 0 (an offline throughput run).

Lengths come from the trace (the Azure CSV's ``ContextTokens`` / ``GeneratedTokens``
columns, or any format of :mod:`.trace_readers`) when a trace is given, else from
:class:`~spectune.simulator.schema.LengthDist` draws; a trace without timestamps takes its
arrivals from ``arrival``. ``num_requests``
takes the first N trace rows. Nonsense lengths (0 or negative tokens) are clamped to 1 and
reported in :attr:`RequestSet.warnings`, never silently. Times are in seconds, lengths in
tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .loading import check_input_file
from .schema import Arrival, LengthDist, Workload
from .schema_base import MAX_REQUESTS
from .trace_readers import TraceArrays, TraceOptions, read_trace_file

TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@dataclass(frozen=True)
class RequestSet:
    """The requests of one run, in submission order.

    ``arrival_s`` is sorted ascending (open, offline) or ``None`` (closed loop: each client
    sends its next request when its last one finishes).
    """

    prompt_tokens: np.ndarray  # int64 [N]
    output_tokens: np.ndarray  # int64 [N]
    arrival_s: np.ndarray | None  # float64 [N]
    mode: str
    concurrency: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def num_requests(self) -> int:
        return int(self.prompt_tokens.shape[0])


# Parsed traces keyed by (resolved path, mtime_ns, size, options): a tuner evaluating many
# configs on one trace parses it once per process.
_TRACE_CACHE: dict[tuple[str, int, int, TraceOptions], TraceArrays] = {}


def trace_options(workload: Workload) -> TraceOptions:
    """The reading options a workload declares (format, timestamp unit, tokenizer)."""
    tok = workload.tokenizer
    return TraceOptions(
        format=workload.trace_format,
        timestamp_unit=workload.timestamp_unit,
        tokenizer=str(tok) if isinstance(tok, Path) else tok,
    )


def read_trace(path: str | Path, options: TraceOptions | None = None) -> TraceArrays:
    """Parse a workload file: the Azure-LLM-style CSV (TIMESTAMP, ContextTokens,
    GeneratedTokens), a lengths-only CSV, JSONL, or JSON records / ShareGPT
    (:mod:`.trace_readers`). Results are cached per path, mtime and options.

    Args:
        path: the file.
        options: format, timestamp unit, tokenizer (:func:`trace_options` of the workload
            that names the file); default: auto-detection.

    Returns:
        The parsed arrays, times relative to the first row (``None``: no timestamps).

    Raises:
        InputError: the file is missing, not a regular file, a column is missing, or a
            value does not parse.
    """
    p = check_input_file(path)
    st = p.stat()
    resolved = str(p.resolve())
    opts = options or TraceOptions()
    key = (resolved, st.st_mtime_ns, st.st_size, opts)
    hit = _TRACE_CACHE.get(key)
    if hit is None:
        hit = _TRACE_CACHE[key] = read_trace_file(p, opts)
    return hit


def sample_lengths(dist: LengthDist, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` token lengths (int64, each >= 1 and <= ``dist.max`` if given).

    ``lognormal`` is parameterised by its mean and coefficient of variation:
    sigma² = ln(1 + cv²), mu = ln(mean) − sigma²/2. Draws are rounded to whole tokens.
    """
    if dist.dist == "constant":
        out = np.full(n, dist.value, dtype=np.int64)
    elif dist.dist == "uniform":
        out = rng.integers(dist.low, dist.high, size=n, endpoint=True, dtype=np.int64)
    else:
        cv = float(dist.cv or 0.0)
        if cv == 0.0:
            out = np.full(n, round(float(dist.mean)), dtype=np.int64)  # type: ignore[arg-type]
        else:
            sigma2 = math.log1p(cv * cv)
            mu = math.log(float(dist.mean)) - sigma2 / 2  # type: ignore[arg-type]
            out = np.rint(rng.lognormal(mu, math.sqrt(sigma2), size=n)).astype(np.int64)
    out = np.maximum(out, 1)
    if dist.max is not None:
        out = np.minimum(out, dist.max)
    return out


def sample_arrivals(arrival: Arrival, n: int, rng: np.random.Generator) -> np.ndarray:
    """Open-loop arrival times (seconds, first request at t = 0).

    Poisson: exponential gaps with mean 1/rate. Gamma: shape 1/cv², scale cv²/rate, so the
    mean gap is 1/rate and the gaps' coefficient of variation is ``cv`` (cv = 1 is Poisson).
    """
    if n == 0:
        return np.zeros(0)
    if arrival.process == "poisson":
        gaps = rng.exponential(1.0 / arrival.rate_per_s, size=n - 1)
    else:
        shape = 1.0 / (arrival.cv * arrival.cv)
        gaps = rng.gamma(shape, 1.0 / (shape * arrival.rate_per_s), size=n - 1)
    return np.concatenate(([0.0], np.cumsum(gaps)))


def build_requests(
    workload: Workload,
    trace_path: Path | None,
    rng_arrivals: np.random.Generator,
    rng_lengths: np.random.Generator,
) -> RequestSet:
    """Turn a scenario's workload into the concrete requests of one run.

    Args:
        workload: the scenario's ``workload`` section.
        trace_path: the resolved trace file, if the workload names one.
        rng_arrivals: stream for arrival gaps.
        rng_lengths: stream for prompt and output lengths.

    Returns:
        The request set (see :class:`RequestSet`).

    Raises:
        InputError: the trace cannot be read.
    """
    warnings: list[str] = []
    trace_times = None
    if trace_path is not None:
        tr = read_trace(trace_path, trace_options(workload))
        warnings += tr.warnings
        n = tr.prompt_tokens.shape[0]
        if workload.num_requests is not None:
            n = min(n, workload.num_requests)
        elif n > MAX_REQUESTS:
            raise InputError(
                f"the trace has {n:,} rows; at most {MAX_REQUESTS:,} requests are simulated: "
                "set workload.num_requests",
                source=trace_path,
                field="workload.num_requests",
            )
        prompt = tr.prompt_tokens[:n]
        output = tr.output_tokens[:n]
        trace_times = tr.time_s[:n] if tr.time_s is not None else None
        if workload.prompt_tokens is not None or workload.output_tokens is not None:
            warnings.append("lengths come from the trace; prompt_tokens/output_tokens ignored")
    else:
        n = int(workload.num_requests or 0)
        assert workload.prompt_tokens is not None and workload.output_tokens is not None
        # One stream for both lengths, prompts drawn first: changing the output
        # distribution does not change the prompts.
        prompt = sample_lengths(workload.prompt_tokens, n, rng_lengths)
        output = sample_lengths(workload.output_tokens, n, rng_lengths)

    prompt, output = _clamped(prompt, "prompt", warnings), _clamped(output, "output", warnings)
    if workload.identical and n:
        prompt, output = np.full(n, prompt[0]), np.full(n, output[0])

    arrival_s: np.ndarray | None
    if workload.mode == "offline":
        arrival_s = np.zeros(n)
    elif workload.mode == "closed":
        arrival_s = None
    elif workload.arrival is not None:
        arrival_s = sample_arrivals(workload.arrival, n, rng_arrivals)
    else:
        if trace_times is None:
            raise InputError(
                "is required: the trace has no timestamps (give arrivals for mode open, or "
                "use mode closed / offline)",
                source=trace_path,
                field="workload.arrival",
            )
        times = trace_times - trace_times.min() if n else trace_times
        if n and np.any(np.diff(times) < 0):
            order = np.argsort(times, kind="stable")
            times, prompt, output = times[order], prompt[order], output[order]
            warnings.append("trace rows were not in time order; sorted by TIMESTAMP")
        arrival_s = times / workload.time_scale
    return RequestSet(
        prompt_tokens=np.ascontiguousarray(prompt, dtype=np.int64),
        output_tokens=np.ascontiguousarray(output, dtype=np.int64),
        arrival_s=arrival_s,
        mode=workload.mode,
        concurrency=workload.concurrency,
        warnings=tuple(warnings),
    )


def _clamped(tokens: np.ndarray, what: str, warnings: list[str]) -> np.ndarray:
    bad = int(np.count_nonzero(tokens < 1))
    if bad:
        warnings.append(f"{bad} request(s) had {what} length < 1 token; clamped to 1")
        return np.maximum(tokens, 1)
    return tokens
