"""Acceptance profiler: how often a drafter's tokens are accepted by the target.

The target generates each prompt's continuation once (its *trajectory*; greedy at T = 0,
sampled at T > 0). Every acceptance figure is then read off that trajectory:

- **T = 0, exactly, by teacher forcing.** Under greedy decoding every accepted prefix lies
  on the target's greedy trajectory, so the drafter's k-th draft from a start position is
  its prediction given the trajectory up to there. One drafter pass over the trajectory
  gives its prediction at every position; a draft is accepted iff it equals the trajectory
  token. (The n-gram drafter copies a whole continuation per start, so its chain from
  every start is looked up explicitly — still exact.)
- **T > 0, in expectation.** At each position of a sampled trajectory a draft token drawn
  from the drafter's distribution q is accepted with probability ``β = Σ_x min(p(x), q(x))``
  (speculative sampling). Chains use the β of consecutive positions.

From the per-start acceptance ``acc[s, i]`` (probability that draft i from start s is
accepted given drafts 1..i-1 were) the profile holds:

- ``per_position`` a_i = Σ_s Π_{j≤i} acc[s, j] / Σ_s Π_{j<i} acc[s, j] over every start s
  whose position s + i - 1 lies on the trajectory (every start, not only those one k
  visits, so a_i does not depend on k);
- ``ranked`` p_m: the drafter's top-W candidates at each position are checked in rank
  order against the target (point-mass proposals, the engine's tree rule): candidate m is
  accepted with probability p(c_m) / (1 - Σ_{l<m} p(c_l)); p_m is the ratio of the sums
  over positions of numerator and denominator (at T = 0: P(rank = m | rank ≥ m));
- ``per_request``: each request's mean single-draft acceptance (mean of acc[s, 1]), and
  ``spread``, their standard deviation;
- ``counts``: the engine's counters for chain drafting with k = K replayed on the
  trajectories (exact at T = 0; one seeded draw per draft at T > 0);
- ``trajectories``: one ``positions`` record per request (:mod:`.trajectories`): the run
  accepted from every output position, the drafts offered there and, at T = 0, the
  target token's rank among the drafter's candidates — what the simulator replays at any
  k or tree, request by request;
- n-gram drafters: ``match_probability`` = the fraction of positions where the lookup
  finds a match (a miss proposes nothing), and ``per_position`` over the positions with
  a match.

Positions: a prompt of P tokens and N generated tokens give the sequence S[0..P+N-1]; the
first generated token S[P] comes from the prefill, drafting starts at S[P+1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spectune.profiler.native.ngram import NgramProposer
from spectune.profiler.runtime.kvcache import KVCache
from spectune.profiler.runtime.model import DecoderLM
from spectune.simulator.errors import InputError
from spectune.simulator.schema import (
    AcceptanceCounts,
    AcceptanceProfile,
    AcceptanceSpec,
    Provenance,
)

from .trajectories import positions_record, record_counts, replay_chain  # noqa: F401


@dataclass(frozen=True)
class DrafterSpec:
    """What drafts: a separate model, the target's first ``self_layers`` layers, or n-grams."""

    kind: str  # "draft_model" | "self" | "ngram"
    name: str
    model: DecoderLM | None = None
    self_layers: int | None = None
    ngram_max_n: int = 3
    ngram_min_n: int = 1


@dataclass
class RequestAcceptance:
    """One request's acceptance arrays (see the module docstring)."""

    acc: np.ndarray  # [starts, K] probability draft i from start s is accepted given 1..i-1
    valid: np.ndarray  # [starts, K] bool: position s + i - 1 lies on the trajectory
    rank_num: np.ndarray  # [positions, W] p(c_m)
    rank_den: np.ndarray  # [positions, W] 1 - Σ_{l<m} p(c_l)
    drafted: np.ndarray  # [starts] drafts the drafter can offer from s (ngram may run dry)


# --------------------------------------------------------------------------- trajectories


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    return torch.softmax(logits / temperature, dim=-1)


@torch.inference_mode()
def target_trajectory(
    target: DecoderLM,
    prompt: Sequence[int],
    new_tokens: int,
    temperature: float,
    generator: torch.Generator | None = None,
) -> list[int]:
    """The target's continuation of ``prompt`` (greedy at T = 0), decoded with a KV cache.

    Returns:
        The full sequence, prompt then ``new_tokens`` generated tokens.
    """
    seq = list(prompt)
    cache = KVCache(
        target.config, 1, len(seq) + new_tokens, device=target.device, dtype=target.dtype
    )
    ids = torch.tensor([seq], device=target.device)
    for _ in range(new_tokens):
        logits = target(ids, cache, last_only=True)[0, -1]
        cache.commit(num_tokens=ids.shape[1])
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            p = torch.softmax(logits / temperature, dim=-1)
            nxt = int(torch.multinomial(p, 1, generator=generator))
        seq.append(nxt)
        ids = torch.tensor([[nxt]], device=target.device)
    return seq


@torch.inference_mode()
def _logits_along(
    model: DecoderLM, seq: Sequence[int], num_layers: int | None = None
) -> torch.Tensor:
    """Teacher-forced logits [len(seq), V]: row j predicts seq[j + 1]."""
    ids = torch.tensor([list(seq)], device=model.device)
    return model(ids, num_layers=num_layers)[0].float()


# --------------------------------------------------------------------------- per request


def request_acceptance(
    target: DecoderLM,
    drafter: DrafterSpec,
    seq: Sequence[int],
    prompt_len: int,
    temperature: float,
    k: int,
    width: int,
) -> RequestAcceptance:
    """Acceptance arrays of one trajectory ``seq`` whose first ``prompt_len`` tokens are the
    prompt (module docstring)."""
    seq_arr = np.asarray(seq, dtype=np.int64)
    n = len(seq)
    starts = np.arange(prompt_len + 1, n)  # positions the engine drafts (after the prefill)
    if starts.size == 0:
        raise InputError("need at least 2 generated tokens per request", field="--max-new-tokens")
    # Target distribution at each drafted position j (predicting seq[j]): row j - 1.
    if temperature == 0:
        p_rows = None
    else:
        p_rows = _probs(_logits_along(target, seq)[starts - 1], temperature).cpu().numpy()
    valid = (starts[:, None] + np.arange(k)[None, :]) < n  # [S, K]
    if drafter.kind == "ngram":
        acc, drafted, first, cands = _ngram_arrays(
            seq_arr, starts, k, width, drafter.ngram_min_n, drafter.ngram_max_n
        )
        if temperature > 0:
            # Point-mass drafts: draft x is accepted w.p. p(x). Position-wise approximation:
            # depth i from start s uses the lookup's first draft at s + i - 1.
            rows = np.arange(len(starts))
            beta = np.where(first >= 0, p_rows[rows, np.maximum(first, 0)], 0.0)
            acc = _chain_from_beta(beta, k)
    else:
        model = drafter.model if drafter.kind == "draft_model" else target
        layers = drafter.self_layers if drafter.kind == "self" else None
        q_logits = _logits_along(model, seq, layers)[starts - 1]  # [S, V]
        cands = torch.topk(q_logits, min(width, q_logits.shape[-1]), dim=-1).indices.cpu().numpy()
        if temperature == 0:
            beta = (cands[:, 0] == seq_arr[starts]).astype(float)
        else:
            q = _probs(q_logits, temperature).cpu().numpy()
            beta = np.minimum(p_rows, q).sum(-1)
        acc = _chain_from_beta(beta, k)
        drafted = np.full(len(starts), k)
    if p_rows is None:  # greedy: the target's "distribution" is the trajectory token
        p_rows_c = (cands == seq_arr[starts][:, None]).astype(float)
    else:
        p_rows_c = np.where(cands >= 0, np.take_along_axis(p_rows, np.maximum(cands, 0), 1), 0.0)
    p_rows_c = np.pad(p_rows_c, ((0, 0), (0, width - p_rows_c.shape[1])))
    den = 1.0 - np.concatenate([np.zeros((len(starts), 1)), np.cumsum(p_rows_c, 1)[:, :-1]], 1)
    return RequestAcceptance(acc * valid, valid, p_rows_c, np.clip(den, 0.0, 1.0), drafted)


def _chain_from_beta(beta: np.ndarray, k: int) -> np.ndarray:
    """acc[s, i] = beta[s + i] (0 past the end; masked by ``valid`` anyway)."""
    padded = np.concatenate([beta, np.zeros(k)])
    return np.stack([padded[i : i + len(beta)] for i in range(k)], axis=1)


def _ngram_arrays(
    seq: np.ndarray, starts: np.ndarray, k: int, width: int, min_n: int, max_n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Prompt lookup from every start: greedy chain agreement [S, K], drafts offered [S],
    first draft token [S] (-1 = none) and ranked candidates [S, W] (-1 = none)."""
    prop = NgramProposer(min_n=min_n, max_n=max_n)
    acc = np.zeros((len(starts), k))
    drafted = np.zeros(len(starts), dtype=np.int64)
    first = np.full(len(starts), -1, dtype=np.int64)
    cands = np.full((len(starts), width), -1, dtype=np.int64)
    for row, s in enumerate(starts):
        draft = prop.propose(seq[:s], k)
        drafted[row] = len(draft)
        if len(draft):
            first[row] = draft[0]
        truth = seq[s : s + len(draft)]
        agree = draft[: len(truth)] == truth
        acc[row, : len(agree)] = agree
        ranked = prop.ranked_candidates(seq[:s], width)
        cands[row, : len(ranked)] = ranked
    return acc, drafted, first, cands


# --------------------------------------------------------------------------- aggregation


def per_position(reqs: Sequence[RequestAcceptance], matched_only: bool = False) -> list[float]:
    """a_1..a_K over all requests and starts (module docstring); ``matched_only``: over
    the starts where the drafter proposed anything (an n-gram lookup with a match)."""
    acc = np.concatenate([r.acc for r in reqs])
    valid = np.concatenate([r.valid for r in reqs])
    if matched_only:
        keep = np.concatenate([r.drafted > 0 for r in reqs])
        acc, valid = acc[keep], valid[keep]
    reach = np.cumprod(np.concatenate([np.ones((len(acc), 1)), acc[:, :-1]], 1), 1)
    num = (reach * acc * valid).sum(0)
    den = (reach * valid).sum(0)
    out: list[float] = []
    for a, b in zip(num, den, strict=True):
        out.append(float(a / b) if b > 0 else (out[-1] if out else 0.0))
    return out


def ranked(reqs: Sequence[RequestAcceptance]) -> list[float]:
    """p_1..p_W over all requests and positions (module docstring)."""
    num = np.concatenate([r.rank_num for r in reqs]).sum(0)
    den = np.concatenate([r.rank_den for r in reqs]).sum(0)
    out: list[float] = []
    for a, b in zip(num, den, strict=True):
        out.append(float(min(1.0, a / b)) if b > 1e-12 else 0.0)
    return out


def measure_acceptance(
    target: DecoderLM,
    drafter: DrafterSpec,
    prompts: Sequence[Sequence[int]],
    temperature: float,
    k: int = 8,
    width: int = 8,
    max_new_tokens: int | Sequence[int] = 128,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[RequestAcceptance], list[list[int]]]:
    """Trajectories and acceptance arrays for every prompt (``max_new_tokens``: one limit
    for all, or one per prompt — e.g. a workload's own output lengths).

    Raises:
        InputError: k, width or max_new_tokens < 1, temperature < 0, a vocab mismatch,
            a prompt that does not fit the model's context.
    """
    if isinstance(max_new_tokens, int):
        limits = [max_new_tokens] * len(prompts)
    else:
        limits = [int(m) for m in max_new_tokens]
        if len(limits) != len(prompts):
            raise InputError(
                f"{len(limits)} max_new_tokens for {len(prompts)} prompts",
                field="--max-new-tokens",
            )
    for name, v in (("--k", k), ("--width", width), ("--max-new-tokens", min(limits, default=2))):
        if v < 1:
            raise InputError(f"must be >= 1, got {v}", field=name)
    if min(limits, default=2) < 2:
        raise InputError(f"must be >= 2, got {min(limits)}", field="--max-new-tokens")
    if not temperature >= 0:
        raise InputError(f"must be >= 0, got {temperature}", field="--temperature")
    if drafter.model is not None and drafter.model.config.vocab_size != target.config.vocab_size:
        raise InputError(
            f"drafter vocab_size {drafter.model.config.vocab_size} != target vocab_size "
            f"{target.config.vocab_size}",
            field="--drafter",
        )
    limit = target.config.max_position_embeddings
    if drafter.model is not None:
        limit = min(limit, drafter.model.config.max_position_embeddings)
    gen = torch.Generator().manual_seed(seed)
    reqs, seqs = [], []
    for i, (prompt, max_new) in enumerate(zip(prompts, limits, strict=True)):
        prompt = list(prompt)[-(limit - max_new) :] if limit > max_new else []
        if not prompt:
            raise InputError(
                f"prompt {i} is empty or max_new_tokens {max_new} leaves no room in "
                f"the model's {limit} positions",
                field="--prompts",
            )
        seq = target_trajectory(target, prompt, max_new, temperature, gen)
        reqs.append(request_acceptance(target, drafter, seq, len(prompt), temperature, k, width))
        seqs.append(seq)
        if progress is not None:
            progress(i + 1)
    return reqs, seqs


def build_profile(
    reqs: Sequence[RequestAcceptance],
    target_name: str,
    drafter: DrafterSpec,
    dataset: str,
    temperature: float,
    k: int,
    how: str,
    seed: int = 0,
) -> AcceptanceProfile:
    """Aggregate per-request arrays into the acceptance-profile schema, with one
    ``positions`` trajectory per request (:mod:`.trajectories`) and, for an n-gram
    drafter, the probability that a lookup finds a match (``per_position`` is then
    conditional on a match)."""
    rng = None if temperature == 0 else np.random.default_rng(np.random.SeedSequence([seed, 1]))
    records = [positions_record(r, rng, ranks=temperature == 0) for r in reqs]
    steps = drafts = accepted = 0
    for rec in records:
        st, dr, ac, _ = record_counts(rec, k)
        steps, drafts, accepted = steps + st, drafts + dr, accepted + ac
    means = [float(np.mean(r.acc[:, 0])) for r in reqs]
    spread = float(np.std(means, ddof=1)) if len(means) > 1 else 0.0
    match = None
    if drafter.kind == "ngram":
        match = float(np.mean(np.concatenate([r.drafted > 0 for r in reqs])))
    return AcceptanceProfile(
        schema="spectune/acceptance/v1",
        target=target_name,
        drafter=drafter.name,
        drafter_kind=drafter.kind,
        dataset=dataset,
        temperature=temperature,
        acceptance=AcceptanceSpec(
            per_position=[round(x, 4) for x in per_position(reqs, match is not None)],
            ranked=[round(x, 4) for x in ranked(reqs)],
            spread=round(min(spread, 0.5), 4),
            per_request=[round(x, 4) for x in means],
            match_probability=None if match is None else round(match, 4),
            trajectories=records,
        ),
        counts=AcceptanceCounts(
            num_requests=len(reqs),
            num_steps=steps,
            num_draft_tokens=drafts,
            num_accepted_tokens=accepted,
        ),
        provenance=Provenance(kind="measured", how=how),
    )
