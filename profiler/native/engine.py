"""The live speculative-decoding engine: batched draft + verify steps on real models.

:class:`SpecEngine` runs a target ``DecoderLM`` (:mod:`spectune.profiler.runtime.model`)
with a :class:`~.drafters.Drafter` over a batch of requests with different prompt lengths
(ragged KV-cache lengths, no padding of the context). One :meth:`SpecEngine.step`:

1. prefills the requests added since the last step (target and draft model; prompts of
   equal length share a forward); the prefill's logits give each request's first token,
   as in a serving engine's prefill step;
2. for the requests that were already running: drafts (a chain of up to k tokens, or a
   static tree), verifies all drafts of all sequences in **one** target forward
   (``[root, drafts...]`` per sequence, tree-masked for trees), accepts per sequence
   (greedy or speculative sampling, :mod:`.sampling`), commits the accepted tokens' K/V and
   rolls the rest back (``KVCache`` commit/truncate, no copy for chains);
3. retires requests that reached ``max_new_tokens`` or EOS, compacting the cache slots.

Requests can be added between any two steps (continuous batching) up to ``max_batch``;
:func:`~.generate.generate` runs a prompt list to completion that way.
``k = 0`` without a tree is plain decoding through the same code (the speedup baseline).

Invariant: for a running sequence with tokens ``t[0..L-1]`` the target's cache holds the
K/V of ``t[0..L-2]``; ``t[L-1]`` (the root) is fed at the start of the next verify.

Times are milliseconds of wall clock per step (CUDA is synchronized when used).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spectune.profiler.runtime.kvcache import KVCache
from spectune.profiler.runtime.model import DecoderLM
from spectune.profiler.runtime.timing import Timer
from spectune.simulator.errors import InputError, SpectuneError
from spectune.simulator.tree import Tree

from .drafters import DraftContext, Drafter, cache_view, move_slot
from .sampling import (
    greedy_verify_chain,
    greedy_verify_tree,
    make_generator,
    probs_from_logits,
    sample_from_probs,
    sample_verify_chain,
    sample_verify_tree,
)
from .spec_stats import SpecStats, StepResult

__all__ = ["CapacityError", "SpecEngine", "SpecStats", "StepResult"]


class CapacityError(SpectuneError):
    """A request was added while all ``max_batch`` slots were taken."""


@dataclass
class _Seq:
    request_id: Hashable
    tokens: np.ndarray  # [max_len] buffer; the first `length` entries are valid
    length: int
    prompt_len: int
    max_new_tokens: int

    @property
    def generated(self) -> int:
        return self.length - self.prompt_len

    def view(self) -> np.ndarray:
        return self.tokens[: self.length]


class SpecEngine:
    """Batched speculative decoding (or plain decoding) of a target with a drafter.

    Args:
        target: the target model.
        drafter: a drafter, or None for plain decoding.
        k: chain draft length (0 = plain decoding); ignored when ``tree`` is given.
        tree: a static draft tree (``Tree.from_paths(...)``), or None for a chain.
        temperature: 0 = greedy; > 0 = sampling (speculative sampling for chains,
            recursive rejection sampling over the drafter's ranked candidates for trees).
        seed: seed of the sampling stream.
        max_batch: sequences that can run at once (cache slots).
        max_len: cache slots per sequence; prompt + max_new_tokens + the verify width must
            fit.
        eos_token_id: stop a sequence after it emits this token (None = never).

    Raises:
        InputError: k < 0, temperature < 0, max_batch/max_len <= 0, a drafter whose vocab
            differs from the target's, or a k/tree without a drafter.
    """

    def __init__(
        self,
        target: DecoderLM,
        drafter: Drafter | None = None,
        *,
        k: int = 0,
        tree: Tree | None = None,
        temperature: float = 0.0,
        seed: int = 0,
        max_batch: int = 16,
        max_len: int = 1024,
        eos_token_id: int | None = None,
    ):
        if k < 0:
            raise InputError(f"k must be >= 0, got {k}", field="k")
        if not temperature >= 0:
            raise InputError(f"temperature must be >= 0, got {temperature}", field="temperature")
        if max_batch <= 0 or max_len <= 0:
            raise InputError(f"max_batch and max_len must be > 0, got {max_batch}, {max_len}")
        if tree is not None and tree.num_nodes == 0:
            tree = None
        if drafter is None and (k > 0 or tree is not None):
            raise InputError("speculative decoding (k > 0 or a tree) needs a drafter")
        if tree is not None and tree.is_chain:
            k, tree = tree.num_nodes, None  # a chain given as paths: use the chain path
        self.target = target
        self.drafter = drafter if (k > 0 or tree is not None) else None
        self.k = k if tree is None else 0
        self.tree = tree
        self.temperature = float(temperature)
        self.max_batch = max_batch
        self.max_len = max_len
        self.eos_token_id = eos_token_id
        self.device = target.device
        self.generator = make_generator(seed, self.device)
        self._timer = Timer(self.device)
        self.cache = KVCache(target.config, max_batch, max_len, self.device, target.dtype)
        if self.drafter is not None:
            self.drafter.bind(target, max_batch, max_len)
        self._tree_mask = (
            torch.from_numpy(tree.attention_mask()).to(self.device) if tree is not None else None
        )
        self._running: list[_Seq] = []  # slot b holds self._running[b]
        self._waiting: list[_Seq] = []
        self.stats = SpecStats(num_positions=self.query_width - 1)

    # ------------------------------------------------------------------ requests

    @property
    def query_width(self) -> int:
        """Tokens per sequence in one verify forward: 1 + k (chain) or 1 + nodes (tree)."""
        return 1 + (self.tree.num_nodes if self.tree is not None else self.k)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def has_unfinished(self) -> bool:
        return bool(self._running or self._waiting)

    def running_ids(self) -> list[Hashable]:
        """Request ids of the running sequences, in slot order."""
        return [s.request_id for s in self._running]

    def running_lengths(self) -> list[int]:
        """Tokens (prompt + generated) of each running sequence, in slot order: the
        context the next step decodes at."""
        return [s.length for s in self._running]

    def add(self, request_id: Hashable, prompt_ids: Sequence[int], max_new_tokens: int) -> None:
        """Queue a request; its prefill runs at the start of the next :meth:`step`.

        Args:
            request_id: any hashable id, unique among unfinished requests.
            prompt_ids: the prompt's token ids (non-empty, each in [0, vocab)).
            max_new_tokens: tokens to generate at most (>= 1).

        Raises:
            InputError: an empty prompt, an out-of-vocabulary id, max_new_tokens < 1, a
                request too long for ``max_len``, or a duplicate id.
            CapacityError: ``max_batch`` requests are already running or waiting.
        """
        ids = np.asarray(list(prompt_ids), dtype=np.int64)
        vocab = self.target.config.vocab_size
        if ids.size == 0:
            raise InputError(f"request {request_id!r}: empty prompt")
        if ids.min() < 0 or ids.max() >= vocab:
            raise InputError(
                f"request {request_id!r}: token ids must be in [0, {vocab}), got "
                f"{int(ids.min())}..{int(ids.max())}"
            )
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        need = len(ids) + max_new_tokens + self.query_width
        if need > self.max_len:
            raise InputError(
                f"request {request_id!r}: prompt {len(ids)} + max_new_tokens {max_new_tokens} "
                f"+ verify width {self.query_width} = {need} tokens > max_len {self.max_len}"
            )
        if any(s.request_id == request_id for s in (*self._running, *self._waiting)):
            raise InputError(f"request id {request_id!r} is already in the engine")
        if len(self._running) + len(self._waiting) >= self.max_batch:
            raise CapacityError(f"all {self.max_batch} slots are taken")
        buf = np.zeros(self.max_len, dtype=np.int64)
        buf[: len(ids)] = ids
        self._waiting.append(_Seq(request_id, buf, len(ids), len(ids), int(max_new_tokens)))

    def abort(self, request_id: Hashable) -> None:
        """Drop an unfinished request (no-op if unknown)."""
        self._waiting = [s for s in self._waiting if s.request_id != request_id]
        for b, s in enumerate(self._running):
            if s.request_id == request_id:
                self._remove([b])
                return

    # ------------------------------------------------------------------ the step

    def step(self) -> StepResult:
        """Prefill newly added requests, then one draft + verify step for the others.

        Returns:
            The step's new tokens per request, finished requests, counters and times.
        """
        t0 = time.perf_counter()
        res = StepResult.empty(self.query_width - 1)
        with torch.inference_mode():
            n_run = len(self._running)
            if self._waiting:
                with self._timer.measure() as tp:
                    self._prefill(res)
                res.prefill_ms = tp.ms
            if n_run:
                if self.tree is not None:
                    self._tree_step(n_run, res)
                else:
                    self._chain_step(n_run, res)
            done = [b for b, s in enumerate(self._running) if self._is_done(s)]
            res.finished = [self._running[b].request_id for b in done]
            self._remove(done)
        self._timer.synchronize()
        res.total_ms = (time.perf_counter() - t0) * 1e3
        res.overhead_ms = max(0.0, res.total_ms - res.prefill_ms - res.draft_ms - res.verify_ms)
        self.stats.update(res)
        return res

    def _prefill(self, res: StepResult) -> None:
        # Prompts of equal length share one forward (no padding waste); others run alone.
        groups: dict[int, list[_Seq]] = {}
        for seq in self._waiting:
            groups.setdefault(seq.length, []).append(seq)
        for length, group in groups.items():
            first_slot = len(self._running)
            view = cache_view(self.cache, first_slot, first_slot + len(group))
            view.truncate([0] * len(group))
            prompts = np.stack([s.view() for s in group])  # [G, length]
            ids = torch.from_numpy(prompts).to(self.device)
            logits = self.target(ids, view, last_only=True)[:, -1]  # [G, V]
            view.commit(num_tokens=length)
            firsts = self._pick(logits).tolist()
            if self.drafter is not None:
                self.drafter.admit(first_slot, prompts.copy())
            for seq, tok in zip(group, firsts, strict=True):
                self._running.append(seq)
                self._emit(seq, [tok], res)
            res.num_prefills += len(group)
            res.prefill_tokens += length * len(group)
        self._waiting = []

    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """The target's token from logits [B, V]: argmax, or a draw at the temperature."""
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        return sample_from_probs(probs_from_logits(logits, self.temperature), self.generator)

    def _context(self, n: int) -> DraftContext:
        return DraftContext(
            [s.view() for s in self._running[:n]],
            cache_view(self.cache, 0, n),
            self.temperature,
            self.generator,
        )

    def _chain_step(self, n: int, res: StepResult) -> None:
        seqs = self._running[:n]
        dev = self.device
        # Never draft past what a sequence may still emit (accepted + 1 <= remaining).
        caps = np.array([min(self.k, s.max_new_tokens - s.generated - 1) for s in seqs])
        probs = None
        if self.drafter is not None and caps.max(initial=0) > 0:
            with self._timer.measure() as td:
                draft = self.drafter.propose_chain(self._context(n), caps)
            res.draft_ms = td.ms
            num = draft.num_drafts.clamp(max=torch.from_numpy(caps).to(dev))
            width = int(num.max())  # trim columns nobody uses (e.g. n-gram misses)
            drafts, probs = draft.tokens[:, :width], draft.probs
            if probs is not None:
                probs = probs[:, :width]
        else:
            drafts = torch.zeros((n, 0), dtype=torch.long, device=dev)
            num = torch.zeros(n, dtype=torch.long, device=dev)
        roots = torch.tensor([int(s.tokens[s.length - 1]) for s in seqs], device=dev)
        ids = torch.cat([roots[:, None], drafts], dim=1)  # [B, 1 + width]
        cache = cache_view(self.cache, 0, n)
        with self._timer.measure() as tv:
            logits = self.target(ids, cache)  # [B, 1 + width, V]
        res.verify_ms = tv.ms
        if self.temperature == 0:
            verdict = greedy_verify_chain(drafts, logits.argmax(dim=-1), num)
        else:
            target_probs = probs_from_logits(logits, self.temperature)
            verdict = sample_verify_chain(drafts, probs, target_probs, num, self.generator)
        cache.commit(num_tokens=verdict.num_accepted + 1)  # root + accepted drafts
        outs = verdict.output_tokens(drafts)
        res.batch_size, res.query_tokens = n, ids.shape[1]
        res.count(num.tolist(), verdict.num_accepted.tolist())
        for seq, toks in zip(seqs, outs, strict=True):
            self._emit(seq, toks, res)

    def _tree_step(self, n: int, res: StepResult) -> None:
        assert self.tree is not None and self.drafter is not None
        seqs = self._running[:n]
        dev = self.device
        with self._timer.measure() as td:
            draft = self.drafter.propose_tree(self._context(n), self.tree)
        res.draft_ms = td.ms
        roots = torch.tensor([int(s.tokens[s.length - 1]) for s in seqs], device=dev)
        ids = torch.cat([roots[:, None], draft.tokens], dim=1)  # [B, 1 + N]
        cache = cache_view(self.cache, 0, n)
        with self._timer.measure() as tv:
            logits = self.target(ids, cache, tree_mask=self._tree_mask)  # [B, 1 + N, V]
        res.verify_ms = tv.ms
        parents = self.tree.parents
        if self.temperature == 0:
            verdict = greedy_verify_tree(
                parents, draft.tokens, logits.argmax(dim=-1), draft.present
            )
        else:
            target_probs = probs_from_logits(logits, self.temperature)
            verdict = sample_verify_tree(
                parents, draft.tokens, target_probs, self.generator, draft.present
            )
        cache.commit(accepted_slots=[[0, *(i + 1 for i in p)] for p in verdict.accepted_nodes])
        res.batch_size, res.query_tokens = n, ids.shape[1]
        depths = self.tree.depths
        present = draft.present.tolist()
        drafted_depth = [
            max((depths[i] for i, ok in enumerate(row) if ok), default=0) for row in present
        ]
        res.count(
            drafted_depth,
            verdict.num_accepted,
            num_draft_tokens=int(draft.present.sum()),
        )
        for seq, toks in zip(seqs, verdict.output_tokens(draft.tokens), strict=True):
            self._emit(seq, toks, res)

    # ------------------------------------------------------------------ bookkeeping

    def _emit(self, seq: _Seq, toks: list[int], res: StepResult) -> None:
        """Append a step's tokens, cut at max_new_tokens and after EOS."""
        toks = toks[: seq.max_new_tokens - seq.generated]
        if self.eos_token_id is not None and self.eos_token_id in toks:
            toks = toks[: toks.index(self.eos_token_id) + 1]
        seq.tokens[seq.length : seq.length + len(toks)] = toks
        seq.length += len(toks)
        res.new_tokens.setdefault(seq.request_id, []).extend(toks)

    def _is_done(self, seq: _Seq) -> bool:
        if seq.generated >= seq.max_new_tokens:
            return True
        last = int(seq.tokens[seq.length - 1])
        return seq.generated > 0 and self.eos_token_id is not None and last == self.eos_token_id

    def _remove(self, slots: list[int]) -> None:
        """Retire the sequences in ``slots``; the last running ones fill the holes."""
        for b in sorted(slots, reverse=True):
            last = len(self._running) - 1
            if b != last:
                move_slot(self.cache, last, b)
                if self.drafter is not None:
                    self.drafter.move(last, b)
                self._running[b] = self._running[last]
            self._running.pop()
