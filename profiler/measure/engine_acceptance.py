"""Acceptance measured by a serving engine's own counters (``spectune profile acceptance
--engine vllm``), in spectune's acceptance-profile conventions (docs/acceptance.md).

vLLM (>= 0.29) reports, per finished request, every verify step's accepted and drafted
token counts (``per_request_spec_decode_metrics="detailed"``: ``per_step_accepted``,
``per_step_drafted``). From those arrays, over the steps the engine visited at its k:

- conditional per-position acceptance a_i = #(steps accepting >= i) / #(steps accepting
  >= i − 1 that drafted >= i) (an n-gram step may draft fewer than k; a step without a
  match drafts nothing and is not in the arrays: vLLM does not count it as a draft);
- per request: its single-draft acceptance #(steps accepting >= 1) / #steps, and
  ``spread``, their standard deviation;
- counts: requests, verify steps (vLLM's ``num_drafts``), drafted and accepted tokens.

The Prometheus counters of the same run (``vllm:spec_decode_*``) are checked against the
arrays: they must give the same totals and unconditional per-position rates u_i (the
profile's ``provenance`` says whether they did). The arrays themselves are kept beside the
profile as ``<out>.requests.jsonl``, one vLLM-style response per line (``usage`` +
``metrics.speculative_decoding``): the per-request trajectories, in the form
``spectune acceptance import --format vllm-requests`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spectune.simulator.errors import InputError
from spectune.simulator.schema import (
    AcceptanceCounts,
    AcceptanceProfile,
    AcceptanceSpec,
    Provenance,
)


def conditional_rates(accepted: np.ndarray, drafted: np.ndarray, k: int) -> list[float]:
    """a_1..a_k from per-step accepted and drafted counts (module docstring); a position no
    step reached keeps the last defined rate (1.0 if none)."""
    out: list[float] = []
    for i in range(1, k + 1):
        den = int(((accepted >= i - 1) & (drafted >= i)).sum())
        num = int((accepted >= i).sum())
        out.append(num / den if den else (out[-1] if out else 1.0))
    return [round(float(x), 6) for x in out]


def request_arrays(requests: Sequence[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per request, its (accepted, drafted) per verify step from vLLM's detailed metrics.

    Raises:
        InputError: a request without per-step arrays (the engine did not report them).
    """
    out = []
    for i, r in enumerate(requests):
        sd = r.get("speculative_decoding") or {}
        acc, dr = sd.get("per_step_accepted"), sd.get("per_step_drafted")
        if acc is None or dr is None:
            raise InputError(
                f"request {i} has no per-step spec-decode arrays (vLLM's "
                "per_request_spec_decode_metrics='detailed' is needed)"
            )
        out.append((np.asarray(acc, dtype=np.int64), np.asarray(dr, dtype=np.int64)))
    return out


def acceptance_from_requests(
    requests: Sequence[dict[str, Any]], k: int
) -> tuple[AcceptanceSpec, AcceptanceCounts]:
    """The acceptance spec and counts of a run's per-request arrays (module docstring)."""
    arrays = request_arrays(requests)
    acc = np.concatenate([a for a, _ in arrays]) if arrays else np.zeros(0, dtype=np.int64)
    dr = np.concatenate([d for _, d in arrays]) if arrays else np.zeros(0, dtype=np.int64)
    if acc.size == 0:
        raise InputError("the run verified no drafts: no acceptance to measure")
    levels = [float((a >= 1).sum()) / a.size for a, _ in arrays if a.size]
    spread = float(np.std(levels)) if len(levels) > 1 else 0.0
    spec = AcceptanceSpec(
        per_position=conditional_rates(acc, dr, k),
        spread=round(min(spread, 0.5), 6),
        per_request=[round(x, 6) for x in levels],
    )
    counts = AcceptanceCounts(
        num_requests=len(arrays),
        num_steps=int(acc.size),
        num_draft_tokens=int(dr.sum()),
        num_accepted_tokens=int(acc.sum()),
    )
    return spec, counts


def counters_agree(counters: dict[str, Any] | None, counts: AcceptanceCounts) -> str:
    """Whether vLLM's Prometheus counters of the run match the per-request arrays (one
    line for the profile's provenance)."""
    if not counters or "vllm:spec_decode_num_drafts" not in counters:
        return "Prometheus counters not read"
    drafts = round(counters["vllm:spec_decode_num_drafts"])
    drafted = round(counters.get("vllm:spec_decode_num_draft_tokens", -1))
    accepted = round(counters.get("vllm:spec_decode_num_accepted_tokens", -1))
    same = (drafts, drafted, accepted) == (
        counts.num_steps,
        counts.num_draft_tokens,
        counts.num_accepted_tokens,
    )
    return (
        "Prometheus spec_decode counters agree with the per-request arrays "
        f"({drafts} drafts, {drafted} drafted, {accepted} accepted)"
        if same
        else f"Prometheus counters DIFFER: drafts/drafted/accepted {drafts}/{drafted}/"
        f"{accepted} vs arrays {counts.num_steps}/{counts.num_draft_tokens}/"
        f"{counts.num_accepted_tokens}"
    )


def build_engine_profile(
    requests: Sequence[dict[str, Any]],
    k: int,
    *,
    target: str,
    drafter: str,
    drafter_kind: str,
    dataset: str,
    how: str,
    counters: dict[str, Any] | None = None,
) -> AcceptanceProfile:
    """The acceptance profile of one engine run (greedy)."""
    spec, counts = acceptance_from_requests(requests, k)
    return AcceptanceProfile(
        schema="spectune/acceptance/v1",
        target=target,
        drafter=drafter,
        drafter_kind=drafter_kind,  # type: ignore[arg-type]
        dataset=dataset,
        temperature=0.0,
        acceptance=spec,
        counts=counts,
        provenance=Provenance(kind="measured", how=f"{how}; {counters_agree(counters, counts)}"),
    )
