"""The speculation policies' rules (:mod:`.policy` has the contract and how the engine
runs them; docs/policies.md the engines' sources).

- :class:`BatchSchedule`: k by the number of sequences in the iteration (vLLM's
  ``num_speculative_tokens_per_batch_size``; TensorRT-LLM's ``draft_len_schedule``).
- :class:`TrtllmDynamic`: TensorRT-LLM's lookup and acceptance gate.
- :class:`~.policy_adaptive.EmaTiers`, :class:`~.policy_adaptive.Goodput`: the policies
  that learn from what they observe (:mod:`.policy_adaptive`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .policy import Policy, Seen
from .policy_adaptive import EmaTiers, Goodput


class BatchSchedule(Policy):
    """k by a batch-size lookup.

    vLLM form (``num_speculative_tokens_per_batch_size``, vLLM 0.32,
    ``vllm/v1/spec_decode/dynamic/utils.py`` ``build_dynamic_sd_schedule_lookup``):
    inclusive ``(lo, hi, k)`` ranges; a batch size in a gap takes the previous range's k,
    past the last range the last k; every k capped at ``kmax`` (``num_speculative_tokens``);
    the scheduler looks it up by the number of requests it scheduled
    (``vllm/v1/core/sched/scheduler.py``), so the k verified next follows this
    iteration's count.
    """

    def __init__(self, kmax: int, bands: list[tuple[int, int, int]], max_batch: int):
        super().__init__(kmax)
        self.bands = sorted((int(a), int(b), int(k)) for a, b, k in bands)
        dense = [0] * (max_batch + 1)
        last: int | None = None
        nxt = 1
        for lo, hi, k in self.bands:
            if last is not None:
                for b in range(nxt, min(lo, max_batch + 1)):
                    dense[b] = min(kmax, last)
            for b in range(max(lo, nxt), min(hi, max_batch) + 1):
                dense[b] = min(kmax, k)
            nxt = max(nxt, hi + 1)
            last = k
        for b in range(nxt, max_batch + 1):
            dense[b] = min(kmax, last if last is not None else kmax)
        dense[0] = dense[1] if max_batch >= 1 else kmax
        self.dense = dense

    def decide(self, batch: int) -> int:
        return self.dense[min(max(batch, 0), len(self.dense) - 1)]


def trtllm_bands(
    kmax: int, draft_len_schedule: dict[int, int] | None, max_concurrency: int | None
) -> list[tuple[int, int, int]]:
    """TensorRT-LLM's batch-size lookup as inclusive ranges: ``draft_len_schedule`` maps
    a batch size to the draft length of every batch size up to and including it (the
    first key at or above the batch size wins; past the last key, 0 = no speculation;
    ``tensorrt_llm/_torch/speculative/utils.py`` ``get_draft_len_for_batch_size``);
    ``max_concurrency`` alone means ``{max_concurrency: kmax}`` (``llm_args.py``
    ``DecodingBaseConfig``). Neither: kmax at every batch size."""
    sched = dict(draft_len_schedule or {})
    if not sched and max_concurrency is not None:
        sched = {int(max_concurrency): kmax}
    if not sched:
        return [(1, 1, kmax)]
    bands: list[tuple[int, int, int]] = []
    lo = 1
    for key in sorted(sched):
        bands.append((lo, int(key), int(sched[key])))
        lo = int(key) + 1
    bands.append((lo, lo, 0))
    return bands


class TrtllmDynamic(BatchSchedule):
    """TensorRT-LLM's dynamic speculation: the batch-size lookup of
    :func:`trtllm_bands` by the requests the executor holds (``running``), then the
    acceptance gate of ``tensorrt_llm/_torch/speculative/speculation_gate.py``
    (``SpeculationGate``): every iteration that drafted (D > 0) adds the batch's pooled
    rate A / D to a window of the last ``window`` samples; once the window is full and its
    mean is below ``threshold``, speculation is off for good (a one-way latch).
    """

    counts = "running"

    def __init__(
        self,
        kmax: int,
        bands: list[tuple[int, int, int]],
        max_batch: int,
        window: int | None,
        threshold: float | None,
    ):
        super().__init__(kmax, bands, max_batch)
        self.window = int(window or 0)
        self.threshold = threshold
        self.observes = self.window > 0 and threshold is not None
        self.rates: deque[float] = deque(maxlen=max(self.window, 1))
        self.total = 0.0  # sum of the window, kept running
        self.samples = 0
        self.off = False

    def decide(self, batch: int) -> int:
        return 0 if self.off else super().decide(batch)

    def _gate(self, accepted: list[int], drafted: list[int], commit: bool) -> int | None:
        """Step the gate over iterations; the index of the one that latches it, or None.
        ``commit``: keep the new state (observe) or leave it untouched (horizon). The
        window's sum is kept running, with the same additions either way."""
        rates = self.rates if commit else deque(self.rates, maxlen=self.rates.maxlen)
        total, samples = self.total, self.samples
        thr, full = float(self.threshold or 0.0), rates.maxlen
        hit = None
        for i, (a, d) in enumerate(zip(accepted, drafted, strict=True)):
            if d <= 0:
                continue
            r = a / d
            if len(rates) == full:
                total -= rates[0]
            rates.append(r)
            total += r
            samples += 1
            if samples >= self.window and total / len(rates) < thr:
                hit = i
                break
        if commit:
            self.total, self.samples = total, samples
            if hit is not None:
                self.off = True
                self.observes = False  # latched: nothing left to learn
        return hit

    def observe(self, batch: int, k: int, seen: Seen) -> None:
        if self.observes and not self.off:
            self._gate(seen.accepted, seen.drafted, commit=True)

    def horizon(self, batch: int, k: int, seen: Seen) -> int:
        n = len(seen.accepted)
        if self.decide(batch) != k:
            return 1
        if not self.observes or self.off:
            return n
        hit = self._gate(seen.accepted[: n - 1], seen.drafted[: n - 1], False)
        return n if hit is None else hit + 1


def build_policy(
    spec: Any, kmax: int, max_batch: int, step_ms: Callable[[int, int], float]
) -> Policy:
    """The runtime policy of a ``spec.policy`` (:mod:`.policy_schema`).

    Args:
        spec: the policy's contract (not ``fixed``).
        kmax: ``spec.num_spec_tokens``.
        max_batch: ``serving.max_num_seqs``.
        step_ms: the cost table (:func:`reference_step_ms`).
    """
    if spec.kind == "batch_schedule":
        sched = BatchSchedule(kmax, [tuple(b) for b in spec.bands], max_batch)
        sched.counts = spec.counts
        return sched
    if spec.kind == "goodput":
        return Goodput(kmax, step_ms, spec.window_iterations)
    if spec.kind == "trtllm_dynamic":
        sched = None if spec.draft_len_schedule is None else dict(spec.draft_len_schedule)
        bands = trtllm_bands(kmax, sched, spec.max_concurrency)
        return TrtllmDynamic(
            kmax,
            bands,
            max_batch,
            spec.acceptance_rate_window_size,
            spec.acceptance_rate_threshold,
        )
    if spec.kind == "sglang_adaptive":
        return EmaTiers(kmax, spec.slot_configs())
    raise ValueError(f"unknown policy kind {spec.kind!r}")
