"""Prompt-lookup (n-gram) drafting: propose what followed the last n tokens earlier on.

No model: for a sequence ``t[0..L-1]`` the drafter takes its last ``n`` tokens (``n`` from
``max_n`` down to ``min_n``; the longest n that occurs earlier wins) and looks for earlier
occurrences of that n-gram in the sequence.

- **Chains**: the continuation of the *most recent* earlier occurrence, up to ``k`` tokens
  (recent text is the best predictor of what comes next in code and chat; vLLM and HF's
  prompt lookup take one occurrence, too). A continuation that runs into the end of the
  sequence is extended periodically (``... 3 3 3`` proposes ``3 3 3 ...``).
- **Trees**: candidates are ranked by how often each next token follows the matched
  n-gram (ties: the most recent occurrence first); a tree node of rank ``r`` takes the
  ``r``-th candidate, and its children are looked up after appending it to the context.
  Nodes without a candidate are absent.

Pure python/numpy; all sizes are token counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["NgramProposer"]


class NgramProposer:
    """Prompt-lookup proposals for chains and trees.

    Args:
        min_n: shortest n-gram to match (>= 1).
        max_n: longest n-gram to match (>= min_n).

    Raises:
        ValueError: bad n-gram bounds.
    """

    def __init__(self, min_n: int = 1, max_n: int = 3):
        if min_n < 1 or max_n < min_n:
            raise ValueError(f"need 1 <= min_n <= max_n, got min_n={min_n}, max_n={max_n}")
        self.min_n = int(min_n)
        self.max_n = int(max_n)

    # ------------------------------------------------------------------ matching

    def _match_starts(self, tokens: np.ndarray) -> tuple[int, np.ndarray]:
        """Longest n in [min_n, max_n] whose suffix n-gram occurs earlier.

        Returns:
            (n, starts): ``starts`` are the indices right after each earlier occurrence
            (where its continuation begins), ascending; empty when nothing matches.
        """
        length = len(tokens)
        for n in range(min(self.max_n, length - 1), self.min_n - 1, -1):
            suffix = tokens[length - n :]
            # Windows that start at 0..L-n-1, i.e. every occurrence except the suffix itself.
            windows = sliding_window_view(tokens[: length - 1], n)
            hits = np.flatnonzero((windows == suffix).all(axis=1))
            if hits.size:
                return n, hits + n
        return 0, np.empty(0, dtype=np.int64)

    def propose(self, tokens: np.ndarray, k: int) -> np.ndarray:
        """Up to ``k`` draft tokens for one sequence.

        Args:
            tokens: [L] the sequence so far (prompt + generated), int.
            k: maximum number of drafts (>= 0).

        Returns:
            int64 array of k tokens: the continuation of the most recent earlier occurrence
            of the longest matching suffix n-gram, periodically extended past the end of
            the sequence; empty if nothing matches.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        _, starts = self._match_starts(tokens)
        if starts.size == 0:
            return np.empty(0, dtype=np.int64)
        start = int(starts[-1])
        # A continuation that runs into the end of the sequence repeats with period
        # L - start: the prediction continues the pattern the match implies.
        idx = start + np.arange(k) % (len(tokens) - start)
        return tokens[idx]

    def ranked_candidates(self, tokens: np.ndarray, width: int) -> list[int]:
        """The ``width`` best next-token candidates after ``tokens``.

        Args:
            tokens: [L] context, int.
            width: how many candidates at most.

        Returns:
            Distinct tokens ranked by how often they follow the matched n-gram (ties: the
            most recent occurrence first); possibly fewer than ``width``.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        _, starts = self._match_starts(tokens)
        if starts.size == 0 or width <= 0:
            return []
        # Every start is < L (occurrences end before the suffix), so tokens[start] exists.
        follow = tokens[starts][::-1]  # most recent first
        values, first_idx, counts = np.unique(follow, return_index=True, return_counts=True)
        order = np.lexsort((first_idx, -counts))  # by count desc, then recency
        return [int(v) for v in values[order][:width]]

    def propose_tree(
        self, tokens: np.ndarray, parents: Sequence[int], ranks: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill a static tree for one sequence.

        Args:
            tokens: [L] the sequence so far.
            parents: node ``i``'s parent (-1 = root), parents before children.
            ranks: node ``i``'s rank among its siblings.

        Returns:
            (draft_tokens [N] int64, present [N] bool): node ``i`` holds the
            ``ranks[i]``-th candidate after the context extended by its ancestors'
            tokens; absent nodes hold 0.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        n_nodes = len(parents)
        out = np.zeros(n_nodes, dtype=np.int64)
        present = np.zeros(n_nodes, dtype=bool)
        widths: dict[int, int] = {}
        for p, r in zip(parents, ranks, strict=True):
            widths[p] = max(widths.get(p, 0), r + 1)
        cands: dict[int, list[int]] = {}
        contexts: dict[int, np.ndarray] = {-1: tokens}
        for i, (p, r) in enumerate(zip(parents, ranks, strict=True)):
            if p >= 0 and not present[p]:
                continue
            if p not in cands:
                cands[p] = self.ranked_candidates(contexts[p], widths[p])
            if r < len(cands[p]):
                out[i] = cands[p][r]
                present[i] = True
                if i in widths:  # only nodes with children need their own context
                    contexts[i] = np.append(contexts[p], out[i])
        return out, present

    # ------------------------------------------------------------------ batched

    def propose_batch(self, seqs: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Chains for a batch.

        Args:
            seqs: per sequence, its tokens so far.
            k: draft slots.

        Returns:
            (draft_tokens [B, k] int64 padded with 0, num_drafts [B] int64).
        """
        drafts = np.zeros((len(seqs), k), dtype=np.int64)
        num = np.zeros(len(seqs), dtype=np.int64)
        for b, s in enumerate(seqs):
            prop = self.propose(s, k)
            drafts[b, : len(prop)] = prop
            num[b] = len(prop)
        return drafts, num

    def propose_tree_batch(
        self, seqs: Sequence[np.ndarray], parents: Sequence[int], ranks: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Trees for a batch: (draft_tokens [B, N], present [B, N])."""
        n_nodes = len(parents)
        drafts = np.zeros((len(seqs), n_nodes), dtype=np.int64)
        present = np.zeros((len(seqs), n_nodes), dtype=bool)
        for b, s in enumerate(seqs):
            drafts[b], present[b] = self.propose_tree(s, parents, ranks)
        return drafts, present
