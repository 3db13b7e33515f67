"""vLLM-like iteration scheduler: FCFS admission, chunked prefill, KV-cache accounting.

State only, no clock: :class:`~spectune.simulator.engine.Engine` asks :meth:`Scheduler.plan`
what to run in the next iteration and reports back what happened.

Rules (one iteration):

1. Decoding sequences come first: each verifies ``nodes + 1`` query tokens, counted
   against ``max_batched_tokens`` before any prefill (vLLM schedules running requests
   first).
2. Sequences still prefilling (admission order) get chunks from the remaining token budget.
3. Waiting requests are admitted FCFS while ``running < max_num_seqs``, the budget is not
   spent and the KV cache has room; the queue head blocks the rest (no skipping).

KV cache, in tokens (``kv_cache_tokens``). A decoding sequence holds prompt + generated +
``nodes`` (the speculative slots written by its verify pass); a prefilling sequence holds
its whole prefill, reserved at admission. Two policies (``serving.preemption``):

- ``recompute`` (vLLM's default): admit when the prefill + 1 + nodes fits now. When the
  running sequences' growth would overflow the cache before an iteration, the most
  recently admitted running sequence is evicted to the *head* of the waiting queue; it
  loses its cache and later re-prefills prompt + generated tokens (that prefill emits its
  next token, as vLLM's does), keeping its first-token time.
- ``queue``: admit only when the whole request (prompt + output + nodes) fits next to the
  other admitted requests' whole reservations. Nothing is ever evicted; requests wait
  instead.

Token counts are ints; per-request state lives in numpy arrays so the engine can advance
the whole decode batch with a few vectorised operations.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .errors import InputError


class Scheduler:
    """Queues and KV accounting of one engine (see the module docstring).

    Args:
        prompt: [N] prompt tokens.
        output: [N] output tokens.
        cum, off: pre-drawn cumulative tokens per decode step (see
            :func:`~spectune.simulator.acceptance.draw_request_steps`).
        drafted_cum, drafting_cum: cumulative drafted tokens and drafting steps in the
            same blocks, for drafters that may draft fewer than ``nodes`` (None: every
            step drafts ``nodes``).
        nodes: speculative tokens per sequence per step (0 = plain decoding).
        max_num_seqs, max_batched_tokens, kv_cache_tokens: serving limits.
        policy: ``recompute`` or ``queue``.

    Raises:
        InputError: a request cannot fit the KV cache even alone.
    """

    def __init__(
        self,
        prompt: np.ndarray,
        output: np.ndarray,
        cum: np.ndarray,
        off: np.ndarray,
        *,
        nodes: int,
        max_num_seqs: int,
        max_batched_tokens: int,
        kv_cache_tokens: int,
        policy: str,
        drafted_cum: np.ndarray | None = None,
        drafting_cum: np.ndarray | None = None,
    ):
        n = prompt.shape[0]
        self.dcum = drafted_cum
        self.scum = drafting_cum
        self.drafted_tokens = 0  # totals over decode steps (variable drafts only)
        self.drafting_steps = 0
        self.prompt = prompt
        self.output = output
        self.cum = cum
        self.off = off
        self.nodes = nodes
        self.query = nodes + 1
        # Speculative slots a `queue` reservation holds: the largest k a policy may pick
        # (set_k changes `nodes` per iteration; reservations must not drift with it).
        self.reserve_nodes = nodes
        self.count_drafts = False  # set_k callers: book drafted tokens per step too
        self.max_num_seqs = max_num_seqs
        self.max_batched_tokens = max_batched_tokens
        self.capacity = kv_cache_tokens
        self.recompute = policy == "recompute"
        need = prompt + output + nodes
        if n and int(need.max()) > kv_cache_tokens:
            i = int(np.argmax(need))
            raise InputError(
                f"request {i} needs {int(need[i])} KV tokens (prompt {int(prompt[i])} + output "
                f"{int(output[i])} + {nodes} speculative) but the cache holds {kv_cache_tokens}",
                field="serving.kv_cache_tokens",
            )
        # Per-request state.
        self.gen = np.zeros(n, dtype=np.int64)  # tokens generated so far
        self.ptr = off.copy()  # position in cum: off + decode steps taken
        self.fin = np.zeros(n, dtype=np.int64)  # ptr at which the request is done
        self.prompt_l = prompt.tolist()  # Python copies for scalar work
        self.output_l = output.tolist()
        self.pf_len = [0] * n  # tokens of the current prefill (prompt, or + generated)
        self.pf_done = [0] * n  # of which already computed
        self.preemptions = np.zeros(n, dtype=np.int64)
        # Queues.
        self.waiting: deque[int] = deque()
        self.running: list[int] = []  # admission order, prefilling and decoding
        self.prefilling: list[int] = []  # admission order
        self.decoding: list[int] = []
        self._dec_ids: np.ndarray | None = np.zeros(0, dtype=np.int64)
        # KV accounting.
        self.dec_ctx = 0  # Σ over decoding of prompt + generated
        self.pf_reserved = 0  # Σ over prefilling of pf_len (recompute)
        self.reserved = 0  # Σ over running of prompt + output + nodes (queue)
        self.num_preemptions = 0
        self.kv_peak = 0

    # ------------------------------------------------------------------ views

    @property
    def dec_ids(self) -> np.ndarray:
        """Decoding request ids as an int64 array (cached until the set changes)."""
        if self._dec_ids is None:
            self._dec_ids = np.array(self.decoding, dtype=np.int64)
        return self._dec_ids

    def kv_used(self) -> int:
        """KV tokens the next iteration needs (before any new admission)."""
        if self.recompute:
            return self.pf_reserved + self.dec_ctx + len(self.decoding) * self.nodes
        return self.reserved

    # ------------------------------------------------------------------ planning

    def plan(self, now: float, log: list | None = None) -> list[tuple[int, int, int]]:
        """Decide the next iteration: evict on overflow, schedule prefill chunks, admit.

        Args:
            now: current time (for the log only).
            log: optional event log, appended with ``(event, time, request)``.

        Returns:
            Prefill chunks ``[(request, tokens, prefix tokens already computed)]``; the
            decoding set (:attr:`decoding`) runs one step as well.
        """
        if self.recompute:
            while self.kv_used() > self.capacity:
                assert len(self.running) > 1, "a lone request always fits (checked at init)"
                self._evict(self.running[-1], now, log)
        budget = self.max_batched_tokens - len(self.decoding) * self.query
        chunks: list[tuple[int, int, int]] = []
        for r in self.prefilling:
            if budget <= 0:
                break
            c = min(self.pf_len[r] - self.pf_done[r], budget)
            chunks.append((r, c, self.pf_done[r]))
            budget -= c
        waiting = self.waiting
        while waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            r = waiting[0]
            pf = self.prompt_l[r] + int(self.gen[r])
            if self.recompute:
                if self.kv_used() + pf + 1 + self.nodes > self.capacity:
                    break
                self.pf_reserved += pf
            else:
                need = self.prompt_l[r] + self.output_l[r] + self.reserve_nodes
                if self.reserved + need > self.capacity:
                    break
                self.reserved += need
            waiting.popleft()
            self.running.append(r)
            self.prefilling.append(r)
            self.pf_len[r] = pf
            self.pf_done[r] = 0
            c = min(pf, budget)
            chunks.append((r, c, 0))
            budget -= c
            if log is not None:
                log.append(("admit", now, r))
        kv = self.kv_used()
        if kv > self.kv_peak:
            self.kv_peak = kv
        return chunks

    def _evict(self, r: int, now: float, log: list | None) -> None:
        """Preempt ``r`` (recompute): free its cache, put it at the queue head."""
        self.running.remove(r)
        if r in self.prefilling:
            self.prefilling.remove(r)
            self.pf_reserved -= self.pf_len[r]
        else:
            self.decoding.remove(r)
            self._dec_ids = None
            self.dec_ctx -= self.prompt_l[r] + int(self.gen[r])
        self.pf_done[r] = 0
        self.waiting.appendleft(r)
        self.preemptions[r] += 1
        self.num_preemptions += 1
        if log is not None:
            log.append(("preempt", now, r))

    # ------------------------------------------------------------------ progress

    def finish_chunks(self, chunks: list[tuple[int, int, int]]) -> list[int]:
        """Book computed prefill chunks; return requests whose prefill completed.

        A completed prefill emits one token (the first, or the next after a recompute);
        the request then decodes, or is done if that was its last token.
        """
        completed = []
        for r, c, _ in chunks:
            self.pf_done[r] += c
            if self.pf_done[r] < self.pf_len[r]:
                continue
            completed.append(r)
            self.prefilling.remove(r)
            if self.recompute:
                self.pf_reserved -= self.pf_len[r]
            g = int(self.gen[r]) + 1
            self.gen[r] = g
            if g >= self.output_l[r]:
                continue  # done: the engine retires it
            self._set_fin(r, g)  # decode from here
            self.decoding.append(r)
            self._dec_ids = None
            self.dec_ctx += self.prompt_l[r] + g
        return completed

    def _set_fin(self, r: int, g: int) -> None:
        """The step at which request ``r`` (``g`` tokens generated) reaches its output
        length, at the current per-step draws."""
        p = int(self.ptr[r])
        block = self.cum[p : int(self.off[r]) + self.output_l[r] + 1]
        self.fin[r] = p + int(np.searchsorted(block, self.cum[p] + self.output_l[r] - g))

    def set_k(
        self,
        k: int,
        cum: np.ndarray,
        drafted_cum: np.ndarray | None,
        drafting_cum: np.ndarray | None,
    ) -> None:
        """Speculate ``k`` tokens per sequence from the next iteration on (a speculation
        policy's decision), with the per-step draws at that k (same slots as the current
        ones: a step's random numbers do not depend on its k). Decoding requests' finishing
        steps are recomputed from where they stand."""
        self.nodes = k
        self.query = k + 1
        self.cum = cum
        self.dcum = drafted_cum
        self.scum = drafting_cum
        for r in self.decoding:
            self._set_fin(r, int(self.gen[r]))

    def retire(self, r: int) -> None:
        """Remove a finished request from the running set and free its cache."""
        self.running.remove(r)
        if not self.recompute:
            self.reserved -= self.prompt_l[r] + self.output_l[r] + self.reserve_nodes
        if r in self.decoding:
            self.decoding.remove(r)
            self._dec_ids = None
            self.dec_ctx -= self.prompt_l[r] + int(self.gen[r])

    # ------------------------------------------------------------------ decode batch

    def steps_to_finish(self) -> int:
        """Iterations until the first decoding request finishes (>= 1)."""
        ids = self.dec_ids
        return int((self.fin[ids] - self.ptr[ids]).min())

    def _drawn_ahead(self, n: int) -> np.ndarray:
        """[B, n]: tokens each decoding request draws between now and the start of each of
        the next ``n`` iterations (column 0 is 0)."""
        p = self.ptr[self.dec_ids]
        return self.cum[p[:, None] + np.arange(n)] - self.cum[p][:, None]

    def context_ahead(self, n: int) -> np.ndarray:
        """Σ context (prompt + generated) of the decode batch before each of the next
        ``n`` iterations (n <= :meth:`steps_to_finish`, so nobody finishes in between).

        Returns:
            int64 [n].
        """
        if n == 1:
            return np.array([self.dec_ctx], dtype=np.int64)
        return self.dec_ctx + self._drawn_ahead(n).sum(axis=0)

    def context_max_ahead(self, n: int) -> np.ndarray:
        """The decode batch's longest context (prompt + generated) before each of the next
        ``n`` iterations (n <= :meth:`steps_to_finish`).

        Returns:
            int64 [n].
        """
        ids = self.dec_ids
        base = self.prompt[ids] + self.gen[ids]
        if n == 1:
            return np.array([base.max()], dtype=np.int64)
        return (base[:, None] + self._drawn_ahead(n)).max(axis=0)

    def drafts_ahead(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """([n] drafted tokens summed over the decode batch, [n] its widest draft) in each
        of the next ``n`` iterations (n <= :meth:`steps_to_finish`), or None when every
        step drafts ``nodes``."""
        if self.dcum is None:
            return None
        p = self.ptr[self.dec_ids]
        if n == 1:
            one = self.dcum[p + 1] - self.dcum[p]  # [B]
            return np.array([one.sum()]), np.array([one.max()])
        p = p[:, None] + np.arange(n)
        per = self.dcum[p + 1] - self.dcum[p]  # [B, n]
        return per.sum(axis=0), per.max(axis=0)

    def advance(self, n: int) -> tuple[np.ndarray, int, int]:
        """Advance every decoding request by ``n`` steps.

        Returns:
            (ids that reached their output length, tokens drawn (accepted + bonus, before
            the cut at the output length), tokens emitted).
        """
        ids = self.dec_ids
        p = self.ptr[ids]
        p1 = p + n
        drawn = self.cum[p1] - self.cum[p]
        self.last_drawn = drawn  # [B] per sequence (a policy's one-step observation)
        g0 = self.gen[ids]
        g1 = np.minimum(g0 + drawn, self.output[ids])
        self.gen[ids] = g1
        self.ptr[ids] = p1
        emitted = int(g1.sum() - g0.sum())
        self.dec_ctx += emitted
        if self.dcum is not None and self.scum is not None:
            self.drafted_tokens += int((self.dcum[p1] - self.dcum[p]).sum())
            self.drafting_steps += int((self.scum[p1] - self.scum[p]).sum())
        elif self.count_drafts and self.nodes:
            self.drafted_tokens += ids.size * n * self.nodes
            self.drafting_steps += ids.size * n
        return ids[p1 >= self.fin[ids]], int(drawn.sum()), emitted
