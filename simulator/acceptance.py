"""How many drafted tokens each speculative step accepts, per request, with spread.

One :class:`AcceptanceModel` serves one drafter and one draft shape (a chain of k, or a
static :class:`~spectune.simulator.tree.Tree`). Everything reduces to the *survival
vector* S[d] = P(at least d drafts accepted in a step), d = 1..D (D = k, or the tree's
depth), the same quantity the closed forms of :mod:`.analytic` sum:

- chain (per-position model): S[d] = Π_{i≤d} a_i, the vector extended with its last value
  (as :func:`.analytic.expected_tokens_chain`);
- tree (ranked model, as :func:`.analytic.node_accept_probs`): the rank-r child of an
  accepted node is accepted with q_r = p_r Π_{i<r}(1 − p_i); siblings are mutually
  exclusive, so S[d] = Σ_{nodes at depth d} P(path to node accepted).

Sampling one step: with one uniform U, the accepted count is L = #{d : U < S[d]}. Because
S is non-increasing, P(L ≥ d) = S[d]: the exact law of walking the chain with sequential
Bernoulli draws (or the tree's children in rank order), at one random number per step.
Tokens emitted by a step = L + 1 (the bonus token).

Per-request heterogeneity (documented rule). Each request draws a level m_r: resampled
from ``per_request`` when given, else from a Beta with mean m̄ = mean(per_position) and
standard deviation ``spread`` (capped just below the largest a Beta allows, with a
warning). The request's vectors are the profile's shifted in logit space by
δ_r = logit(m_r) − logit(m̄) (m̄ = mean(per_request) when samples are given):
a_i(r) = σ(logit(a_i) + δ_r), p_j(r) = σ(logit(p_j) + δ_r). The rule keeps every value in
[0, 1], keeps the positions' order, leaves 0 and 1 fixed (acceptance 1.0 stays exact), and
with ``spread = 0`` gives every request the profile's vector, so the DES mean matches the
closed form.

Recorded trajectories (docs/acceptance.md). When the profile carries per-request
trajectories that can be replayed at the draft shape (:mod:`.trajectory`), they replace
the vectors and the spread: each simulated request replays one recorded request at its
own k or tree (correlation inside a request survives), and the vectors of the closed
forms (:meth:`AcceptanceModel.survival`, ``mean_tokens_per_step``) are the records'
pooled statistics at that shape. Otherwise the vectors stand in, with a warning.

Drafters that may propose fewer than k drafts (``ngram``, ``suffix``): a step drafts d
tokens (0 = nothing: one token verified, no draft cost) and accepts at most d; d comes
from the records, or from ``match_probability`` / ``draft_lengths``
(:func:`draw_steps`); the engine prices each iteration at the drafts it verifies.

The engine does not sample per iteration: :func:`draw_steps` pre-draws every request's
tokens (and drafted counts) per decode step as cumulative counts, so a request's
acceptance is tied to the request, not to the batch it runs in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .schema import AcceptanceSpec
from .schema_base import HOST_DRAFTER_KINDS
from .trajectory import RecordedSteps, recorded_steps
from .tree import Tree

_EPS = 1e-9  # clip of request levels before the logit (a level of exactly 0 or 1)


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, _EPS, 1.0 - _EPS)
    return np.log(x) - np.log1p(-x)


def shift_probs(probs: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift probabilities in logit space, one row per shift.

    Args:
        probs: [W] probabilities.
        shifts: [R] logit shifts δ.

    Returns:
        [R, W] = σ(logit(probs) + δ); entries where probs is exactly 0 or 1 stay 0 or 1.
    """
    p = np.asarray(probs, dtype=float)[None, :]
    w = np.exp(np.asarray(shifts, dtype=float))[:, None]
    # σ(logit(p) + δ) written as p·e^δ / (1 − p + p·e^δ): exact at δ = 0, no clipping,
    # and 0 and 1 map to themselves.
    out = p * w / (1.0 - p + p * w)
    return out


class AcceptanceModel:
    """Per-step accepted-draft counts for one drafter and draft shape.

    Call order: build once per run (:meth:`for_chain` or :meth:`for_tree`), draw the
    requests' logit shifts with :meth:`request_shifts`, turn them into survival rows with
    :meth:`survival`, then draw steps with :meth:`sample_accepted`.

    Attributes:
        depth: D, the most drafts one step can accept.
        warnings: notes on the spread (e.g. capped).
    """

    def __init__(self, spec: AcceptanceSpec, tree: Tree | None, k: int, kind: str | None = None):
        self.spec = spec
        self.tree = tree
        self.warnings: list[str] = []
        self.recorded: RecordedSteps | None = None
        if spec.trajectories:
            rec = recorded_steps(spec.trajectories, int(k), tree)
            if isinstance(rec, str):
                self.warnings.append(
                    f"acceptance trajectories not replayed ({rec}): the per-position "
                    "vectors stand in"
                )
            else:
                self.recorded = rec
        if tree is None:
            self.depth = int(k)
            vec = self.recorded.per_position if self.recorded is not None else spec.per_position
            per = np.asarray(vec, dtype=float)
            if self.depth > len(per):
                per = np.concatenate([per, np.full(self.depth - len(per), per[-1])])
            self._probs = per[: self.depth]  # the chain's a_1..a_k
        else:
            ranked_vec = spec.ranked
            if self.recorded is not None and self.recorded.per_position:
                ranked_vec = self.recorded.per_position
            if ranked_vec is None:
                raise InputError(
                    "a tree needs ranked acceptance (acceptance.ranked) for its drafter",
                    field="spec.tree",
                )
            self.depth = tree.max_depth
            width = max(tree.ranks, default=0) + 1
            ranked = np.asarray(ranked_vec, dtype=float)
            # Ranks beyond the measured width are never accepted (analytic.py's rule).
            self._probs = np.concatenate([ranked, np.zeros(max(0, width - len(ranked)))])[:width]
            self._depths = np.asarray(tree.depths, dtype=np.int64)
            self._ranks = np.asarray(tree.ranks, dtype=np.int64)
            self._parents = np.asarray(tree.parents, dtype=np.int64)
        self._center, self._beta = self._level_law()
        # Drafters that may propose fewer than k drafts at a step (module docstring).
        if self.recorded is not None:
            short = any(bool((d < self.depth).any()) for d in self.recorded.drafted)
        else:
            match = 1.0 if spec.match_probability is None else spec.match_probability
            short = match < 1.0 or spec.draft_lengths is not None
        self.variable_drafts = kind in HOST_DRAFTER_KINDS and tree is None and short

    @classmethod
    def for_chain(cls, spec: AcceptanceSpec, k: int, kind: str | None = None) -> AcceptanceModel:
        """Chain of ``k`` drafts: the trajectories replayed at k when the profile has them,
        else the per-position model. ``kind``: the drafter's kind (n-gram and suffix
        drafters may propose fewer than k drafts)."""
        return cls(spec, None, k, kind)

    @classmethod
    def for_tree(cls, spec: AcceptanceSpec, tree: Tree, kind: str | None = None) -> AcceptanceModel:
        """Static tree: the trajectories replayed on it when they can be, else the ranked
        model.

        Raises:
            InputError: no replayable trajectories and no ``ranked`` vector.
        """
        return cls(spec, tree, tree.num_nodes, kind)

    # ------------------------------------------------------------------ levels

    def _level_law(self) -> tuple[float, tuple[float, float] | None]:
        """Center m̄ and Beta(α, β) of the request levels (None = no Beta draw)."""
        spec = self.spec
        if self.recorded is not None:  # the records carry the requests' differences
            return float(np.mean(self._probs)) if self._probs.size else 0.0, None
        if spec.per_request:
            return float(np.mean(spec.per_request)), None
        m = float(np.mean(spec.per_position))
        s = float(spec.spread)
        if s == 0.0 or m <= 0.0 or m >= 1.0:
            return m, None
        max_var = m * (1.0 - m)
        var = s * s
        if var >= max_var:
            var = 0.99 * max_var
            self.warnings.append(
                f"acceptance spread {s:g} is more than a Beta with mean {m:.3f} allows; "
                f"capped to {math.sqrt(var):.3f}"
            )
        nu = max_var / var - 1.0
        return m, (m * nu, (1.0 - m) * nu)

    @property
    def heterogeneous(self) -> bool:
        """True when requests differ (a spread or per-request samples)."""
        if self.recorded is not None:
            return False
        return self._beta is not None or bool(self.spec.per_request)

    def request_shifts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` requests' logit shifts δ (zeros when requests do not differ).

        Returns:
            float64 [n].
        """
        if self.recorded is None and self.spec.per_request:
            levels = rng.choice(np.asarray(self.spec.per_request, dtype=float), size=n)
        elif self._beta is not None:
            levels = rng.beta(*self._beta, size=n)
        else:
            return np.zeros(n)
        return _logit(levels) - _logit(np.array([self._center]))[0]

    # ------------------------------------------------------------------ survival

    def survival(self, shifts: np.ndarray) -> np.ndarray:
        """Survival rows S[r, d] = P(at least d+1 drafts accepted) for each request.

        Args:
            shifts: [R] logit shifts (see :meth:`request_shifts`).

        Returns:
            [R, D] non-increasing along d, in [0, 1].
        """
        probs = shift_probs(self._probs, np.asarray(shifts, dtype=float))  # [R, W]
        if self.tree is None:
            return np.cumprod(probs, axis=1)
        # q[r, j] = p_j Π_{i<j}(1 - p_i): the rank-j child is the one accepted.
        before = np.cumprod(np.concatenate([np.ones_like(probs[:, :1]), 1 - probs[:, :-1]], 1), 1)
        q = probs * before  # [R, W]
        reach = np.ones((probs.shape[0], self.tree.num_nodes + 1))  # col 0 = root
        for d in range(1, self.depth + 1):
            idx = np.nonzero(self._depths == d)[0]
            reach[:, idx + 1] = reach[:, self._parents[idx] + 1] * q[:, self._ranks[idx]]
        surv = np.zeros((probs.shape[0], self.depth))
        for d in range(1, self.depth + 1):
            surv[:, d - 1] = reach[:, 1:][:, self._depths == d].sum(axis=1)
        return np.clip(surv, 0.0, 1.0)

    def mean_tokens_per_step(self) -> float:
        """Expected tokens per step (bonus included) of the profile's own vector (δ = 0)."""
        return float(1.0 + self.survival(np.zeros(1))[0].sum())

    # ------------------------------------------------------------------ sampling

    @staticmethod
    def sample_accepted(
        survival: np.ndarray, uniforms: np.ndarray, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Accepted draft counts from survival rows and one uniform per step.

        Args:
            survival: [R, D] survival rows.
            uniforms: [M] uniforms in [0, 1), one per step.
            rows: [M] row of ``survival`` for each step; None = row 0 for every step.

        Returns:
            int64 [M] accepted drafts per step (tokens emitted = accepted + 1).
        """
        out = np.zeros(uniforms.shape[0], dtype=np.int64)
        # A loop over the (short) depth axis keeps the temporaries at [M], not [M, D].
        for d in range(survival.shape[1]):
            col = survival[:, d]
            out += uniforms < (col[0] if rows is None else col[rows])
        return out


@dataclass(frozen=True)
class StepDraws:
    """Every request's pre-drawn decode steps, as cumulative counts per request block
    (see :func:`draw_steps`)."""

    cum: np.ndarray  # int64 [Σ(out + 1)]: tokens after s steps (accepted + bonus)
    off: np.ndarray  # int64 [N]: each request's block start
    drafted_cum: np.ndarray | None = None  # drafted tokens after s steps (variable drafts)
    drafting_cum: np.ndarray | None = None  # steps that drafted anything, after s steps


def draw_request_steps(
    model: AcceptanceModel | None,
    output_tokens: np.ndarray,
    rng_levels: np.random.Generator,
    rng_steps: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre-draw every request's tokens per decode step, as cumulative counts.

    Request r gets a block ``cum[off[r] : off[r] + out[r] + 1]`` with ``cum[off[r]] = 0``
    and ``cum[off[r] + s]`` = tokens its first s decode steps emit (accepted + bonus,
    before cutting at the output length). A request never needs more than ``out[r]``
    decode steps (each emits >= 1 token), so the block always suffices. Drawing up front
    ties every request's draws to the request, not to the batch it happens to run in:
    the same seed gives the same per-request acceptance under every serving config
    (common random numbers for comparisons), and the engine needs no per-step sampling.

    Args:
        model: the acceptance model, or None for plain decoding (1 token per step).
        output_tokens: [N] output lengths.
        rng_levels: stream for the per-request levels.
        rng_steps: stream for the per-step uniforms.

    Returns:
        (cum int64 [Σ(out + 1)], off int64 [N], survival [N or 1, D] or empty).
    """
    tokens, off, starts, surv = _compact_tokens(model, output_tokens, rng_levels, rng_steps)
    c = np.cumsum(tokens)
    return c - c[starts], off, surv


def draw_steps(
    model: AcceptanceModel | None,
    output_tokens: np.ndarray,
    rng_levels: np.random.Generator,
    rng_steps: np.random.Generator,
    identical: bool = False,
) -> StepDraws:
    """Every request's decode steps (:func:`draw_request_steps`'s blocks), from the
    model's recorded trajectories when it replays them, else from its vectors; with the
    drafted counts when the drafter may propose fewer than k drafts.

    The compact vectors with ``match_probability`` / ``draft_lengths``: a step drafts
    with probability π (one more uniform per step, drawn after the acceptance uniforms so
    those stay the same), d drafts (a draw from ``draft_lengths``, capped at k; else k),
    and accepts min(L, d) of them. ``identical``: every request is a copy of the first
    (its record, or its draws).
    """
    out = np.asarray(output_tokens, dtype=np.int64)
    if identical and out.size > 1:
        one = draw_steps(model, out[:1], rng_levels, rng_steps)
        return _tiled(one, out.size)
    if model is not None and model.recorded is not None:
        cum, off, dcum, scum = model.recorded.draw(out, rng_levels)
        if not model.variable_drafts:
            return StepDraws(cum, off)
        return StepDraws(cum, off, dcum, scum)
    tokens, off, starts, _ = _compact_tokens(model, out, rng_levels, rng_steps)
    if model is None or not model.variable_drafts:
        c = np.cumsum(tokens)
        return StepDraws(c - c[starts], off)
    spec, k = model.spec, model.depth
    lead = np.zeros(tokens.shape[0], dtype=bool)
    lead[off] = True
    drafts = np.full(tokens.shape[0], k, dtype=np.int64)
    if spec.draft_lengths is not None:
        cdf = np.cumsum(np.asarray(spec.draft_lengths, dtype=float))
        d = 1 + np.searchsorted(cdf / cdf[-1], rng_steps.random(tokens.shape[0]), side="right")
        drafts = np.minimum(d, k)
    if spec.match_probability is not None:
        drafts[rng_steps.random(tokens.shape[0]) >= spec.match_probability] = 0
    drafts[lead] = 0
    tokens = np.where(lead, 0, np.minimum(tokens - 1, drafts) + 1)
    cums = []
    for vals in (tokens, drafts, (drafts > 0).astype(np.int64)):
        c = np.cumsum(vals)
        cums.append(c - c[starts])
    return StepDraws(cums[0], off, cums[1], cums[2])


def _tiled(one: StepDraws, n: int) -> StepDraws:
    """``n`` copies of a one-request draw."""
    size = one.cum.shape[0]
    off = np.arange(n, dtype=np.int64) * size

    def tile(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.tile(x, n)

    return StepDraws(tile(one.cum), off, tile(one.drafted_cum), tile(one.drafting_cum))  # type: ignore[arg-type]


def _compact_tokens(
    model: AcceptanceModel | None,
    output_tokens: np.ndarray,
    rng_levels: np.random.Generator,
    rng_steps: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokens per step slot from the vectors (0 at each request's leading slot), block
    offsets, each slot's block start, and the survival rows."""
    out = np.asarray(output_tokens, dtype=np.int64)
    lens = out + 1
    off = np.zeros(out.shape[0], dtype=np.int64)
    if out.shape[0]:
        off[1:] = np.cumsum(lens)[:-1]
    total = int(lens.sum())
    starts = np.repeat(off, lens)  # [total] block start of each position
    if model is None or model.depth == 0:
        tokens = np.ones(total, dtype=np.int64)
        tokens[off] = 0
        return tokens, off, starts, np.zeros((1, 0))
    if model.heterogeneous:
        surv = model.survival(model.request_shifts(rng_levels, out.shape[0]))  # [N, D]
        rows: np.ndarray | None = np.repeat(np.arange(out.shape[0]), lens)
    else:
        surv = model.survival(np.zeros(1))  # [1, D]
        rows = None
    uniforms = rng_steps.random(total)
    tokens = 1 + model.sample_accepted(surv, uniforms, rows)
    tokens[off] = 0  # the leading slot of each block
    return tokens, off, starts, surv
