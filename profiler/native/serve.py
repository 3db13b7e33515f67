"""The live serving driver: the real SD engine under the simulator's workloads and scheduler.

:func:`serve` runs one scenario's workload through a :class:`~.engine.SpecEngine` in real
wall-clock time and measures what ``spectune simulate`` predicts, with the same code:

- **Requests.** The request list (prompt and output lengths, open-loop arrival times) comes
  from :func:`spectune.simulator.workload.build_requests` with the random streams spawned
  exactly as :func:`spectune.simulator.api.simulate` spawns them, so for one seed the live
  run and the simulation serve the same requests. Prompt *content* comes from a
  :class:`PromptSource` (windows of a token corpus) on a fifth stream. Every request
  generates exactly its output length (no EOS stop).
- **Workload modes.** ``open``: request ``r`` arrives at ``arrival_s[r]`` seconds after the
  run starts (Poisson/gamma, or the trace's own gaps divided by ``time_scale``); the driver
  sleeps until the next arrival when the engine is idle. ``closed``: ``concurrency``
  clients, each sending its next request the moment its previous one finishes.
  ``offline``: everything arrives at t = 0.
- **Scheduler** (the DES's rules, :mod:`spectune.simulator.scheduler`, where the live
  engine can do them). Between two engine steps the driver delivers the arrivals that are
  due and admits waiting requests FCFS (the queue head blocks the rest) while fewer than
  ``max_num_seqs`` run, the prompts fit the iteration's token budget
  (``max_batched_tokens`` minus ``(nodes + 1)`` per decoding sequence) and the KV cache
  has room. Differences, by necessity: the live engine prefills a prompt whole, never in
  chunks (the DES chunks only when a prompt exceeds the budget: validation scenarios use a
  budget for which it never does, see :func:`check_comparable`); the KV rule is the
  DES's ``queue`` policy (reserve prompt + output + nodes at admission, never evict), since
  the engine cannot preempt. One engine step = the new requests' prefills (each emits its
  first token) plus one draft + verify step for every sequence already running, which is
  the DES's iteration.
- **Clock.** Times are seconds since the run started (``time.perf_counter``). With
  ``realtime=False`` (tests) idle gaps are skipped instead of slept, on a virtual clock.

Results: :class:`LiveResult` whose ``metrics`` are computed by
:func:`spectune.simulator.metrics.compute_metrics` from an
:class:`~spectune.simulator.engine.EngineResult` filled with the measured times, so predicted
and measured metrics share one definition; plus per-step timings (``steps``) that split each
iteration into prefill / draft / verify / engine overhead / driver time.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from spectune.simulator.api import resolve_tree
from spectune.simulator.engine import EngineResult
from spectune.simulator.errors import InputError
from spectune.simulator.metrics import compute_metrics
from spectune.simulator.scenario import ResolvedScenario
from spectune.simulator.workload import RequestSet

from ..live import LiveResult, LiveWorkload, PromptSource, StepLog, build_workload, step_summary

# --------------------------------------------------------------------------- the driver


def check_comparable(rs: ResolvedScenario, requests: RequestSet) -> None:
    """Refuse scenarios where the DES would do what the live engine cannot.

    Raises:
        InputError: a prompt the DES would prefill in chunks (longer than the token budget
            left beside a full decode batch), or a KV cache the DES could run out of while
            the live engine holds every admitted request whole (``preemption: recompute``
            with a cache smaller than ``max_num_seqs`` of the largest requests).
    """
    sv = rs.scenario.serving
    nodes = resolve_tree(rs).num_nodes
    budget = sv.max_batched_tokens - (sv.max_num_seqs - 1) * (nodes + 1)
    longest = int(requests.prompt_tokens.max(initial=0))
    if longest > budget:
        raise InputError(
            f"max_batched_tokens {sv.max_batched_tokens} lets the simulator chunk a "
            f"{longest}-token prompt; the live engine prefills whole prompts: raise it to >= "
            f"{longest + (sv.max_num_seqs - 1) * (nodes + 1)}",
            source=rs.source,
            field="serving.max_batched_tokens",
        )
    need = requests.prompt_tokens + requests.output_tokens + nodes
    worst = int(np.sort(need)[::-1][: sv.max_num_seqs].sum()) if need.size else 0
    if sv.preemption == "recompute" and rs.kv_cache_tokens < worst:
        raise InputError(
            f"kv_cache_tokens {rs.kv_cache_tokens} can make the simulator preempt; the live "
            f"engine cannot: use preemption: queue or >= {worst} tokens",
            source=rs.source,
            field="serving.kv_cache_tokens",
        )


def serve(
    rs: ResolvedScenario,
    target: Any,
    drafter: Any,
    prompts: PromptSource | None,
    seed: int | None = None,
    *,
    workload: LiveWorkload | None = None,
    realtime: bool = True,
    warmup_steps: int = 3,
    on_finish: Callable[[int], None] | None = None,
    time_limit_s: float | None = None,
) -> LiveResult:
    """Serve the scenario's workload live with its spec config.

    Args:
        rs: resolved scenario (workload, serving limits, spec, SLOs).
        target: the target :class:`~spectune.profiler.runtime.model.DecoderLM`.
        drafter: a fresh :class:`~.drafters.Drafter` for ``rs``'s spec (None for plain
            decoding); it is bound to this run's engine.
        prompts: where prompt content comes from (unused when ``workload`` is given).
        seed: the run's seed (None = the scenario's); the same seed as ``simulate``
            gives the same requests.
        workload: the requests and prompts to serve, already built
            (:func:`~spectune.profiler.live.build_workload`); default: built from
            ``rs``, ``prompts`` and ``seed``.
        realtime: sleep until arrivals; False skips idle time on a virtual clock (tests).
        warmup_steps: untimed steps on a throw-away request before the clock starts.
        on_finish: called with the number of requests just finished (progress bars).
        time_limit_s: stop with an InputError when a run takes longer than this.

    Returns:
        The measured result.

    Raises:
        InputError: an incomparable scenario (:func:`check_comparable`), a request too
            long for the model, a run over ``time_limit_s``.
    """
    import torch

    from .engine import SpecEngine

    sc = rs.scenario
    if workload is None:
        if prompts is None:
            raise InputError("serve() needs prompts or a workload")
        workload = build_workload(rs, prompts, seed)
    seed = workload.seed
    req = workload.requests
    check_comparable(rs, req)
    n = req.num_requests
    tree = resolve_tree(rs)
    nodes = tree.num_nodes
    prompt_l = req.prompt_tokens.tolist()
    output_l = req.output_tokens.tolist()
    contents = workload.prompts
    max_len = max(p + o for p, o in zip(prompt_l, output_l, strict=True)) + nodes + 4
    limit = target.config.max_position_embeddings
    if max_len > limit:
        raise InputError(
            f"a request needs {max_len} positions but the target has {limit}; cap the "
            "workload's lengths",
            source=rs.source,
            field="workload",
        )
    torch.manual_seed(seed)
    engine = SpecEngine(
        target,
        drafter if nodes else None,
        k=nodes if tree.is_chain else 0,
        tree=None if tree.is_chain or nodes == 0 else tree,
        temperature=0.0,
        seed=seed,
        max_batch=sc.serving.max_num_seqs,
        max_len=max_len,
    )
    _warm_up(engine, contents[0], warmup_steps)

    sv = sc.serving
    query = nodes + 1
    arrival = np.full(n, np.nan)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    gen = [0] * n
    outputs: list[list[int]] = [[] for _ in range(n)]
    hist = [0] * (sv.max_num_seqs + 1)
    steps = StepLog()
    waiting: deque[int] = deque()
    times = None if req.arrival_s is None else req.arrival_s.tolist()
    delivered = 0
    done = 0
    reserved = 0  # KV tokens held by admitted requests (queue policy)
    decode_steps = accepted = decode_tokens = 0
    busy_s = 0.0
    skip = 0.0  # virtual time skipped while idle (realtime=False)
    gc.collect()  # before the clock starts: a full collection takes ~0.1 s here
    t0 = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - t0 + skip

    def deliver(r: int, t: float) -> None:
        nonlocal delivered
        arrival[r] = t
        waiting.append(r)
        delivered += 1

    if times is None:  # closed loop: every client sends its first request at t = 0
        for _ in range(min(req.concurrency or 1, n)):
            deliver(delivered, 0.0)
    # No garbage-collector pauses inside the timed loop (serving engines freeze the GC
    # too); the loop allocates little, and collection resumes after the run.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t_prev = clock()
        while done < n:
            now = clock()
            if time_limit_s is not None and now > time_limit_s:
                raise InputError(f"live run exceeded its time limit of {time_limit_s:g} s")
            while times is not None and delivered < n and times[delivered] <= now:
                deliver(delivered, times[delivered])
            # FCFS admission: the head blocks the rest.
            budget = sv.max_batched_tokens - engine.num_running * query
            admitted = 0
            while waiting and engine.num_running + engine.num_waiting < sv.max_num_seqs:
                r = waiting[0]
                need = prompt_l[r] + output_l[r] + nodes
                if reserved + need > rs.kv_cache_tokens:
                    break
                if prompt_l[r] > budget and (admitted or engine.num_running):
                    break
                waiting.popleft()
                engine.add(r, contents[r], output_l[r])
                reserved += need
                budget -= prompt_l[r]
                admitted += 1
            if not engine.has_unfinished():
                if times is None or delivered >= n:
                    raise AssertionError("idle with nothing to wait for")  # internal invariant
                wait = times[delivered] - clock()
                if wait > 0:
                    if realtime:
                        time.sleep(wait)
                    else:
                        skip += wait
                t_prev = clock()
                continue
            ctx, ctx_max = _decode_context(engine)
            start = clock()
            step = engine.step()
            now = clock()
            steps.start_s.append(start)
            steps.batch.append(step.batch_size)
            steps.query.append(step.query_tokens)
            steps.context.append(ctx)
            steps.context_max.append(ctx_max)
            steps.prefills.append(step.num_prefills)
            steps.prefill_tokens.append(step.prefill_tokens)
            steps.prefill_ms.append(step.prefill_ms)
            steps.draft_ms.append(step.draft_ms)
            steps.verify_ms.append(step.verify_ms)
            steps.overhead_ms.append(step.overhead_ms)
            steps.total_ms.append(step.total_ms)
            steps.driver_ms.append((start - t_prev) * 1e3)
            busy_s += now - t_prev
            t_prev = now
            hist[min(step.batch_size + step.num_prefills, sv.max_num_seqs)] += 1
            if step.batch_size:
                decode_steps += step.batch_size
                accepted += step.num_accepted_tokens
                decode_tokens += step.num_new_tokens - step.num_prefills
            for rid, toks in step.new_tokens.items():
                if np.isnan(first[rid]):
                    first[rid] = now
                gen[rid] += len(toks)
                outputs[rid].extend(toks)
            for rid in step.finished:
                assert gen[rid] == output_l[rid], (rid, gen[rid], output_l[rid])
                finish[rid] = now
                reserved -= prompt_l[rid] + output_l[rid] + nodes
                done += 1
                if times is None and delivered < n:
                    deliver(delivered, now)
            if step.finished and on_finish is not None:
                on_finish(len(step.finished))

    finally:
        if gc_was_enabled:
            gc.enable()

    res = EngineResult(
        arrival_s=arrival,
        first_token_s=first,
        finish_s=finish,
        prompt_tokens=req.prompt_tokens,
        output_tokens=req.output_tokens,
        preemptions=np.zeros(n, dtype=np.int64),
        iterations=len(steps.total_ms),
        runs=len(steps.total_ms),
        arrivals=n,
        decode_steps=decode_steps,
        drawn_tokens=decode_steps + accepted,
        decode_tokens=decode_tokens,
        nodes=nodes,
        depth=tree.max_depth,
        batch_hist=hist,
        busy_s=busy_s,
        end_s=float(np.nanmax(finish)) if n else 0.0,
        kv_cache_tokens=rs.kv_cache_tokens,
    )
    metrics = compute_metrics(res, sc.slo)
    metrics["config"] = {
        "drafter": "none" if nodes == 0 else sc.spec.drafter,
        "num_spec_tokens": nodes,
        "tree": None if nodes == 0 or sc.spec.tree is None else tree.paths(),
        "tree_depth": tree.max_depth,
        "max_num_seqs": sv.max_num_seqs,
        "workload_mode": req.mode,
        "seed": seed,
    }
    metrics["live"] = step_summary(steps)
    return LiveResult(metrics, res, steps, outputs)


def _warm_up(engine: Any, prompt: np.ndarray, steps: int) -> None:
    """A few untimed steps on a throw-away request (first forwards pay one-off costs)."""
    if steps <= 0:
        return
    width = engine.query_width
    prompt = prompt[: max(1, min(len(prompt), engine.max_len // 2))]
    new_tokens = max(1, min(steps * width, engine.max_len - len(prompt) - width))
    engine.add("__warmup__", prompt, new_tokens)
    for _ in range(steps):
        if not engine.has_unfinished():
            break
        engine.step()
    engine.abort("__warmup__")


def _decode_context(engine: Any) -> tuple[float, float]:
    """Mean and longest tokens (prompt + generated) of the sequences the next step decodes."""
    running = engine._running  # read-only peek; the engine has no public accessor
    if not running:
        return 0.0, 0.0
    lengths = [s.length for s in running]
    return float(np.mean(lengths)), float(max(lengths))
