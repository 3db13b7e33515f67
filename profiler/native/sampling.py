"""Verification maths of speculative decoding: greedy and sampled, chains and trees.

Pure functions over tensors, vectorized over the batch where the shapes allow it. Vocabulary
used throughout (vLLM's):

- **draft tokens**: the tokens the drafter proposed for one sequence in one step; a chain
  has ``num_drafts[b] <= k`` of them (positions past ``num_drafts[b]`` are padding), a tree
  has one per node (absent nodes are flagged by ``present``).
- **accepted tokens**: the longest run of draft tokens the target agrees with. Greedy: each
  token equals the target's argmax at its parent. Sampled (Leviathan et al. 2023, Chen et
  al. 2023): draft token ``x`` drawn from ``q`` is accepted with probability
  ``min(1, p(x) / q(x))``.
- **recovered token**: after the first rejection the target's own token in its place —
  greedy: the target's argmax there; sampled: a draw from ``norm(max(0, p - q))``.
- **bonus token**: when every draft of a chain (or a tree path to a leaf) is accepted, the
  target's token after it, drawn from ``p`` at the last accepted position.

Each step therefore yields ``num_accepted + 1`` tokens: the accepted drafts, then one
recovered or bonus token (``next_tokens`` below). Under sampling the output distribution is
exactly the target's, whatever the drafter proposes; under greedy decoding the output is
exactly the target's greedy output.

Drafters that propose deterministically (n-gram lookup, a drafter's top-ranked candidates
in a tree) have point-mass proposals ``q = onehot(x)``; pass ``draft_probs=None`` for them.
For trees, siblings are then checked one after another against the target's residual
distribution (recursive rejection sampling with point-mass proposals), which also keeps
the target's distribution exactly.

Shapes: ``B`` batch, ``k`` chain draft slots, ``N`` tree nodes, ``V`` vocabulary. Query
offset 0 of a verify forward is the root (the last verified token), offset ``i + 1`` is
draft ``i``; target tensors have ``k + 1`` (or ``N + 1``) rows per sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "ChainVerdict",
    "TreeVerdict",
    "greedy_verify_chain",
    "greedy_verify_tree",
    "make_generator",
    "probs_from_logits",
    "sample_from_probs",
    "sample_verify_chain",
    "sample_verify_tree",
]


@dataclass(frozen=True)
class ChainVerdict:
    """Outcome of verifying a batch of chains.

    Attributes:
        num_accepted: [B] accepted draft tokens per sequence (bonus excluded).
        next_tokens: [B] the recovered token, or the bonus token when all
            ``num_drafts[b]`` drafts were accepted.
    """

    num_accepted: Tensor
    next_tokens: Tensor

    def output_tokens(self, draft_tokens: Tensor) -> list[list[int]]:
        """Per sequence, the tokens this step yields: accepted drafts + the next token."""
        drafts = draft_tokens.tolist()
        return [
            [*drafts[b][:n], t]
            for b, (n, t) in enumerate(
                zip(self.num_accepted.tolist(), self.next_tokens.tolist(), strict=True)
            )
        ]


@dataclass(frozen=True)
class TreeVerdict:
    """Outcome of verifying a batch of trees.

    Attributes:
        accepted_nodes: per sequence, the accepted node indices from depth 1 down
            (a path of the tree; empty when the first level was rejected).
        next_tokens: [B] the recovered or bonus token after the accepted path.
    """

    accepted_nodes: list[list[int]]
    next_tokens: Tensor

    @property
    def num_accepted(self) -> list[int]:
        return [len(p) for p in self.accepted_nodes]

    def output_tokens(self, draft_tokens: Tensor) -> list[list[int]]:
        """Per sequence, the tokens this step yields: the accepted path + the next token."""
        drafts = draft_tokens.tolist()
        return [
            [*(drafts[b][i] for i in path), t]
            for b, (path, t) in enumerate(
                zip(self.accepted_nodes, self.next_tokens.tolist(), strict=True)
            )
        ]


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator seeded with ``seed`` on ``device``: the engine's one sampling stream."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def probs_from_logits(logits: Tensor, temperature: float) -> Tensor:
    """Softmax of ``logits / temperature`` in float32 over the last axis.

    Args:
        logits: [..., V].
        temperature: > 0 (greedy decoding uses argmax, not this function).

    Returns:
        Probabilities [..., V], float32.

    Raises:
        ValueError: temperature <= 0.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
    return torch.softmax(logits.float() / temperature, dim=-1)


def sample_from_probs(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row of ``probs`` [B, V] -> [B] (long)."""
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _first_rejection(accept: Tensor) -> Tensor:
    """[B, k] bool -> [B] index of the first False (k when all True)."""
    return accept.long().cumprod(dim=1).sum(dim=1)


def greedy_verify_chain(
    draft_tokens: Tensor, target_argmax: Tensor, num_drafts: Tensor
) -> ChainVerdict:
    """Greedy verification of chains.

    Args:
        draft_tokens: [B, k] proposed tokens; position ``j >= num_drafts[b]`` is padding.
        target_argmax: [B, k + 1] the target's argmax at the root (offset 0) and after
            each draft.
        num_drafts: [B] number of real drafts per sequence (0..k).

    Returns:
        The verdict: accepted = the longest prefix with ``draft[j] == argmax[j]``;
        next token = ``argmax[num_accepted]`` (recovered or bonus).
    """
    k = draft_tokens.shape[1]
    pos = torch.arange(k, device=draft_tokens.device)
    accept = (draft_tokens == target_argmax[:, :k]) & (pos[None, :] < num_drafts[:, None])
    n = _first_rejection(accept)  # [B]
    next_tokens = target_argmax.gather(1, n[:, None]).squeeze(1)
    return ChainVerdict(n, next_tokens)


def sample_verify_chain(
    draft_tokens: Tensor,
    draft_probs: Tensor | None,
    target_probs: Tensor,
    num_drafts: Tensor,
    generator: torch.Generator | None,
) -> ChainVerdict:
    """Standard speculative sampling of chains (Leviathan et al. 2023, Chen et al. 2023).

    Args:
        draft_tokens: [B, k] proposed tokens; position ``j >= num_drafts[b]`` is padding.
        draft_probs: [B, k, V] the drafter's distribution each draft was drawn from, or
            None for point-mass (deterministic) proposals.
        target_probs: [B, k + 1, V] the target's (temperature-scaled) distributions at the
            root and after each draft.
        num_drafts: [B] number of real drafts per sequence (0..k).
        generator: the sampling stream.

    Returns:
        The verdict. Draft ``j`` is accepted with probability ``min(1, p(x)/q(x))`` given
        all earlier ones were; the next token is drawn from ``norm(max(0, p - q))`` at the
        first rejection, or from ``p`` after the last draft (bonus).
    """
    bsz, k = draft_tokens.shape
    device = target_probs.device
    pos = torch.arange(k, device=device)
    real = pos[None, :] < num_drafts[:, None]  # [B, k]
    p_x = target_probs[:, :k].gather(2, draft_tokens[..., None]).squeeze(-1)  # [B, k]
    if draft_probs is None:
        q_x = torch.ones_like(p_x)
    else:
        q_x = draft_probs.gather(2, draft_tokens[..., None]).squeeze(-1)
    u = torch.rand((bsz, k), generator=generator, device=device)
    # u < p/q written without the division; q_x > 0 for any token drawn from q.
    accept = (u * q_x < p_x) & real
    n = _first_rejection(accept)  # [B]

    p_n = target_probs.gather(1, n[:, None, None].expand(-1, 1, target_probs.shape[2]))
    p_n = p_n.squeeze(1)  # [B, V]
    rejected = n < num_drafts  # [B]; False = all drafts accepted -> bonus from p
    if draft_probs is None:
        x_n = draft_tokens.gather(1, n.clamp(max=max(k - 1, 0))[:, None]) if k else None
        q_n = torch.zeros_like(p_n)
        if x_n is not None:
            q_n.scatter_(1, x_n, 1.0)
    else:
        idx = n.clamp(max=max(k - 1, 0))[:, None, None].expand(-1, 1, draft_probs.shape[2])
        q_n = draft_probs.gather(1, idx).squeeze(1) if k else torch.zeros_like(p_n)
    q_n = q_n * rejected[:, None]
    residual = (p_n - q_n).clamp(min=0.0)
    mass = residual.sum(dim=1, keepdim=True)
    # mass == 0 only when p == q, where a rejection has probability 0 (float round-off).
    residual = torch.where(mass > 0, residual / mass.clamp(min=1e-30), p_n)
    next_tokens = sample_from_probs(residual, generator)
    return ChainVerdict(n, next_tokens)


def _level_nodes(parents: Sequence[int]) -> list[list[int]]:
    """Node indices grouped by depth (depth 1 first)."""
    depths: list[int] = []
    levels: list[list[int]] = []
    for i, p in enumerate(parents):
        d = 1 if p < 0 else depths[p] + 1
        depths.append(d)
        if d > len(levels):
            levels.append([])
        levels[d - 1].append(i)
    return levels


def _path_to(parents: Sequence[int], node: int) -> list[int]:
    out = []
    while node >= 0:
        out.append(node)
        node = parents[node]
    return out[::-1]


def greedy_verify_tree(
    parents: Sequence[int],
    draft_tokens: Tensor,
    target_argmax: Tensor,
    present: Tensor | None = None,
) -> TreeVerdict:
    """Greedy verification of trees: the longest path the target's argmax agrees with.

    Args:
        parents: node ``i``'s parent node (-1 = the root); parents precede children.
        draft_tokens: [B, N] the token proposed at each node.
        target_argmax: [B, N + 1] the target's argmax at the root (offset 0) and after
            each node (offset ``i + 1``).
        present: [B, N] bool, False where a drafter had no candidate for a node (its
            subtree is then absent too); None = all present.

    Returns:
        The verdict: a node is valid when its token equals the argmax at its parent and
        its parent is valid; the accepted path ends at the deepest valid node (ties: the
        lowest node index, i.e. the better-ranked candidates); the next token is the
        argmax after that node (or at the root when none is valid).
    """
    bsz, n_nodes = draft_tokens.shape
    if n_nodes == 0:
        return TreeVerdict([[] for _ in range(bsz)], target_argmax[:, 0].clone())
    par = torch.tensor(parents, device=draft_tokens.device, dtype=torch.long)
    valid = draft_tokens == target_argmax[:, par + 1]  # [B, N]; parent slot = parent + 1
    if present is not None:
        valid &= present
    levels = _level_nodes(parents)
    for level in levels[1:]:
        idx = torch.tensor(level, device=valid.device)
        valid[:, idx] &= valid[:, par[idx]]
    depth = torch.zeros(n_nodes, dtype=torch.long, device=valid.device)
    for d, level in enumerate(levels, start=1):
        depth[level] = d
    score = valid.long() * depth[None, :]  # [B, N]
    best = score.argmax(dim=1)  # first maximum -> lowest index among the deepest
    has_path = score.max(dim=1).values > 0
    slot = torch.where(has_path, best + 1, torch.zeros_like(best))
    next_tokens = target_argmax.gather(1, slot[:, None]).squeeze(1)
    paths = [
        _path_to(parents, b_node) if ok else []
        for b_node, ok in zip(best.tolist(), has_path.tolist(), strict=True)
    ]
    return TreeVerdict(paths, next_tokens)


def sample_verify_tree(
    parents: Sequence[int],
    draft_tokens: Tensor,
    target_probs: Tensor,
    generator: torch.Generator | None,
    present: Tensor | None = None,
) -> TreeVerdict:
    """Speculative sampling over a tree of point-mass (deterministic) proposals.

    Starting at the root with the target's distribution ``r = p(root)``, the children of
    the current node are tried in rank order: child token ``x`` is accepted with
    probability ``r(x)``; on acceptance the walk moves to the child (``r`` becomes the
    target's distribution after it), on rejection ``r`` becomes ``norm(r with x zeroed)``
    and the next sibling is tried. When no child is accepted (or the node is a leaf) the
    next token is drawn from ``r``. Each trial is a rejection step with ``q = onehot(x)``,
    so the emitted tokens follow the target's distribution exactly.

    Args:
        parents: node ``i``'s parent (-1 = root); parents precede children and siblings
            appear in rank order.
        draft_tokens: [B, N] the token proposed at each node.
        target_probs: [B, N + 1, V] the target's distributions at the root and after
            each node.
        generator: the sampling stream.
        present: [B, N] bool, False for nodes the drafter did not fill; None = all.

    Returns:
        The verdict (accepted path per sequence and the next token).
    """
    bsz, n_nodes = draft_tokens.shape
    children: list[list[int]] = [[] for _ in range(n_nodes + 1)]
    for i, p in enumerate(parents):
        children[p + 1].append(i)
    tokens = draft_tokens.tolist()
    pres = present.tolist() if present is not None else [[True] * n_nodes] * bsz
    paths: list[list[int]] = []
    next_tokens: list[int] = []
    for b in range(bsz):
        path: list[int] = []
        slot = 0  # query offset of the current node (0 = root)
        r = target_probs[b, 0].clone()
        while True:
            moved = False
            for c in children[slot]:
                if not pres[b][c]:
                    continue
                x = tokens[b][c]
                u = torch.rand((), generator=generator, device=r.device)
                if u < r[x]:
                    path.append(c)
                    slot = c + 1
                    r = target_probs[b, slot].clone()
                    moved = True
                    break
                r[x] = 0.0
                mass = r.sum()
                # mass == 0 needs r(x) == 1, where the trial cannot fail (round-off only).
                r = r / mass if mass > 0 else target_probs[b, slot].clone()
            if not moved:
                break
        paths.append(path)
        next_tokens.append(int(sample_from_probs(r[None, :], generator)[0]))
    out = torch.tensor(next_tokens, dtype=torch.long, device=draft_tokens.device)
    return TreeVerdict(paths, out)
