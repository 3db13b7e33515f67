"""Static draft trees: the shape a speculative step drafts and verifies.

The root is the last verified token (it is not a node). Each node is one drafted token;
node ``i`` has a ``parent`` (``-1`` = child of the root) and a 0-based ``rank`` among its
siblings (0 = the drafter's top candidate at that position). A chain of k drafts is the
tree whose nodes all have rank 0.

Nodes are stored in topological order (``parents[i] < i``) and, within one parent, in
rank order, and sibling ranks are contiguous ``0..m-1`` (a drafter proposes its top m
candidates, never "the 3rd but not the 2nd"). :meth:`Tree.from_paths` reads the
vLLM / TensorRT-LLM path format (each path is the list of ranks from the root, e.g.
``[[0], [1], [0, 0]]``) and sorts the nodes by ``(depth, path)``, as vLLM does.

For a verify forward the query is ``[root, node 0, node 1, ...]``: node ``i`` sits at
query offset ``i + 1``; :meth:`Tree.attention_mask` and :meth:`Tree.positions` use that
layout. Depths are 1-based (a child of the root has depth 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Tree:
    """A static draft tree (see the module docstring for the conventions).

    Args:
        parents: node i's parent node index; -1 = child of the root.
        ranks: node i's 0-based rank among its siblings.

    Raises:
        InputError: lengths differ, a parent index is not an earlier node, or sibling
            ranks are not ``0, 1, ..., m-1`` in order.
    """

    parents: tuple[int, ...]
    ranks: tuple[int, ...]
    # Derived in __post_init__ (not part of equality / hashing).
    depths: tuple[int, ...] = field(init=False, repr=False, compare=False)
    num_nodes: int = field(init=False, repr=False, compare=False)
    max_depth: int = field(init=False, repr=False, compare=False)
    _children: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parents = tuple(int(p) for p in self.parents)
        ranks = tuple(int(r) for r in self.ranks)
        if len(parents) != len(ranks):
            raise InputError(
                f"parents and ranks must have the same length, got {len(parents)} and {len(ranks)}",
                field="tree",
            )
        # children[0] = children of the root; children[i + 1] = children of node i.
        children: list[list[int]] = [[] for _ in range(len(parents) + 1)]
        depths: list[int] = []
        for i, (p, r) in enumerate(zip(parents, ranks, strict=True)):
            if not -1 <= p < i:
                raise InputError(
                    f"node {i}: parent must be -1 (the root) or an earlier node (< {i}), got {p}",
                    field="tree.parents",
                )
            siblings = children[p + 1]
            if r != len(siblings):
                raise InputError(
                    f"node {i}: rank must be {len(siblings)} (sibling ranks are 0..m-1 in "
                    f"order), got {r}",
                    field="tree.ranks",
                )
            siblings.append(i)
            depths.append(1 if p < 0 else depths[p] + 1)
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "ranks", ranks)
        object.__setattr__(self, "depths", tuple(depths))
        object.__setattr__(self, "num_nodes", len(parents))
        object.__setattr__(self, "max_depth", max(depths, default=0))
        object.__setattr__(self, "_children", tuple(tuple(c) for c in children))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_paths(cls, paths: Sequence[Sequence[int]]) -> Tree:
        """Build a tree from vLLM / TensorRT-LLM paths (lists of ranks from the root).

        Args:
            paths: one path per node, e.g. ``[[0], [1], [0, 0]]``; any order. An empty
                list gives the empty tree (plain decoding).

        Returns:
            The tree, nodes sorted by ``(depth, path)``.

        Raises:
            InputError: an empty or duplicate path, a negative rank, a path whose parent
                path is missing, or sibling ranks with a gap (``[[0], [2]]``).
        """
        keys: list[tuple[int, ...]] = []
        for p in paths:
            try:
                key = tuple(int(x) for x in p)
            except (TypeError, ValueError):
                raise InputError(
                    f"a path must be a list of integer ranks, got {p!r}", field="tree.paths"
                ) from None
            if not key:
                raise InputError("a path must not be empty", field="tree.paths")
            if min(key) < 0:
                raise InputError(f"path {list(key)}: ranks must be >= 0", field="tree.paths")
            keys.append(key)
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise InputError(f"path {list(dup)} appears more than once", field="tree.paths")
        keys.sort(key=lambda k: (len(k), k))
        index = {k: i for i, k in enumerate(keys)}
        parents: list[int] = []
        for k in keys:
            if len(k) == 1:
                parents.append(-1)
            elif k[:-1] in index:
                parents.append(index[k[:-1]])
            else:
                raise InputError(
                    f"path {list(k)} has no parent path {list(k[:-1])}", field="tree.paths"
                )
            # Ranks must be contiguous among siblings: rank r needs rank r-1.
            if k[-1] > 0 and (*k[:-1], k[-1] - 1) not in index:
                raise InputError(
                    f"path {list(k)} has no sibling {[*k[:-1], k[-1] - 1]} "
                    "(sibling ranks must be 0..m-1 without gaps)",
                    field="tree.paths",
                )
        return cls(tuple(parents), tuple(k[-1] for k in keys))

    @classmethod
    def chain(cls, k: int) -> Tree:
        """The chain of ``k`` drafts (all rank 0); ``k = 0`` is the empty tree.

        Raises:
            InputError: k < 0.
        """
        if k < 0:
            raise InputError(f"chain length must be >= 0, got {k}", field="k")
        return cls(tuple(range(-1, k - 1)), (0,) * k)

    # ------------------------------------------------------------------ structure

    def children(self, node: int = -1) -> tuple[int, ...]:
        """Indices of ``node``'s children in rank order (``-1`` = the root)."""
        return self._children[node + 1]

    @property
    def is_chain(self) -> bool:
        """True when every node has rank 0 (at most one child per node)."""
        return all(r == 0 for r in self.ranks)

    def width_per_depth(self) -> list[int]:
        """Number of nodes at depth 1..max_depth."""
        counts = [0] * self.max_depth
        for d in self.depths:
            counts[d - 1] += 1
        return counts

    def path_nodes(self, node: int) -> list[int]:
        """Node indices on the path from depth 1 down to ``node`` (inclusive)."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def paths(self) -> list[list[int]]:
        """The vLLM / TensorRT-LLM path of every node (ranks from the root), in node order."""
        out: list[list[int]] = []
        for p, r in zip(self.parents, self.ranks, strict=True):
            out.append([*(out[p] if p >= 0 else []), r])
        return out

    # ------------------------------------------------------------------ verify layout

    def attention_mask(self) -> np.ndarray:
        """Tree attention mask for the verify query ``[root, node 0, ..., node n-1]``.

        Returns:
            bool array [num_nodes + 1, num_nodes + 1]; row = query, column = key;
            True = may attend (the token itself and its ancestors, the root included).
            Attention to the committed context before the root is not part of it.
        """
        n = self.num_nodes
        mask = np.zeros((n + 1, n + 1), dtype=bool)
        mask[:, 0] = True
        mask[0, 0] = True
        for i, p in enumerate(self.parents):
            # Parents come first, so the parent's row is already complete.
            mask[i + 1] = mask[p + 1]
            mask[i + 1, i + 1] = True
        return mask

    def positions(self) -> np.ndarray:
        """Position offsets of the verify query: 0 for the root, each node's depth.

        Returns:
            int64 array [num_nodes + 1]; add the root's absolute position.
        """
        return np.array((0, *self.depths), dtype=np.int64)

    def __str__(self) -> str:
        return f"Tree({self.num_nodes} nodes, depth {self.max_depth}, paths={self.paths()})"
