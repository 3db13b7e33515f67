"""Drafters of the live engine: a separate draft model, the target's first layers, n-grams.

Every drafter implements :class:`Drafter`. The engine keeps its running sequences in cache
slots ``0..n-1`` (contiguous; it compacts when one finishes) and calls, in this order:

1. :meth:`Drafter.bind` once, before anything else (batch slots, cache length, the target).
2. :meth:`Drafter.admit` when sequences enter slots ``s, s+1, ...``, right after the
   target's prefill of their (equal-length) prompts (a draft model prefills its own cache
   here).
3. Each step, :meth:`Drafter.propose_chain` or :meth:`Drafter.propose_tree` for the
   sequences in slots ``0..n-1`` (``seqs[b]`` = prompt + generated tokens; its last token
   is the root, not yet in the target's cache).
4. :meth:`Drafter.move` when the engine moves a sequence from slot ``src`` to ``dst``.

Drafter kinds (DESIGN.md §2): ``draft_model`` (:class:`ModelDrafter` over a separate small
LM with its own KV cache: k sequential passes for a chain; one pass per tree level),
``self`` (:class:`ModelDrafter` over the target's first N layers, drafting in the target's
own cache, whose layers < N already hold exactly the K/V it needs), ``ngram``
(:class:`NgramDrafter`, prompt lookup, no model).

Draft-model cache bookkeeping: the drafter's cache lags the engine's tokens. At each
proposal it compares the tokens it fed speculatively with what the engine accepted, rolls
back to the first difference (no copy) and feeds the missing tokens (the root, plus the
last draft when a whole chain was accepted) in one right-padded "catch-up" pass.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from spectune.profiler.runtime.kvcache import KVCache
from spectune.profiler.runtime.model import DecoderLM
from spectune.simulator.errors import InputError
from spectune.simulator.tree import Tree

from .ngram import NgramProposer
from .sampling import probs_from_logits, sample_from_probs

__all__ = [
    "ChainDraft",
    "DraftContext",
    "Drafter",
    "ModelDrafter",
    "NgramDrafter",
    "TreeDraft",
    "cache_view",
    "move_slot",
]


def cache_view(cache: KVCache, start: int, stop: int) -> KVCache:
    """A KVCache over slots ``start..stop-1`` sharing storage with ``cache``.

    Forwards, commits and truncations through the view act on the parent's tensors
    (``lengths`` is a view too, and KVCache updates it in place).
    """
    view = copy.copy(cache)
    view.k = cache.k[:, start:stop]
    view.v = cache.v[:, start:stop]
    view.lengths = cache.lengths[start:stop]
    return view


def move_slot(cache: KVCache, src: int, dst: int, length: int | None = None) -> None:
    """Copy sequence ``src``'s committed K/V and length into slot ``dst``."""
    n = int(cache.lengths[src]) if length is None else length
    cache.k[:, dst, :, :n] = cache.k[:, src, :, :n]
    cache.v[:, dst, :, :n] = cache.v[:, src, :, :n]
    cache.lengths[dst] = cache.lengths[src]


@dataclass(frozen=True)
class DraftContext:
    """What a drafter sees in one step.

    Attributes:
        seqs: per running sequence (slot b), its tokens so far; the last is the root.
        target_cache: the target's cache over the running slots; its lengths equal
            ``len(seqs[b]) - 1`` and must be left that way.
        temperature: 0 = greedy drafting; > 0 = draw chain drafts from the drafter's
            temperature-scaled distribution.
        generator: the engine's sampling stream.
    """

    seqs: Sequence[np.ndarray]
    target_cache: KVCache
    temperature: float
    generator: torch.Generator | None


@dataclass(frozen=True)
class ChainDraft:
    """Chain proposals: tokens [B, k] (padded), num_drafts [B], probs [B, k, V] or None.

    ``probs`` holds the distributions the drafts were drawn from (sampling); None means
    point-mass proposals (greedy drafting, n-grams).
    """

    tokens: Tensor
    num_drafts: Tensor
    probs: Tensor | None = None


@dataclass(frozen=True)
class TreeDraft:
    """Tree proposals: tokens [B, N] and present [B, N] (False = no candidate)."""

    tokens: Tensor
    present: Tensor


class Drafter(ABC):
    """A source of draft tokens; see the module docstring for the call order."""

    kind: str = ""
    vocab_size: int | None = None  # None = proposes token ids only from the context

    def bind(self, target: DecoderLM, max_batch: int, max_len: int) -> None:  # noqa: B027
        """Called once by the engine; a stateless drafter keeps nothing."""

    def admit(self, first_slot: int, prompts: np.ndarray) -> None:  # noqa: B027
        """Sequences entered slots ``first_slot ..`` with these prompts [G, L] (equal
        lengths); stateless drafters ignore it."""

    def move(self, src: int, dst: int) -> None:  # noqa: B027
        """The engine moved the sequence in ``src`` to ``dst``; stateless: nothing to do."""

    @abstractmethod
    def propose_chain(self, ctx: DraftContext, max_drafts: np.ndarray) -> ChainDraft:
        """Up to ``max_drafts[b]`` drafts per sequence (columns = ``max(max_drafts)``)."""

    @abstractmethod
    def propose_tree(self, ctx: DraftContext, tree: Tree) -> TreeDraft:
        """One token per tree node per sequence (the rank-r candidate at each node)."""


class NgramDrafter(Drafter):
    """Prompt-lookup drafting (see :mod:`.ngram`).

    Args:
        min_n, max_n: n-gram lengths to match.
    """

    kind = "ngram"

    def __init__(self, min_n: int = 1, max_n: int = 3):
        self.proposer = NgramProposer(min_n, max_n)
        self.device: torch.device = torch.device("cpu")

    def bind(self, target: DecoderLM, max_batch: int, max_len: int) -> None:
        self.device = target.device

    def propose_chain(self, ctx: DraftContext, max_drafts: np.ndarray) -> ChainDraft:
        k = int(max_drafts.max(initial=0))
        tokens, num = self.proposer.propose_batch(ctx.seqs, k)
        num = np.minimum(num, max_drafts)
        return ChainDraft(
            torch.from_numpy(tokens).to(self.device), torch.from_numpy(num).to(self.device)
        )

    def propose_tree(self, ctx: DraftContext, tree: Tree) -> TreeDraft:
        tokens, present = self.proposer.propose_tree_batch(ctx.seqs, tree.parents, tree.ranks)
        return TreeDraft(
            torch.from_numpy(tokens).to(self.device), torch.from_numpy(present).to(self.device)
        )


class ModelDrafter(Drafter):
    """Drafting with a language model: a separate draft model, or the target's first layers.

    Args:
        model: the draft model (``draft_model``), or the target itself (``self``).
        num_layers: run only the first N layers (``self`` drafting); None = all.
        share_target_cache: draft in the target's cache (only valid when ``model`` is the
            target: its layers < N hold exactly the drafter's K/V). Otherwise the drafter
            keeps its own cache, slot-aligned with the engine's.
        kind: reported drafter kind.

    Raises:
        InputError: bad num_layers, or sharing the cache of a different model.
    """

    def __init__(
        self,
        model: DecoderLM,
        num_layers: int | None = None,
        *,
        share_target_cache: bool = False,
        kind: str | None = None,
    ):
        n_total = model.config.num_hidden_layers
        if num_layers is not None and not 1 <= num_layers <= n_total:
            raise InputError(f"self drafter layers must be in [1, {n_total}], got {num_layers}")
        self.model = model
        self.num_layers = num_layers
        self.share = share_target_cache
        self.kind = kind or ("self" if num_layers is not None else "draft_model")
        self.vocab_size = model.config.vocab_size
        self.cache: KVCache | None = None
        self._fed: np.ndarray | None = None  # [slots, max_len] tokens in own cache
        self._len: np.ndarray | None = None  # [slots] committed length of own cache
        self._synced: np.ndarray | None = None  # [slots] prefix known to equal the engine's

    def bind(self, target: DecoderLM, max_batch: int, max_len: int) -> None:
        if self.share and self.model is not target:
            raise InputError("a drafter can share only its own model's cache (self drafting)")
        if self.vocab_size != target.config.vocab_size:
            raise InputError(
                f"drafter vocab_size {self.vocab_size} != target vocab_size "
                f"{target.config.vocab_size}",
                field="vocab_size",
            )
        if self.share:
            return
        # Room for a catch-up of 2 tokens past the engine's length plus a tree's nodes.
        self.cache = KVCache(
            self.model.config,
            max_batch,
            max_len + 2,
            device=self.model.device,
            dtype=self.model.dtype,
            num_layers=self.num_layers,
        )
        self._fed = np.zeros((max_batch, max_len + 2), dtype=np.int64)
        self._len = np.zeros(max_batch, dtype=np.int64)
        self._synced = np.zeros(max_batch, dtype=np.int64)

    # ------------------------------------------------------------------ slots

    def admit(self, first_slot: int, prompts: np.ndarray) -> None:
        if self.share:
            return  # the target's prefill already filled the shared layers
        assert self.cache is not None and self._fed is not None
        group, length = prompts.shape
        stop = first_slot + group
        view = cache_view(self.cache, first_slot, stop)
        view.truncate([0] * group)
        ids = torch.as_tensor(prompts, dtype=torch.long, device=self.model.device)
        self._forward(ids, view, last_only=True)
        view.commit(num_tokens=length)
        self._fed[first_slot:stop, :length] = prompts
        self._len[first_slot:stop] = self._synced[first_slot:stop] = length

    def move(self, src: int, dst: int) -> None:
        if self.share:
            return
        assert self.cache is not None and self._fed is not None
        move_slot(self.cache, src, dst, int(self._len[src]))
        self._fed[dst] = self._fed[src]
        self._len[dst], self._synced[dst] = self._len[src], self._synced[src]

    # ------------------------------------------------------------------ passes

    def _forward(self, ids: Tensor, cache: KVCache, **kw) -> Tensor:
        return self.model(ids, cache, num_layers=self.num_layers, **kw)

    def _first_pass(self, ctx: DraftContext) -> tuple[KVCache, Tensor]:
        """Feed every token the drafter has not seen (at least the root) and commit them.

        Returns:
            (the cache to keep drafting in, logits [B, V] after the root).
        """
        n = len(ctx.seqs)
        dev = self.model.device
        if self.share:
            cache = ctx.target_cache
            roots = torch.tensor([int(s[-1]) for s in ctx.seqs], dtype=torch.long, device=dev)
            logits = self._forward(roots[:, None], cache)[:, -1]
            cache.commit(num_tokens=1)
            return cache, logits
        assert self.cache is not None and self._fed is not None
        cache = cache_view(self.cache, 0, n)
        # Roll back to the first speculative token the engine did not keep.
        starts = np.empty(n, dtype=np.int64)
        for b, seq in enumerate(ctx.seqs):
            lo, hi = int(self._synced[b]), int(min(self._len[b], len(seq) - 1))
            diff = np.flatnonzero(self._fed[b, lo:hi] != seq[lo:hi])
            starts[b] = lo + int(diff[0]) if diff.size else hi
        cache.truncate(torch.from_numpy(starts).to(dev))
        pend = np.array([len(s) for s in ctx.seqs]) - starts  # >= 1: the root at least
        width = int(pend.max())
        ids = np.zeros((n, width), dtype=np.int64)
        for b, seq in enumerate(ctx.seqs):
            ids[b, : pend[b]] = seq[starts[b] :]
            self._fed[b, starts[b] : len(seq)] = seq[starts[b] :]
        logits = self._forward(torch.from_numpy(ids).to(dev), cache)
        cache.commit(num_tokens=torch.from_numpy(pend).to(dev))
        last = torch.from_numpy(pend - 1).to(dev)
        logits = logits[torch.arange(n, device=dev), last]  # [B, V]
        self._len[:n] = self._synced[:n] = [len(s) for s in ctx.seqs]
        return cache, logits

    def _finish(self, ctx: DraftContext, cache: KVCache) -> None:
        if self.share:  # hand the target its cache back exactly as it was
            lengths = torch.tensor([len(s) - 1 for s in ctx.seqs], device=cache.lengths.device)
            cache.truncate(lengths)

    def propose_chain(self, ctx: DraftContext, max_drafts: np.ndarray) -> ChainDraft:
        n, k = len(ctx.seqs), int(max_drafts.max(initial=0))
        dev = self.model.device
        if k == 0:
            empty = torch.zeros((n, 0), dtype=torch.long, device=dev)
            return ChainDraft(empty, torch.zeros(n, dtype=torch.long, device=dev))
        cache, logits = self._first_pass(ctx)
        sampling = ctx.temperature > 0
        tokens, probs = [], []
        for i in range(k):
            if sampling:
                q = probs_from_logits(logits, ctx.temperature)  # [B, V]
                x = sample_from_probs(q, ctx.generator)
                probs.append(q)
            else:
                x = logits.argmax(dim=-1)
            tokens.append(x)
            if i + 1 < k:  # the last draft is never fed: the target verifies it
                logits = self._forward(x[:, None], cache)[:, -1]
                cache.commit(num_tokens=1)
        if not self.share:
            assert self._fed is not None and self._len is not None
            fed = torch.stack(tokens[:-1], dim=1).cpu().numpy() if k > 1 else None
            for b, seq in enumerate(ctx.seqs):
                if fed is not None:
                    self._fed[b, len(seq) : len(seq) + k - 1] = fed[b]
                self._len[b] = len(seq) + k - 1
        self._finish(ctx, cache)
        num = torch.from_numpy(np.asarray(max_drafts, dtype=np.int64)).to(dev)
        return ChainDraft(
            torch.stack(tokens, dim=1), num, torch.stack(probs, dim=1) if sampling else None
        )

    def propose_tree(self, ctx: DraftContext, tree: Tree) -> TreeDraft:
        n, n_nodes = len(ctx.seqs), tree.num_nodes
        dev = self.model.device
        tokens = torch.zeros((n, n_nodes), dtype=torch.long, device=dev)
        present = torch.ones((n, n_nodes), dtype=torch.bool, device=dev)
        if n_nodes == 0:
            return TreeDraft(tokens, present)
        cache, logits = self._first_pass(ctx)  # the root is now committed
        full_mask = torch.from_numpy(tree.attention_mask()[1:, 1:]).to(dev)  # node x node
        depths = np.asarray(tree.depths)
        for d in range(1, tree.max_depth + 1):
            level = np.flatnonzero(depths == d)
            if d > 1:
                # Feed every node above this level (tree-masked, uncommitted) and read
                # the logits of the level's parents. Uncommitted slots are invisible to a
                # later pass, so the ancestors are fed again each level.
                above = np.flatnonzero(depths < d)
                sel = torch.from_numpy(above).to(dev)
                out = self._forward(tokens[:, sel], cache, tree_mask=full_mask[sel][:, sel])
                row = {int(node): j for j, node in enumerate(above)}
            for parent in sorted({tree.parents[i] for i in level}):
                kids = list(tree.children(parent))
                src = logits if parent < 0 else out[:, row[parent]]
                top = src.topk(len(kids), dim=-1).indices  # [B, m] in rank order
                tokens[:, kids] = top
        if not self.share:
            assert self._len is not None
            self._len[:n] = [len(s) for s in ctx.seqs]  # only the root was committed
        self._finish(ctx, cache)
        return TreeDraft(tokens, present)
