"""The ``spec.policy`` contract: how the engine chooses k at each iteration.

``spec.num_spec_tokens`` stays the draft window (the largest k; vLLM's
``num_speculative_tokens``); the policy picks k in 0..that window per iteration
(:mod:`.policy` documents each rule and the engine source it follows).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .schema_base import MAX_LIST, MAX_NUM_SEQS, MAX_SPEC_TOKENS, Frozen, PosFloat

Band = tuple[
    Annotated[int, Field(ge=1, le=MAX_NUM_SEQS)],
    Annotated[int, Field(ge=1, le=MAX_NUM_SEQS)],
    Annotated[int, Field(ge=0, le=MAX_SPEC_TOKENS)],
]


# SGLang's built-in slots (``DEFAULT_ADAPTIVE_CONFIG`` in sgl-project/sglang
# python/sglang/srt/speculative/adaptive_spec_params.py, commit 015c8726).
SGLANG_DEFAULT_SLOTS: dict[int, dict[str, Any]] = {
    1: {"candidate_steps": [1, 3, 5, 7], "down_hysteresis": -0.25},
    8: {"candidate_steps": [0, 1, 3], "down_hysteresis": 0.0},
    32: {"candidate_steps": [0, 1], "down_hysteresis": 0.0},
    64: {"candidate_steps": [0], "down_hysteresis": 0.0},
}


class FixedPolicy(Frozen):
    """The same k (``spec.num_spec_tokens``) at every iteration."""

    kind: Literal["fixed"] = "fixed"
    """Which policy (the other kinds below)."""


class BatchSchedulePolicy(Frozen):
    """k by the number of sequences in the iteration (vLLM's
    ``num_speculative_tokens_per_batch_size``)."""

    kind: Literal["batch_schedule"] = "batch_schedule"
    bands: Annotated[list[Band], Field(min_length=1, max_length=MAX_LIST)]
    """Inclusive ``[first batch size, last batch size, k]`` ranges, the first starting at
    1, not overlapping; a batch size in a gap takes the previous range's k, past the last
    range the last k; each k is capped at ``spec.num_spec_tokens`` (vLLM's rules)."""
    counts: Literal["scheduled", "decoding", "running"] = "scheduled"
    """Which batch size the engine looks k up by: scheduled = the requests the last
    iteration scheduled (vLLM: the k drafted there is verified next); decoding = the
    decode batch about to run (SGLang's adaptive slots); running = the requests admitted
    before this iteration's scheduling (TensorRT-LLM)."""

    @model_validator(mode="after")
    def _ranges(self) -> BatchSchedulePolicy:
        bands = sorted(self.bands)
        if bands[0][0] != 1:
            raise ValueError("bands: the first range must start at batch size 1")
        end = 0
        for lo, hi, _ in bands:
            if lo > hi:
                raise ValueError(f"bands: range [{lo}, {hi}] ends before it starts")
            if lo <= end:
                raise ValueError(f"bands: range [{lo}, {hi}] overlaps the one before it")
            end = hi
        return self


class GoodputPolicy(Frozen):
    """Each iteration, the k with the most expected tokens per millisecond at the batch
    size, from the step costs and a running acceptance estimate."""

    kind: Literal["goodput"] = "goodput"
    window_iterations: PosFloat = 64.0
    """Memory of the running acceptance estimate, in iterations (each iteration's
    observations decay by 1 - 1/window); also how many iterations without speculation
    pass before it probes at num_spec_tokens again."""

    @model_validator(mode="after")
    def _window(self) -> GoodputPolicy:
        if self.window_iterations < 1.0:
            raise ValueError("window_iterations must be at least 1")
        return self


class TrtllmDynamicPolicy(Frozen):
    """TensorRT-LLM's dynamic speculation: a draft length per batch size
    (``draft_len_schedule``) or a concurrency above which it does not speculate
    (``max_concurrency``), and an acceptance gate that turns speculation off for good."""

    kind: Literal["trtllm_dynamic"] = "trtllm_dynamic"
    draft_len_schedule: (
        Annotated[
            dict[
                Annotated[int, Field(ge=1, le=MAX_NUM_SEQS)],
                Annotated[int, Field(ge=0, le=MAX_SPEC_TOKENS)],
            ],
            Field(min_length=1, max_length=MAX_LIST),
        ]
        | None
    ) = None
    """Batch size -> draft length, for every batch size up to and including the key; past
    the last key no speculation. The smallest key must map to num_spec_tokens."""
    max_concurrency: Annotated[int, Field(ge=1, le=MAX_NUM_SEQS)] | None = None
    """Speculate only while at most this many requests run (not with a schedule)."""
    acceptance_rate_window_size: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    """Iterations in the acceptance gate's window (0 or unset: no gate)."""
    acceptance_rate_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    """Turn speculation off for good once the window's mean accepted / drafted falls
    below this."""

    @model_validator(mode="after")
    def _forms(self) -> TrtllmDynamicPolicy:
        if self.draft_len_schedule is not None and self.max_concurrency is not None:
            raise ValueError("give draft_len_schedule or max_concurrency, not both")
        return self


class SglangSlot(Frozen):
    """One batch-size slot of SGLang's adaptive speculation."""

    candidate_steps: Annotated[
        list[Annotated[int, Field(ge=0, le=MAX_SPEC_TOKENS)]], Field(min_length=1, max_length=64)
    ]
    """Draft lengths (speculative steps) this slot may switch between; 0 = no drafting."""
    ema_alpha: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    """This slot's EMA weight (unset: the policy's)."""
    update_interval: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """This slot's iterations between decisions (unset: the policy's)."""
    warmup_batches: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    """This slot's warm-up iterations (unset: the policy's)."""
    down_hysteresis: Annotated[float, Field(ge=-64.0, le=64.0)] | None = None
    """This slot's step-down margin (unset: the policy's)."""
    up_hysteresis: Annotated[float, Field(ge=-64.0, le=64.0)] | None = None
    """This slot's step-up margin (unset: the policy's)."""


class SglangAdaptivePolicy(Frozen):
    """SGLang's ``--speculative-adaptive`` (EMA strategy): per batch-size slot, an EMA of
    accepted drafts moves between candidate draft lengths, after a warm-up, every few
    iterations, with hysteresis. ``spec.num_spec_tokens`` is the initial length
    (``--speculative-num-steps``)."""

    kind: Literal["sglang_adaptive"] = "sglang_adaptive"
    slots: (
        Annotated[
            dict[Annotated[int, Field(ge=1, le=MAX_NUM_SEQS)], SglangSlot],
            Field(min_length=1, max_length=64),
        ]
        | None
    ) = None
    """Smallest batch size of the slot -> its settings (SGLang's config file keys); unset:
    SGLang's built-in slots (1: [1, 3, 5, 7], 8: [0, 1, 3], 32: [0, 1], 64: [0])."""
    ema_alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    """EMA weight of the newest iteration's mean accepted drafts (every slot's default)."""
    update_interval: Annotated[int, Field(ge=1, le=1_000_000)] = 5
    """Iterations between two decisions of a slot, after its warm-up."""
    warmup_batches: Annotated[int, Field(ge=0, le=1_000_000)] = 10
    """Iterations a slot observes before its first decision."""
    down_hysteresis: Annotated[float, Field(ge=-64.0, le=64.0)] = -0.25
    """Added to the threshold for stepping down (negative: step down later)."""
    up_hysteresis: Annotated[float, Field(ge=-64.0, le=64.0)] = 0.0
    """Added to the threshold for stepping up."""

    def slot_configs(self) -> dict[int, dict[str, Any]]:
        """Each slot's settings with the top-level defaults merged in (SGLang's rule:
        the slot's own keys win)."""
        top = self.model_dump(exclude={"kind", "slots"})
        if self.slots is None:
            return {b: {**top, **cfg} for b, cfg in SGLANG_DEFAULT_SLOTS.items()}
        return {b: {**top, **slot.model_dump(exclude_none=True)} for b, slot in self.slots.items()}


PolicySpec = Annotated[
    FixedPolicy | BatchSchedulePolicy | GoodputPolicy | TrtllmDynamicPolicy | SglangAdaptivePolicy,
    Field(discriminator="kind"),
]
