"""The wall-clock cost of one engine iteration, from forward-pass latency models.

An iteration is one fused forward of the target over everything scheduled in it (vLLM's
model runner), preceded by the drafter's passes for the decoding sequences, plus a host
overhead ``step_overhead_ms + step_overhead_per_seq_ms × sequences`` (scheduling,
sampling, launch gaps, per-sequence bookkeeping; a drafter may add its own terms, one of
them per draft pass: :func:`step_overheads`).
All costs in milliseconds.

Decode part, for ``B`` decoding sequences at mean context ``ctx`` (prompt + generated):

- draft phase, by drafter kind:
  ``draft_model`` / ``heads``: one pass of the drafter's profile per draft level at batch B
  (a chain of k: k passes of 1 query token; a tree: one pass per depth level, the query
  being the previous level's width, 1 for the root). Pass i sees context ctx + (tokens
  drafted before it). For a chain the k passes are priced as k · f(B, 1, ctx + (k−1)/2):
  latency models are linear in context between profile knots, so this equals the sum of
  the k calls except across a knot, at one call instead of k.
  ``self``: the same passes priced as ``self_layers / target_layers`` of a target pass.
  ``ngram`` / ``suffix``: ``draft_ms_per_token`` per drafted node (host-side lookup,
  batch-independent).
- verify: one target pass of B × (nodes + 1) query tokens at context ctx (plain decoding:
  B × 1 tokens, no draft phase).

Drafters that propose fewer than k drafts at some steps (an n-gram miss proposes none;
docs/acceptance.md): given each iteration's drafted tokens summed over the batch (D) and
its widest draft (M), the verify pass is priced at query width 1 + D/B, interpolated
linearly between the whole widths around it (exact when all sequences draft alike), or
at 1 + M for a padded batch (``padded_query``: the live engine pads every sequence to the
widest draft); the host-side draft cost is ``draft_ms_per_token`` × M. A step where nobody
drafts costs a plain decode step.

Prefill chunks scheduled in the same iteration join the fused forward. Composition rule:
the first component (the decode batch if any, else the first chunk) pays its full cost;
every further chunk of c tokens at prefix p adds its *marginal* cost
f(1, c, p) − f(1, 1, p), i.e. its own tokens without a second read of the weights, which a
fused forward shares. A separate drafter model (``draft_model``/``heads``) also prefills
the chunk's tokens, composed the same way on the drafter's profile. The rule is exact for
the pure cases (decode only; one chunk only) and, in the compute-bound regime where mixed
iterations live, adds token costs as a fused forward does. With ``serving.prefill:
separate`` (an engine that runs each prompt's prefill as its own forward, like spectune's
live engine) every chunk pays its full cost instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .latency import ForwardLatency
from .schema import DrafterSpec, HostOverhead, Serving
from .schema_base import HOST_DRAFTER_KINDS as HOST_DRAFTERS
from .tree import Tree


def forward_many(model: ForwardLatency, batch: int, query: int, contexts: np.ndarray) -> np.ndarray:
    """``model.forward_ms`` over an array of contexts (uses ``forward_ms_many`` if the model
    has one, else one call per context).

    Returns:
        float64 [len(contexts)] milliseconds.
    """
    many = getattr(model, "forward_ms_many", None)
    if many is not None:
        return np.asarray(many(batch, query, contexts), dtype=float)
    f = model.forward_ms
    return np.fromiter((f(batch, query, c) for c in contexts.tolist()), float, len(contexts))


class StepCost:
    """Prices engine iterations (see the module docstring for the rules).

    Args:
        target: latency model of the target.
        kind: drafter kind, or ``None`` for plain decoding.
        draft: latency model of the drafter (``draft_model``/``heads``), else None.
        level_queries: query tokens of each draft pass in order (chain of k: ``[1] * k``;
            tree: ``[1, w_1, ..., w_{D-1}]``); empty for plain decoding.
        nodes: drafted tokens verified per sequence (k, or the tree's node count).
        self_fraction: ``self_layers / target_layers`` for the ``self`` kind.
        ngram_ms_per_token: host cost per drafted node for ``ngram``.
        overhead_ms: fixed cost per iteration.
        overhead_per_seq_ms: cost per iteration per sequence in it (decoding sequences
            plus prefill chunks).
        fused_prefill: True = prefill chunks join the fused forward (marginal cost, as in
            the module docstring); False = every chunk is its own forward at full cost
            (the live engine's separate prefills).
        padded_query: with per-iteration draft counts, price the verify at the widest
            draft (a padded batch) instead of the mean.
    """

    def __init__(
        self,
        target: ForwardLatency,
        *,
        kind: str | None = None,
        draft: ForwardLatency | None = None,
        level_queries: tuple[int, ...] = (),
        nodes: int = 0,
        self_fraction: float = 0.0,
        ngram_ms_per_token: float = 0.0,
        overhead_ms: float = 0.0,
        overhead_per_seq_ms: float = 0.0,
        fused_prefill: bool = True,
        padded_query: bool = False,
    ):
        self.target = target
        self.kind = kind if nodes > 0 else None
        self.draft = draft
        self.level_queries = tuple(level_queries)
        self.nodes = int(nodes)
        self.self_fraction = float(self_fraction)
        self.ngram_ms = float(ngram_ms_per_token) * self.nodes
        self.overhead_ms = float(overhead_ms)
        self.overhead_per_seq_ms = float(overhead_per_seq_ms)
        self.fused_prefill = bool(fused_prefill)
        self.padded_query = bool(padded_query)
        self.ngram_ms_per_token = float(ngram_ms_per_token)
        self.is_chain = all(q == 1 for q in self.level_queries)
        assert self.kind not in ("draft_model", "heads") or draft is not None

    # ------------------------------------------------------------------ decode

    def _draft_ms(self, batch: int, ctx: np.ndarray) -> np.ndarray | float:
        """Draft-phase cost per iteration for contexts ``ctx`` [n]."""
        kind = self.kind
        if kind is None:
            return 0.0
        if kind in HOST_DRAFTERS:
            return self.ngram_ms
        model = self.target if kind == "self" else self.draft
        assert model is not None
        scale = self.self_fraction if kind == "self" else 1.0
        passes = len(self.level_queries)
        if self.is_chain:
            return scale * passes * forward_many(model, batch, 1, ctx + (passes - 1) / 2.0)
        total = np.zeros_like(ctx)
        offset = 0
        for q in self.level_queries:
            total += forward_many(model, batch, q, ctx + offset)
            offset += q
        return scale * total

    def decode_ms(
        self,
        batch: int,
        ctx: np.ndarray,
        drafts: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Cost of decode-only iterations of ``batch`` sequences at mean contexts ``ctx``.

        Args:
            batch: decoding sequences (>= 1).
            ctx: [n] mean context (tokens) per sequence, one per iteration.
            drafts: ([n] drafted tokens summed over the batch, [n] the widest draft) per
                iteration, for drafters that may draft fewer than ``nodes``; None = every
                sequence drafts ``nodes``.

        Returns:
            [n] milliseconds.
        """
        if drafts is not None and self.kind in HOST_DRAFTERS:
            return self._variable_ms(batch, ctx, drafts)
        verify = forward_many(self.target, batch, self.nodes + 1, ctx)
        return self._overhead(batch) + verify + self._draft_ms(batch, ctx)

    def _variable_ms(
        self, batch: int, ctx: np.ndarray, drafts: tuple[np.ndarray, np.ndarray]
    ) -> np.ndarray:
        """Decode iterations whose sequences draft different numbers of tokens."""
        total, widest = (np.asarray(x, dtype=float) for x in drafts)
        width = 1.0 + (widest if self.padded_query else total / batch)  # [n] query tokens
        if width.shape[0] == 1:  # one iteration (most calls): no array bookkeeping
            w, c = float(width[0]), float(ctx[0])
            q = int(w)
            f = self.target.forward_ms(batch, q, c)
            if w > q:
                f += (w - q) * (self.target.forward_ms(batch, q + 1, c) - f)
            return np.array([self._overhead(batch) + f + self.ngram_ms_per_token * widest[0]])
        lo = np.floor(width).astype(np.int64)
        frac = width - lo
        verify = np.zeros_like(ctx, dtype=float)
        for q in np.unique(lo).tolist():
            sel = np.flatnonzero(lo == q)
            f = forward_many(self.target, batch, q, ctx[sel])
            up = frac[sel] > 0  # only fractional widths need the next whole width
            if up.any():
                f_hi = forward_many(self.target, batch, q + 1, ctx[sel[up]])
                f[up] += frac[sel[up]] * (f_hi - f[up])
            verify[sel] = f
        return self._overhead(batch) + verify + self.ngram_ms_per_token * widest

    def _overhead(self, sequences: int) -> float:
        return self.overhead_ms + self.overhead_per_seq_ms * sequences

    # ------------------------------------------------------------------ mixed

    def mixed_ms(
        self,
        batch: int,
        ctx: float,
        chunks: list[tuple[int, int]],
        drafts: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> float:
        """Cost of an iteration with ``batch`` decoding sequences (may be 0) and prefill
        ``chunks`` [(tokens, prefix tokens already cached)] (may be empty); ``drafts`` as
        in :meth:`decode_ms` (one iteration)."""
        total = self._overhead(batch + len(chunks))
        first = batch == 0 or not self.fused_prefill
        if batch > 0:
            dec = self.decode_ms(batch, np.array([float(ctx)]), drafts)
            total += float(dec[0]) - self._overhead(batch)
        prefill_draft = self.kind in ("draft_model", "heads")
        for c, pre in chunks:
            total += self._chunk_ms(self.target, c, pre, first)
            if prefill_draft:
                total += self._chunk_ms(self.draft, c, pre, first)
            first = not self.fused_prefill
        return total

    @staticmethod
    def _chunk_ms(model: Any, tokens: int, prefix: int, full: bool) -> float:
        ms = model.forward_ms(1, tokens, prefix)
        if full:
            return ms
        return max(0.0, ms - model.forward_ms(1, 1, prefix))


def draft_passes(kind: str, tree: Tree) -> int:
    """Host-side draft passes per sequence per step: a model drafter's forwards (k for a
    chain, the depth for a tree); an n-gram drafter's lookups (one for a chain, one per
    node with children — the root included — for a tree)."""
    if tree.num_nodes == 0:
        return 0
    if kind in HOST_DRAFTERS:
        return 1 if tree.is_chain else len(set(tree.parents))
    return tree.max_depth


def step_overheads(
    serving: Serving,
    drafter: DrafterSpec | None,
    tree: Tree,
    host: HostOverhead | None = None,
) -> tuple[float, float]:
    """(overhead_ms, overhead_per_seq_ms) of an iteration: the serving terms, the target
    profile's measured engine host time (``host``, when the profile was measured through a
    serving engine) plus, when a drafter speculates, its own terms
    (``step_overhead_per_pass_seq_ms`` × :func:`draft_passes` and
    ``step_overhead_per_node_seq_ms`` × drafted nodes join the per-sequence term) and the
    engine's speculative-step terms of ``host``."""
    ms, per_seq = serving.step_overhead_ms, serving.step_overhead_per_seq_ms
    if host is not None:
        ms, per_seq = ms + host.step_ms, per_seq + host.per_seq_ms
    if drafter is None or tree.num_nodes == 0:
        return ms, per_seq
    passes = draft_passes(drafter.kind, tree)
    if host is not None:
        ms += host.spec_step_ms
        per_seq += host.spec_per_seq_ms + host.spec_per_node_seq_ms * tree.num_nodes
    return (
        ms + drafter.step_overhead_ms,
        per_seq
        + drafter.step_overhead_per_seq_ms
        + drafter.step_overhead_per_pass_seq_ms * passes
        + drafter.step_overhead_per_node_seq_ms * tree.num_nodes,
    )
