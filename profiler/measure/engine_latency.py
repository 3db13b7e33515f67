"""Latency profiles measured through a serving engine (``spectune profile latency --engine
vllm``): the forward latency of a model as the engine runs it, over batch × query tokens ×
context, and the engine's host time per step.

Method (docs/engines.md). The engine runs *controlled workloads* while the step probe
(:mod:`spectune.profiler.engines.vllm_probe`) times every step inside its worker:

- **decode and verify** (a point ``(B, q, c)``, q = 1 + drafts per sequence): ``B``
  requests start together, each with a prompt of ``c − T/2`` random tokens and ``T``
  tokens to generate, so every decode step runs ``B`` sequences at a context within
  ``c ± T/2``. Plain decoding (q = 1) runs on a plain engine; verify widths q >= 2 on one
  engine whose drafter is :class:`~spectune.profiler.engines.vllm_widths.FixedWidthProposer`,
  told before each run to propose ``q − 1`` tokens per sequence (so one engine start serves
  every width). A run's sample is the median forward time over its decode-only steps with
  all ``B`` sequences at width ``q``;
- **prefill** (``(1, P, 0)``): one request at a time with a ``P``-token prompt; the sample
  is the median forward time of its prefill steps.

Every visit is repeated in ``passes`` passes over the grid, each in a different seeded
order (slow periods of a shared machine spread over all points); a point's statistics are
over its visits, visits slower than 3× the point's fastest dropped as stalls (as the
validation's profiles do).

Host time: per decode-only step, the step's period (execute to next execute, so the
engine core's scheduling and output handling are in) minus the forward and the drafter
(``draft_ms``): fitted as ``step_ms + per_seq_ms × B`` on plain steps and, on the
fixed-width engine's steps, as the extra a speculative step adds,
``spec_step_ms + (spec_per_seq_ms + spec_per_node_seq_ms × drafts) × B``
(:mod:`.overhead_fit`). The drafter's own cost (n-gram lookups, a draft model's passes)
is not in it: it is the drafter's, measured with that drafter.

Resume: every visit is appended to ``<out>.partial.jsonl``; a rerun with the same model,
engine version and mode measures only what is missing (engine start-ups are paid again).
The finished visit log is kept as ``<out>.visits.jsonl`` (the raw samples behind the
profile).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectune.profiler.live import LiveEngine, LiveWorkload, PromptSource
from spectune.simulator.errors import InputError
from spectune.simulator.progress import Progress
from spectune.simulator.schema import HostOverhead, LatencyProfile, dump_yaml
from spectune.simulator.workload import RequestSet

from .overhead_fit import LineFit, fit_line, fit_shapes

STALL_RATIO = 3.0
MIN_STEPS = 3  # decode steps a visit needs to count


@dataclass(frozen=True)
class EngineGrid:
    """What the engine profiler measures (module docstring).

    Attributes:
        batches: sequences per decode step.
        widths: query tokens per sequence (1 = plain decode, 1 + k = verify of k drafts).
        contexts: mean contexts of the decode steps (tokens in the KV cache).
        prefills: prompt lengths of the single-request prefill points.
        decode_tokens: tokens each request of a decode visit generates.
    """

    batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    widths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    contexts: tuple[int, ...] = (32, 128, 256, 384)
    prefills: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    decode_tokens: int = 24

    def __post_init__(self) -> None:
        for name in ("batches", "widths", "contexts", "prefills"):
            vals = getattr(self, name)
            if not vals or min(vals) < 1:
                raise InputError(f"values must be >= 1, got {vals}", field=f"--{name}")
        if min(self.contexts) <= self.decode_tokens // 2:
            raise InputError(
                f"contexts must exceed half the decode tokens ({self.decode_tokens // 2})",
                field="--contexts",
            )

    @property
    def max_drafts(self) -> int:
        return max(self.widths) - 1


QUICK_ENGINE_GRID = EngineGrid(
    batches=(1, 4, 16), widths=(1, 2, 4, 7), contexts=(64, 256), prefills=(1, 16, 64, 256)
)


@dataclass(frozen=True)
class Visit:
    """One measurement: an engine (``plain`` or ``fixed``), a point, a pass."""

    engine: str
    batch: int
    query: int
    context: int
    rep: int

    @property
    def key(self) -> tuple[str, int, int, int, int]:
        return (self.engine, self.batch, self.query, self.context, self.rep)


def plan(grid: EngineGrid, passes: int, seed: int = 0) -> dict[str, list[Visit]]:
    """Visits per engine, pass after pass, each pass in its own seeded order."""
    out: dict[str, list[Visit]] = {"plain": [], "fixed": []}
    for rep in range(passes):
        plain = [Visit("plain", b, 1, c, rep) for b in grid.batches for c in grid.contexts]
        plain += [Visit("plain", 1, p, 0, rep) for p in grid.prefills]
        fixed = [
            Visit("fixed", b, q, c, rep)
            for q in grid.widths
            if q > 1
            for b in grid.batches
            for c in grid.contexts
        ]
        for name, vs in (("plain", plain), ("fixed", fixed)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, rep, len(name)]))
            out[name] += [vs[i] for i in rng.permutation(len(vs))]
    return out


def visit_workload(v: Visit, grid: EngineGrid, pool: PromptSource, seed: int) -> LiveWorkload:
    """The controlled workload of a visit (module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, *v.key[1:]]))
    if v.context == 0:  # prefill: one request at a time
        n, prompt, out, conc, arrival = 3, v.query, 2, 1, None
    else:
        half = grid.decode_tokens // 2
        n, prompt, out, conc = v.batch, v.context - half, grid.decode_tokens, None
        arrival = np.zeros(n)
    req = RequestSet(
        prompt_tokens=np.full(n, prompt, dtype=np.int64),
        output_tokens=np.full(n, out, dtype=np.int64),
        arrival_s=arrival,
        mode="closed" if arrival is None else "offline",
        concurrency=conc,
    )
    return LiveWorkload(req, pool.prompts([prompt] * n, rng), seed)


def visit_samples(
    v: Visit, steps: dict[str, np.ndarray], fwd_cpu_ms: list[float] | None = None
) -> dict[str, list[float]]:
    """The steps of a visit's run that measure its point: decode-only steps with all
    ``batch`` sequences at width ``query``, or the lone prefills of ``query`` tokens
    (forward wall and CPU time, host time, context)."""
    a = steps
    if v.context == 0:
        sel = (a["prefills"] == 1) & (a["batch"] == 0) & (a["prefill_tokens"] == v.query)
    else:
        sel = (a["prefills"] == 0) & (a["batch"] == v.batch) & (a["query"] == v.query)
    host = a["total_ms"] - a["verify_ms"] - a["draft_ms"]
    out = {
        "fwd": a["verify_ms"][sel].round(5).tolist(),
        "host": host[sel].round(5).tolist(),
        "ctx": a["context"][sel].round(2).tolist(),
    }
    if fwd_cpu_ms is not None and len(fwd_cpu_ms) == sel.size:
        out["fwd_cpu"] = np.asarray(fwd_cpu_ms)[sel].round(5).tolist()
    return out


class VisitLog:
    """Append-only JSONL of visits under a header (what was measured, how)."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.rows: dict[tuple, dict[str, Any]] = {}
        header = json.loads(json.dumps(header))  # as it reads back (tuples become lists)
        if path.is_file():
            lines = path.read_text().splitlines()
            head = json.loads(lines[0]).get("header") if lines else None
            if head != header:
                raise InputError(
                    "holds visits of another model, engine version or mode; delete it or "
                    "choose another --out",
                    source=path,
                )
            for line in lines[1:]:
                try:
                    d = json.loads(line)
                    self.rows[tuple(d["key"])] = d
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by an interruption
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"header": header}) + "\n")

    def add(self, v: Visit, samples: dict[str, list[float]]) -> None:
        row = {"key": list(v.key), **samples}
        self.rows[v.key] = row
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


@dataclass
class EngineProfileRun:
    """What :func:`measure_engine` needs: how to start each engine and what it measures."""

    make_engine: Callable[[str, int], Any]  # (plain | fixed, max drafts) -> LiveEngine
    grid: EngineGrid
    passes: int
    pool: PromptSource
    seed: int = 0
    on_engine: Callable[[str, Any], None] | None = None  # (name, engine) while it is up


def measure_engine(run: EngineProfileRun, log: VisitLog, progress: bool = True) -> dict[str, Any]:
    """Take every visit missing from ``log``, one engine at a time (module docstring).

    Returns:
        Per engine: start-up seconds and ``info()``.
    """
    visits = plan(run.grid, run.passes, run.seed)
    todo = {name: [v for v in vs if tuple(v.key) not in log.rows] for name, vs in visits.items()}
    bar = Progress(
        "profile", total=sum(len(v) for v in todo.values()), unit="visit", enabled=progress
    )
    info: dict[str, Any] = {}
    try:
        for name, vs in todo.items():
            if not vs:
                continue
            engine: LiveEngine = run.make_engine(name, run.grid.max_drafts)
            t0 = time.monotonic()
            with engine:
                info[name] = {**engine.info(), "start_s": time.monotonic() - t0}
                if run.on_engine is not None:
                    run.on_engine(name, engine)
                for v in vs:
                    if name == "fixed":
                        engine.set_width(v.query - 1)  # type: ignore[attr-defined]
                    res = engine.run(visit_workload(v, run.grid, run.pool, run.seed))
                    cpu = (res.step_extra or {}).get("fwd_cpu_ms")
                    samples = visit_samples(v, res.steps.arrays(), cpu)
                    log.add(v, samples)
                    bar.update(1)
    finally:
        bar.close()
    return info


# --------------------------------------------------------------------------- building


def _visit_median(row: dict[str, Any], what: str) -> float | None:
    """The median of a visit's samples, or None when it has too few (prefill visits: one
    step each is enough)."""
    vals = row.get(what) or []
    need = 1 if row["key"][3] == 0 else MIN_STEPS
    return float(np.median(vals)) if len(vals) >= need else None


def point_samples(
    log: VisitLog, clock: str = "wall"
) -> dict[tuple[int, int, int, int], list[float]]:
    """``(batch, query, context, pass) -> [visit sample]`` for :func:`~.latency.build_profile`
    (a visit's sample: the median forward over its measuring steps, in wall time, or in
    the worker thread's CPU time for ``clock="cpu"``)."""
    out = {}
    for key, row in log.rows.items():
        _eng, b, q, c, rep = key
        med = _visit_median(row, "fwd" if clock == "wall" else "fwd_cpu")
        if med is not None:
            out[(b, q, c, rep)] = [med]
    return out


def fit_host(log: VisitLog) -> tuple[LineFit, LineFit | None]:
    """(engine host line over batch on plain decode visits, the speculative extra over
    batch and drafts on fixed-width visits); visit medians, every coefficient >= 0."""
    plain_b, plain_ms, spec = [], [], []
    for key, row in log.rows.items():
        eng, b, q, c, _rep = key
        med = _visit_median(row, "host")
        if med is None or c == 0:
            continue
        if eng == "plain":
            plain_b.append(b)
            plain_ms.append(med)
        else:
            spec.append((b, q - 1, med))
    if not plain_b:
        raise InputError("no plain decode visit measured: nothing to fit the host time on")
    engine = fit_line(np.array(plain_b), np.array(plain_ms))
    if not spec:
        return engine, None
    b, n, ms = (np.array(x, dtype=float) for x in zip(*spec, strict=True))
    extra = ms - engine.at(b)
    return engine, fit_shapes(b, np.zeros_like(b), n, extra)


def host_overhead(engine: LineFit, spec: LineFit | None, how: str) -> HostOverhead:
    """The profile's :class:`HostOverhead` from the fitted lines."""
    return HostOverhead(
        step_ms=round(engine.base_ms, 4),
        per_seq_ms=round(engine.per_seq_ms, 4),
        spec_step_ms=round(spec.base_ms, 4) if spec else 0.0,
        spec_per_seq_ms=round(spec.per_seq_ms, 4) if spec else 0.0,
        spec_per_node_seq_ms=round(spec.per_node_seq_ms, 4) if spec else 0.0,
        how=how,
    )


def profile_vllm_latency(
    model_dir: str | Path,
    out: str | Path,
    grid: EngineGrid,
    passes: int,
    *,
    eager: bool = False,
    dtype: str = "bfloat16",
    kv_cache_gib: float = 1.0,
    work_dir: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    on_engine: Callable[[str, Any], None] | None = None,
    frontend: str = "server",
    clock: str = "wall",
) -> tuple[LatencyProfile, dict[str, Any]]:
    """Measure ``model_dir`` through vLLM's server (module docstring) and write its latency
    profile to ``out`` (resumable). ``on_engine(name, engine)`` is called once each engine
    (``plain``, ``fixed``) is up, before its visits (e.g. to serve other runs on it).
    ``frontend``: ``server`` (``vllm serve``, what ``validate --engine vllm`` runs) or
    ``offline`` (the ``LLM`` class in this process); the profile records which.
    ``clock``: the forwards' ``wall`` time (default) or the worker thread's ``cpu`` time
    (what an unshared core would show: steady on a busy machine, below the wall time the
    live runs there see).

    Returns:
        (the profile, a summary: points, leave-one-out error, start-up and wall seconds).

    Raises:
        InputError: vLLM missing, a bad model directory, a partial file of another setup.
        EngineFailed: the server failed to start or died.
    """
    from spectune.profiler.engines.vllm_config import (
        VllmSettings,
        VllmSpec,
        check_model_dir,
        require_vllm,
    )
    from spectune.profiler.engines.vllm_offline import VllmOffline
    from spectune.profiler.engines.vllm_server import VllmServer
    from spectune.profiler.runtime.checkpoint import read_config
    from spectune.profiler.runtime.timing import device_info

    from .latency import build_profile, model_arch, model_id

    version = require_vllm()
    model_dir = check_model_dir(model_dir)
    cfg = read_config(model_dir)
    if max(grid.prefills) > cfg.max_position_embeddings or (
        max(grid.contexts) + grid.decode_tokens > cfg.max_position_embeddings
    ):
        raise InputError(
            f"the grid exceeds the model's {cfg.max_position_embeddings} positions",
            field="--contexts",
        )
    out = Path(out)
    work = Path(work_dir) if work_dir else out.with_name(out.stem + ".engine")
    mode = "eager" if eager else "compiled"
    if frontend not in ("server", "offline"):
        raise InputError(f"must be server or offline, got {frontend!r}", field="--vllm-frontend")
    engine_name = f"vllm-{frontend}"
    header = {
        **model_id(cfg, dtype, "cpu"),
        "engine": engine_name,
        "vllm": version,
        "mode": mode,
        "grid": asdict(grid),
    }
    log = VisitLog(out.with_name(out.name + ".partial.jsonl"), header)

    def make(name: str, drafts: int) -> LiveEngine:
        spec = VllmSpec("fixed", drafts) if name == "fixed" else None
        st = VllmSettings(
            model=model_dir,
            dtype=dtype,
            max_num_seqs=max(grid.batches),
            spec=spec,
            enforce_eager=eager,
            kv_cache_gib=kv_cache_gib,
            seed=seed,
        )
        return VllmServer(st, work) if frontend == "server" else VllmOffline(st, work)

    t0 = time.perf_counter()
    pool = PromptSource.random(cfg.vocab_size, 50_000, seed)
    starts = measure_engine(
        EngineProfileRun(make, grid, passes, pool, seed, on_engine), log, progress
    )
    wall = time.perf_counter() - t0
    if clock not in ("wall", "cpu"):
        raise InputError(f"must be wall or cpu, got {clock!r}", field="--clock")
    samples = point_samples(log, clock)
    points = sorted({(b, q, c) for (b, q, c, _r) in samples})
    if not points:
        raise InputError("no visit produced a usable sample", source=log.path)
    how = (
        f"spectune profile latency --engine vllm: vLLM {version} {engine_name} ({mode}), "
        f"{len(points)} points x {passes} passes in seeded random order; decode/verify: "
        f"B requests of {grid.decode_tokens} tokens at context c +- {grid.decode_tokens // 2} "
        "(verify widths from a fixed-width proposer), prefill: one request at a time; a "
        "visit's sample is the median of the target forward (vLLM's _model_forward, timed "
        "in its worker) over its steps; median over passes, visits over "
        f"{STALL_RATIO:g}x the fastest dropped; "
        + ("wall clock" if clock == "wall" else "the worker thread's CPU time, not wall time")
    )
    info = device_info("cpu", dtype)
    software = {
        **info.software,
        "engine": engine_name,
        "vllm": version,
        "mode": mode,
        "worker_threads": "vLLM's (auto binding)",
    }
    arch = model_arch(cfg, Path(model_dir).name)
    profile = build_profile(samples, points, info, arch, how, STALL_RATIO)
    engine_fit, spec_fit = fit_host(log)
    host = host_overhead(
        engine_fit,
        spec_fit,
        "period (execute_model to the next) - target forward - drafter, per decode-only "
        "step; medians per visit; engine line over plain visits, speculative extra over "
        "fixed-width visits (least squares, coefficients >= 0)",
    )
    profile = profile.model_copy(
        update={
            "device": info.model_copy(update={"software": software}),
            "host_overhead": host,
        }
    )
    dump_yaml(profile, out)
    log.path.replace(out.with_name(out.name + ".visits.jsonl"))  # the raw visits, kept
    summary = {
        "out": str(out),
        "points": len(profile.points),
        "cv_error_pct": profile.fit.cv_error_pct if profile.fit else None,
        "cv_max_error_pct": profile.fit.params.get("cv_max_error_pct") if profile.fit else None,
        "host_step_ms": host.step_ms,
        "host_per_seq_ms": host.per_seq_ms,
        "spec_step_ms": host.spec_step_ms,
        "spec_per_seq_ms": host.spec_per_seq_ms,
        "spec_per_node_seq_ms": host.spec_per_node_seq_ms,
        "engine_start_s": {k: round(v["start_s"], 1) for k, v in starts.items()},
        "wall_s": round(wall, 1),
        "vllm": version,
        "mode": mode,
    }
    return profile, summary
