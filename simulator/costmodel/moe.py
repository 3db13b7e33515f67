"""How many distinct routed experts a forward reads: the MoE term of the cost model.

A forward over ``n`` tokens in an MoE layer with ``E`` experts, each token routed to ``k``
of them, reads the weights of every expert at least one token chose. With routing that
picks each token's ``k`` experts uniformly at random without replacement, independently
across tokens, an expert is missed by one token with probability ``1 − k/E`` and by all
``n`` with ``(1 − k/E)^n``, so

    E[touched] = E · (1 − (1 − k/E)^n).

With uneven expert popularity ``p`` (``Σ p = 1``) each token includes expert ``e`` with
probability ``π_e = min(1, k·p_e)`` (re-normalised so ``Σ π = k``), and
``E[touched] = Σ_e 1 − (1 − π_e)^n``: skewed routing touches fewer experts than uniform
routing at the same ``n`` (a convex function of ``π``), so the uniform case is an upper
bound on the weight bytes. Verifying ``B × (k+1)`` tokens per step widens the expert
reads exactly through ``n``.

Tokens of one sequence in a verify pass are consecutive positions, whose routing is more
correlated than independent draws; that narrows the reads and is not modelled (the
uniform, independent case errs on the expensive side).
"""

from __future__ import annotations

import numpy as np


def expected_touched_experts(tokens: float, experts: int, per_token: int) -> float:
    """Expected distinct experts hit by ``tokens`` tokens under uniform routing.

    Args:
        tokens: tokens in the forward (may be fractional: an average).
        experts: routed experts in the layer (E).
        per_token: experts per token (k <= E).

    Returns:
        E · (1 − (1 − k/E)^tokens), between min(E, k) (one token) and E.
    """
    if tokens <= 0:
        return 0.0
    miss = 1.0 - per_token / experts
    return float(experts * (1.0 - miss**tokens))


def expected_touched_skewed(tokens: float, popularity: np.ndarray, per_token: int) -> float:
    """Expected distinct experts hit under uneven popularity (see the module docstring).

    Args:
        tokens: tokens in the forward.
        popularity: [E] routing probabilities of the experts (normalised here).
        per_token: experts per token.

    Returns:
        Σ_e 1 − (1 − π_e)^tokens with π = min(1, k·p) re-normalised to sum to k.
    """
    p = np.asarray(popularity, dtype=float)
    p = p / p.sum()
    pi = np.minimum(1.0, per_token * p)
    for _ in range(50):  # water-filling: spread the mass cut at 1 over the others
        deficit = per_token - pi.sum()
        free = pi < 1.0
        if deficit <= 1e-12 or not free.any():
            break
        pi = np.where(free, np.minimum(1.0, pi * (1.0 + deficit / pi[free].sum())), pi)
    return float(np.sum(1.0 - (1.0 - pi) ** tokens))


def simulate_touched(
    tokens: int,
    experts: int,
    per_token: int,
    rng: np.random.Generator,
    trials: int = 2000,
    popularity: np.ndarray | None = None,
) -> float:
    """Mean distinct experts over ``trials`` direct simulations of routing (each token draws
    ``per_token`` distinct experts, weighted by ``popularity`` if given). The check on the
    closed forms above."""
    hits = np.empty(trials)
    for t in range(trials):
        seen = np.zeros(experts, dtype=bool)
        for _ in range(tokens):
            seen[rng.choice(experts, size=per_token, replace=False, p=popularity)] = True
        hits[t] = seen.sum()
    return float(hits.mean())
