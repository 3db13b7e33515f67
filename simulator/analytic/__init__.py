"""Closed forms of speculative decoding: tokens per step, optimal trees, speedup, best k.

Pure numpy functions; no state. ``chain`` (per-position chains), ``tree`` (ranked trees,
the optimal tree), ``cost`` (step costs, speedup, best k), ``conventions`` (the named
acceptance conventions — conditional / unconditional per-position, mean acceptance
length, vLLM's acceptance rate, Sequoia's ranked vector — and conversions), ``checks``
(argument checks).

Conventions (see DESIGN.md §2):

- *Tokens per step* always include the bonus token (the target's own token after the
  accepted run), so plain decoding gives 1 and a fully accepted chain of k gives k + 1.
  This equals vLLM's "mean accepted length".
- Chain: per-position acceptance a_i = P(draft i accepted | drafts 1..i-1 accepted);
  E[tokens/step] = 1 + Σ_{i≤k} Π_{j≤i} a_j (Leviathan et al. 2023; with iid a this is
  (1 − a^(k+1)) / (1 − a)). A per-position vector shorter than k is extended with its
  last value.
- Tree, ranked (positional) acceptance model (Sequoia, Chen et al. 2024): p_r = P(the
  drafter's rank-r candidate at a node is accepted | ranks 0..r-1 there were rejected).
  Siblings are mutually exclusive, so P(rank-r child accepted | parent accepted) =
  q_r = p_r Π_{i<r}(1 − p_i), and E = 1 + Σ_nodes P(path to node accepted). ``ranked``
  is [width] (the same at every depth) or [depth, width] (row d-1 for nodes at depth d;
  extended with its last row); ranks beyond the width have p = 0.
- Costs are unitless ratios to one plain decode step of the target (batch and context
  fixed): a step drafting k tokens costs k·c (c = draft/target cost ratio, one draft pass
  per depth level) plus the verify cost of k + 1 tokens, 1 in the classic memory-bound
  model; ``verify_cost`` lets it grow with the tokens verified, as it does under batching.
"""

from __future__ import annotations

from .chain import accepted_dist_chain, expected_tokens_chain, expected_tokens_iid
from .cost import VerifyCost, best_k, chain_step_cost, speedup, speedup_by_k, tree_step_cost
from .tree import (
    accepted_dist_tree,
    expected_tokens_tree,
    node_accept_probs,
    optimal_expected_tokens,
    optimal_tree,
    sibling_accept_probs,
)

__all__ = [
    "VerifyCost",
    "accepted_dist_chain",
    "accepted_dist_tree",
    "best_k",
    "chain_step_cost",
    "expected_tokens_chain",
    "expected_tokens_iid",
    "expected_tokens_tree",
    "node_accept_probs",
    "optimal_expected_tokens",
    "optimal_tree",
    "sibling_accept_probs",
    "speedup",
    "speedup_by_k",
    "tree_step_cost",
]
