"""Discrete-event simulation of a vLLM-like engine serving speculative decoding (simpy).

Processes on one simpy clock (seconds):

- arrivals: open loop (one process replaying the arrival times), offline (all at t = 0)
  or closed loop (``concurrency`` client processes, each sending the next unsent request
  when its previous one finishes). They append to the scheduler's waiting queue and wake
  the engine when it is idle.
- the engine: a loop of iterations. Before each one the
  :class:`~spectune.simulator.scheduler.Scheduler` evicts on KV overflow, schedules
  prefill chunks and admits FCFS; the iteration is one fused forward priced by
  :class:`~spectune.simulator.stepcost.StepCost`. Every decoding sequence takes one
  speculative step per iteration and emits its own pre-drawn number of tokens (accepted +
  bonus, cut at its output length); a completed prefill emits the first token (TTFT).

Event skipping. Between two *decisions* (a request finishing, an arrival that could be
admitted, a prefill, a KV overflow) consecutive decode iterations differ only in their
contexts, which the pre-drawn token counts determine. The engine therefore plans a run of
``n`` such iterations at once: it computes each iteration's context, cost and end time
with numpy, cuts the run at the first decision point, and advances the clock by one
timeout. The result is iteration-exact (each iteration is priced at its own batch and
context, and a request arriving mid-run is admitted at the first iteration boundary at or
after its arrival, as a real engine polls its input queue between iterations); only the
Python work is per run instead of per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import simpy

from .policy import Seen, Speculation
from .scheduler import Scheduler
from .stepcost import StepCost
from .workload import RequestSet

MAX_RUN_ITERATIONS = 256  # cap on one planned run: bounds the [batch, n] lookahead arrays


@dataclass
class EngineResult:
    """Raw outcome of one engine run (times in seconds since the first arrival)."""

    arrival_s: np.ndarray  # [N]
    first_token_s: np.ndarray  # [N]
    finish_s: np.ndarray  # [N]
    prompt_tokens: np.ndarray  # [N]
    output_tokens: np.ndarray  # [N]
    preemptions: np.ndarray  # [N] evictions per request
    iterations: int = 0  # engine forward passes simulated
    runs: int = 0  # planned runs of iterations (engine timeouts)
    arrivals: int = 0
    decode_steps: int = 0  # Σ over iterations of decoding sequences
    drawn_tokens: int = 0  # decode tokens drawn (accepted + bonus, before the output cut)
    decode_tokens: int = 0  # decode tokens emitted
    prefill_tokens: int = 0  # tokens emitted by completed prefills (first, or after eviction)
    generated: np.ndarray | None = None  # [N] tokens each request emitted
    nodes: int = 0  # speculative tokens per sequence per step
    depth: int = 0  # most drafts one step can accept
    batch_hist: list[int] = field(default_factory=list)  # iterations by sequences in them
    busy_s: float = 0.0
    end_s: float = 0.0
    kv_peak_tokens: int = 0
    kv_cache_tokens: int = 0
    num_preemptions: int = 0
    budget_exceeded_iterations: int = 0  # decode tokens alone exceeded max_batched_tokens
    # Drafters that may draft fewer than `nodes` (n-gram misses): drafted tokens and the
    # sequence-steps that drafted anything (None: every decode step drafted `nodes`).
    drafted_tokens: int | None = None
    drafting_steps: int | None = None
    # With a speculation policy: iterations by the k they ran at (index = k).
    k_hist: list[int] | None = None
    log: list[tuple[str, float, int]] | None = None


class Engine:
    """One simulated engine over one request set (see the module docstring).

    Call order: build, then :meth:`run` once.

    Args:
        requests: the requests (arrival times, or closed-loop concurrency).
        scheduler: the scheduler holding per-request state and queues.
        cost: iteration pricing.
        depth: most drafts one step can accept (for metrics).
        log: keep an ``(event, time, request | batch)`` log (for exact-time tests).
        on_finish: called with the number of requests just finished (progress bars).
        speculation: a speculation policy with its draws and pricers per k (None: the
            scheduler's fixed k and ``cost`` for every iteration).
    """

    def __init__(
        self,
        requests: RequestSet,
        scheduler: Scheduler,
        cost: StepCost,
        *,
        depth: int = 0,
        log: bool = False,
        on_finish: Callable[[int], None] | None = None,
        padded_attention: bool = False,
        speculation: Speculation | None = None,
    ):
        self.env = simpy.Environment()
        self.spec = speculation
        self._last_batch = 0  # sequences in the last iteration (what a policy sees)
        self._run_obs: Seen | None = None
        # True: decode iterations are priced at the batch's longest context, not the mean
        # (serving.attention_context: max).
        self.padded = padded_attention
        self.req = requests
        self.s = scheduler
        self.cost = cost
        self.on_finish = on_finish
        n = requests.num_requests
        self.n = n
        self.log: list[tuple[str, float, int]] | None = [] if log else None
        self.arrival_s = np.full(n, math.nan)
        self.first_s = np.full(n, math.nan)
        self.finish_s = np.full(n, math.nan)
        self._times: list[float] = [] if requests.arrival_s is None else requests.arrival_s.tolist()
        self._delivered = 0
        self._n_done = 0
        self._idle: simpy.Event | None = None
        self._done_events: dict[int, simpy.Event] = {}
        self._clients_pending = False
        self._iter_s: dict[int, float] = {}  # last decode iteration time by batch size
        self._res = EngineResult(
            arrival_s=self.arrival_s,
            first_token_s=self.first_s,
            finish_s=self.finish_s,
            prompt_tokens=requests.prompt_tokens,
            output_tokens=requests.output_tokens,
            preemptions=scheduler.preemptions,
            nodes=scheduler.nodes,
            depth=depth,
            batch_hist=[0] * (scheduler.max_num_seqs + 1),
            kv_cache_tokens=scheduler.capacity,
            log=self.log,
            k_hist=None if speculation is None else [0] * (speculation.policy.kmax + 1),
        )
        if speculation is not None:
            scheduler.count_drafts = True

    # ------------------------------------------------------------------ arrivals

    def _deliver(self, r: int, t: float) -> None:
        self.arrival_s[r] = t
        self.s.waiting.append(r)
        self._delivered += 1
        self._res.arrivals += 1
        if self.log is not None:
            self.log.append(("arrive", t, r))
        if self._idle is not None and not self._idle.triggered:
            self._idle.succeed()

    def _open_arrivals(self) -> Iterator[simpy.Event]:
        env = self.env
        for r, t in enumerate(self._times):
            if t > env.now:
                yield env.timeout(t - env.now)
            self._deliver(r, t)

    def _client(self) -> Iterator[simpy.Event]:
        env = self.env
        while self._delivered < self.n:
            r = self._delivered
            done = self._done_events[r] = env.event()
            self._deliver(r, env.now)
            yield done

    def _next_arrival(self) -> float:
        """Time of the next open-loop arrival not yet delivered (inf if none)."""
        if self.req.arrival_s is None or self._delivered >= self.n:
            return math.inf
        return self._times[self._delivered]

    # ------------------------------------------------------------------ engine

    def run(self) -> EngineResult:
        """Simulate until every request has finished.

        Returns:
            The raw result (see :class:`EngineResult`).
        """
        env = self.env
        if self.req.arrival_s is None:
            for _ in range(min(self.req.concurrency or 1, self.n)):
                env.process(self._client())
        else:
            env.process(self._open_arrivals())
        env.process(self._loop())
        env.run()
        self._res.end_s = env.now
        self._res.kv_peak_tokens = self.s.kv_peak
        self._res.num_preemptions = self.s.num_preemptions
        self._res.generated = self.s.gen
        if self.s.dcum is not None or self.s.count_drafts:
            self._res.drafted_tokens = self.s.drafted_tokens
            self._res.drafting_steps = self.s.drafting_steps
        return self._res

    def _loop(self) -> Iterator[simpy.Event]:
        env, s, res, log = self.env, self.s, self._res, self.log
        while self._n_done < self.n:
            if self._clients_pending or self._next_arrival() <= env.now:
                # Same-time arrivals (clients answering a finish, a trace row due now)
                # land before this boundary's decisions.
                self._clients_pending = False
                yield env.timeout(0)
            now = env.now
            if self.spec is not None:
                k = self.spec.policy.decide(self._policy_batch())
                if k != s.nodes:
                    self._switch(k, now)
            chunks = s.plan(now, log)
            batch = len(s.decoding)
            if not chunks and batch == 0:
                self._idle = env.event()
                yield self._idle
                self._idle = None
                continue
            obs = None
            if chunks:
                ctx = self._priced_ctx(1)[0] if batch else 0.0
                drafts = s.drafts_ahead(1) if batch else None
                ms = self.cost.mixed_ms(batch, ctx, [(c, pre) for _, c, pre in chunks], drafts)
                n, delay = 1, ms / 1000.0
                res.batch_hist[batch + len(chunks)] += 1
                if log is not None:
                    log.append(("iteration", now + delay, batch + len(chunks)))
            else:
                n, delay = self._plan_run(now, batch)
                obs = self._run_obs
            res.iterations += n
            k_now = s.nodes
            if res.k_hist is not None:
                res.k_hist[k_now] += n
                self._last_batch = batch + len(chunks)
            if batch * s.query > s.max_batched_tokens:
                res.budget_exceeded_iterations += n
            res.runs += 1
            res.busy_s += delay
            yield env.timeout(delay)
            now = env.now
            done: list[int] = []
            if batch:
                ids, drawn, emitted = s.advance(n)
                if self.spec is not None and self.spec.policy.observes:
                    seen = obs.head(n) if obs is not None else self._observed_last()
                    self.spec.policy.observe(batch, k_now, seen)
                res.decode_steps += batch * n
                res.drawn_tokens += drawn
                res.decode_tokens += emitted
                if ids.size:
                    done.extend(ids.tolist())
            if chunks:
                for r in s.finish_chunks(chunks):
                    res.prefill_tokens += 1
                    if math.isnan(self.first_s[r]):
                        self.first_s[r] = now
                        if log is not None:
                            log.append(("first_token", now, r))
                    if s.gen[r] >= s.output_l[r]:
                        done.append(r)
            for r in done:
                s.retire(r)
                self.finish_s[r] = now
                if log is not None:
                    log.append(("finish", now, r))
                ev = self._done_events.pop(r, None)
                if ev is not None:
                    ev.succeed()
                    self._clients_pending = True
            if done:
                self._n_done += len(done)
                if self.on_finish is not None:
                    self.on_finish(len(done))

    def _switch(self, k: int, now: float) -> None:
        """Run the next iterations at ``k`` (a policy's decision; logged as ``("k", now,
        k)``)."""
        if self.log is not None:
            self.log.append(("k", now, k))
        d = self.spec.draws(k)  # type: ignore[union-attr]
        self.s.set_k(k, d.cum, d.drafted_cum, d.drafting_cum)
        self.cost = self.spec.cost(k)  # type: ignore[union-attr]

    def _policy_batch(self) -> int:
        """The batch size the policy counts by (:attr:`~.policy.Policy.counts`)."""
        s, counts = self.s, self.spec.policy.counts  # type: ignore[union-attr]
        if counts == "decoding":
            return len(s.decoding)
        if counts == "running":
            return len(s.running)
        return self._last_batch

    def _observed_last(self) -> Seen:
        """What the decode batch accepted in the iteration just advanced (one step)."""
        s = self.s
        tok = s.last_drawn  # [B] tokens each sequence drew
        b = tok.shape[0]
        if s.dcum is None:
            k = s.nodes
            if b <= 32:  # small batches: Python ints beat numpy's per-call cost
                t = tok.tolist()
                rej = sum(1 for x in t if x <= k) if k else 0
                return Seen([sum(t) - b], [rej], [b * k])
            rej = int((tok <= k).sum()) if k else 0
            return Seen([int(tok.sum()) - b], [rej], [b * k])
        p1 = s.ptr[s.dec_ids]
        d = s.dcum[p1] - s.dcum[p1 - 1]
        rej = int(((d > 0) & (tok - 1 < d)).sum())
        return Seen([int(tok.sum()) - b], [rej], [int(d.sum())])

    def _observed(self, n: int) -> Seen:
        """What the decode batch accepts in each of the next ``n`` iterations at the
        current k — what the engine's own counters report after each iteration. A
        sequence *rejected* a draft when it drafted and accepted fewer than it drafted."""
        s = self.s
        p = s.ptr[s.dec_ids][:, None] + np.arange(n + 1)  # [B, n + 1]
        c = s.cum[p]
        tok = c[:, 1:] - c[:, :-1]  # [B, n] tokens per step (accepted + 1)
        b = tok.shape[0]
        acc = tok - 1
        if s.dcum is None:
            drafted = np.full(n, b * s.nodes, dtype=np.int64)
            rejected = (acc < s.nodes).sum(axis=0)
        else:
            dc = s.dcum[p]
            d = dc[:, 1:] - dc[:, :-1]  # [B, n] drafts per step
            drafted = d.sum(axis=0)
            rejected = ((d > 0) & (acc < d)).sum(axis=0)
        return Seen(acc.sum(axis=0).tolist(), rejected.tolist(), drafted.tolist())

    def _priced_ctx(self, n: int) -> np.ndarray:
        """Context the next ``n`` decode iterations are priced at (mean or longest)."""
        s = self.s
        if self.padded:
            return s.context_max_ahead(n).astype(float)
        return s.context_ahead(n) / len(s.decoding)

    def _plan_run(self, now: float, batch: int) -> tuple[int, float]:
        """Plan ``n`` decode-only iterations up to the next decision; return (n, seconds)."""
        s, cost = self.s, self.cost
        n = min(s.steps_to_finish(), MAX_RUN_ITERATIONS)
        self._run_obs = None
        if self.spec is not None:
            # A policy that may change k after an iteration makes it a decision point.
            pol = self.spec.policy
            if pol.observes:
                seen = self._run_obs = self._observed(n)
            else:
                z = [0] * n
                seen = Seen(z, z, z)
            n = pol.horizon(batch, s.nodes, seen)
        t_next = math.inf
        if not s.waiting and len(s.running) < s.max_num_seqs:
            # An arrival could be admitted at once: the run must stop at the first
            # iteration boundary at or after it. (With a non-empty queue, nothing new is
            # admitted before a finish, which ends the run anyway.)
            t_next = self._next_arrival()
        if n > 1 and t_next < math.inf:
            # Price only the iterations that can end before the arrival: the last run's
            # iteration time at this batch size is a good (and free) estimate; a wrong one
            # only costs an extra run or a few unused prices, never a different result.
            iter_s = self._iter_s.get(batch)
            if iter_s is None:
                iter_s = float(cost.decode_ms(batch, self._priced_ctx(1))[0]) / 1000.0
            n = max(1, min(n, int((t_next - now) / iter_s) + 2))
        ctx = s.context_ahead(n)  # [n] Σ context before each iteration
        kv = None
        if s.recompute:
            kv = s.pf_reserved + ctx + batch * s.nodes
            over = np.flatnonzero(kv > s.capacity)
            if over.size:
                n = int(over[0])  # >= 1: plan() made the first iteration fit
                ctx = ctx[:n]
        priced = s.context_max_ahead(n).astype(float) if self.padded else ctx / batch
        elapsed = np.cumsum(cost.decode_ms(batch, priced, s.drafts_ahead(n)) / 1000.0)
        ends = now + elapsed  # the same additions simpy makes, so ends[-1] == env.now
        if t_next < math.inf:
            k = int(np.searchsorted(ends, t_next))  # first boundary >= the arrival
            if k < n:
                n = k + 1
        self._iter_s[batch] = float(elapsed[n - 1] - elapsed[n - 2]) if n > 1 else float(elapsed[0])
        if kv is not None and kv[n - 1] > s.kv_peak:
            s.kv_peak = int(kv[n - 1])
        self._res.batch_hist[batch] += n
        if self.log is not None:
            self.log.extend(("iteration", float(e), batch) for e in ends[:n])
        return n, float(elapsed[n - 1])
