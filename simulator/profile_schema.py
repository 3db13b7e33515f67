"""Profile contracts: the latency profile (``spectune/latency/v1``: forward-pass timings
of one model on one device) and the acceptance profile (``spectune/acceptance/v1``: how
often one drafter's tokens are accepted by one target). Re-exported by :mod:`.schema`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .schema_base import (
    CONFIG,
    MAX_LIST,
    DrafterKind,
    Frozen,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Prob,
)
from .trajectory_schema import MAX_TRAJECTORIES, Trajectory

# --------------------------------------------------------------------------- latency


class DeviceInfo(Frozen):
    """The device a latency profile was measured on (or derived for)."""

    name: str = Field(min_length=1)
    kind: Literal["gpu", "cpu", "tpu", "other"]
    dtype: str = Field(min_length=1)
    memory_gib: PosFloat | None = None  # per device; used by kv_cache_tokens: auto
    count: PosInt = 1  # devices one replica spans (tensor parallel)
    software: dict[str, str] = Field(default_factory=dict)
    kv_dtype: str | None = None  # KV-cache dtype the latencies assume (bf16 when absent)


class ModelArch(Frozen):
    """Architecture numbers of a decoder-only transformer."""

    name: str = Field(min_length=1)
    params: PosInt
    layers: PosInt
    hidden: PosInt
    heads: PosInt
    kv_heads: PosInt
    vocab: PosInt
    intermediate: PosInt | None = None
    head_dim: PosInt | None = None
    tensor_parallel: PosInt = 1
    # Optional (GPU cost model profiles): what the architecture numbers above cannot say.
    kind: str | None = None  # decoder | eagle | eagle3 | mtp
    weight_bytes: PosFloat | None = None  # weights held by the replica, at device.dtype
    kv_elements_per_token: PosFloat | None = None  # K+V elements per token, whole replica
    experts: PosInt | None = None  # routed experts per MoE layer
    experts_per_token: PosInt | None = None
    active_params: PosInt | None = None  # parameters one token multiplies by

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelArch:
        if self.heads % self.kv_heads:
            raise ValueError(
                f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})"
            )
        return self

    @property
    def head_dim_resolved(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def kv_bytes_per_token(self, dtype_bytes: float) -> float:
        """KV-cache bytes one token occupies across the whole replica (K and V, all layers;
        ``kv_elements_per_token`` when the profile states it: latent attention, replicated
        KV heads)."""
        if self.kv_elements_per_token is not None:
            return self.kv_elements_per_token * dtype_bytes
        return 2.0 * self.layers * self.kv_heads * self.head_dim_resolved * dtype_bytes


class Provenance(Frozen):
    """How a profile's numbers were made. ``calibrated`` profiles (the GPU cost model fitted
    on public measurements) carry the fitted ``parameters`` and the model's held-out
    ``error`` (leave-one-source-out, percent)."""

    kind: Literal["measured", "roofline", "calibrated"]
    how: str = Field(min_length=1)
    parameters: dict[str, float | str | None] | None = None
    error: dict[str, float] | None = None


class LatencyStats(Frozen):
    min: PosFloat
    p50: PosFloat
    p90: PosFloat
    n: PosInt

    @model_validator(mode="after")
    def _ordered(self) -> LatencyStats:
        if not self.min <= self.p50 <= self.p90:
            raise ValueError(f"need min <= p50 <= p90, got {self.min}, {self.p50}, {self.p90}")
        return self


class LatencyPoint(Frozen):
    batch: PosInt
    query_tokens: PosInt  # tokens per sequence in one forward (1 = decode, nodes+1 = verify)
    context_tokens: NonNegInt
    latency_ms: LatencyStats


class LatencyFit(Frozen):
    """A fitted latency model stored beside the points, with its cross-validated error."""

    kind: str = Field(min_length=1)
    cv_error_pct: NonNegFloat | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class HostOverhead(Frozen):
    """Host time of a serving engine's step that the profile's forwards do not cover,
    measured through that engine (``spectune profile latency --engine vllm``): scheduling,
    input preparation, sampling, output processing, inter-process hops. A step costs
    ``step_ms + per_seq_ms x sequences``, plus, when it verifies drafts,
    ``spec_step_ms + (spec_per_seq_ms + spec_per_node_seq_ms x drafted tokens) x
    sequences`` (rejection sampling, speculative bookkeeping). The simulator adds these to
    every iteration it prices with this profile (the target's). Milliseconds."""

    step_ms: NonNegFloat = 0.0
    per_seq_ms: NonNegFloat = 0.0
    spec_step_ms: NonNegFloat = 0.0
    spec_per_seq_ms: NonNegFloat = 0.0
    spec_per_node_seq_ms: NonNegFloat = 0.0
    how: str | None = None


class LatencyProfile(Frozen):
    schema_: Literal["spectune/latency/v1"] = Field(alias="schema")
    device: DeviceInfo
    model: ModelArch
    provenance: Provenance
    points: list[LatencyPoint] = Field(min_length=1)
    fit: LatencyFit | None = None
    # Measured through a serving engine: its per-step host time (absent: forwards only).
    host_overhead: HostOverhead | None = None
    notes: str | None = None

    model_config = ConfigDict(**CONFIG, populate_by_name=True)

    @field_validator("points")
    @classmethod
    def _unique_points(cls, points: list[LatencyPoint]) -> list[LatencyPoint]:
        seen: set[tuple[int, int, int]] = set()
        for p in points:
            key = (p.batch, p.query_tokens, p.context_tokens)
            if key in seen:
                raise ValueError(f"duplicate point batch={key[0]} query={key[1]} context={key[2]}")
            seen.add(key)
        return points


# --------------------------------------------------------------------------- acceptance


class AcceptanceCounts(Frozen):
    num_requests: NonNegInt = 0
    num_steps: NonNegInt = 0
    num_draft_tokens: NonNegInt = 0
    num_accepted_tokens: NonNegInt = 0


class AcceptanceSpec(Frozen):
    """Acceptance of one drafter against the target, as the simulator consumes it.

    ``per_position`` is the chain acceptance a_i = P(draft i accepted | 1..i-1 accepted);
    ``ranked`` is p_j = P(j-th ranked candidate accepted | candidates 1..j-1 rejected);
    ``spread`` is the standard deviation of the per-request mean acceptance (0 = every
    request alike); ``per_request`` optionally holds measured per-request mean acceptances
    to resample from instead of the fitted spread.
    """

    per_position: list[Prob] = Field(min_length=1)
    ranked: list[Prob] | None = None
    spread: NonNegFloat = 0.0
    per_request: list[Prob] | None = None
    # Drafters that may propose nothing at a step (n-gram lookup without a match) or fewer
    # than k tokens (suffix decoding): P(a step proposes any draft), and P(a proposing step
    # proposes d tokens), d = 1, 2, ...; per_position is then conditional on the position
    # being drafted. Absent: every step drafts k (docs/acceptance.md).
    match_probability: Prob | None = None
    draft_lengths: Annotated[list[Prob], Field(max_length=MAX_LIST)] | None = None
    # Recorded requests, replayed one per simulated request (trajectory_schema.py).
    trajectories: Annotated[list[Trajectory], Field(max_length=MAX_TRAJECTORIES)] | None = None

    @field_validator("spread")
    @classmethod
    def _spread_range(cls, v: float) -> float:
        if v > 0.5:
            raise ValueError(f"spread is a std of a probability and must be <= 0.5, got {v}")
        return v

    @field_validator("draft_lengths")
    @classmethod
    def _lengths_sum(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and abs(sum(v) - 1.0) > 1e-3:
            raise ValueError(f"P(d drafts), d = 1.., must sum to 1, got {sum(v):.4f}")
        return v


class AcceptanceProfile(Frozen):
    schema_: Literal["spectune/acceptance/v1"] = Field(alias="schema")
    target: str = Field(min_length=1)
    drafter: str = Field(min_length=1)
    drafter_kind: DrafterKind
    dataset: str = Field(min_length=1)
    temperature: NonNegFloat
    acceptance: AcceptanceSpec
    counts: AcceptanceCounts = AcceptanceCounts()
    provenance: Provenance | None = None

    model_config = ConfigDict(**CONFIG, populate_by_name=True)
