"""Versioned YAML data contracts: latency profile, acceptance profile, scenario.

The scenario models live here; the two profile contracts in :mod:`.profile_schema` and the
shared tags, types and base model in :mod:`.schema_base`, all re-exported from this module.

Every file carries ``schema: spectune/<kind>/v<N>``. Models are frozen pydantic models,
validated when built, with no side effects. :func:`load_yaml_model` turns any validation
failure into one :class:`~spectune.simulator.errors.InputError` line naming the file, the
dotted field and what is wrong.

Units live in names (``_ms``, ``_s``, ``_tokens``, ``_gib``). Relative paths inside a file
resolve against that file's folder first, then the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .errors import InputError

# Loading helpers live in .loading; re-exported here, where callers have long found them.
from .loading import (  # noqa: F401
    apply_overrides,
    dump_yaml,
    read_yaml,
    resolve_path,
    validate_model,
    validation_error_line,
)
from .profile_schema import (  # noqa: F401  (re-exported: the contracts' one home)
    AcceptanceCounts,
    AcceptanceProfile,
    AcceptanceSpec,
    DeviceInfo,
    LatencyFit,
    LatencyPoint,
    LatencyProfile,
    LatencyStats,
    ModelArch,
    Provenance,
)
from .schema_base import (  # noqa: F401
    ACCEPTANCE_SCHEMA,
    LATENCY_SCHEMA,
    SCENARIO_SCHEMA,
    DrafterKind,
    Frozen,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Prob,
)

# --------------------------------------------------------------------------- scenario

DrafterVariant = Literal["eagle", "eagle3", "mtp", "medusa", "ngram", "suffix"]
VARIANTS_BY_KIND: dict[str, tuple[str, ...]] = {
    "heads": ("eagle", "eagle3", "mtp", "medusa"),
    "ngram": ("ngram", "suffix"),
    "draft_model": (),
    "self": (),
}


class LengthDist(Frozen):
    """A token-length distribution: constant, uniform [low, high], or lognormal(mean, cv)."""

    dist: Literal["constant", "uniform", "lognormal"]
    value: PosInt | None = None
    low: PosInt | None = None
    high: PosInt | None = None
    mean: PosFloat | None = None
    cv: NonNegFloat | None = None
    max: PosInt | None = None

    @model_validator(mode="after")
    def _params(self) -> LengthDist:
        need = {"constant": ("value",), "uniform": ("low", "high"), "lognormal": ("mean", "cv")}
        for name in need[self.dist]:
            if getattr(self, name) is None:
                raise ValueError(f"@{name}: is required for dist {self.dist}")
        if self.dist == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError(f"@low: must be <= high, got {self.low} > {self.high}")
        return self


class Arrival(Frozen):
    """Open-loop arrival process. ``gamma`` uses ``cv`` (coefficient of variation)."""

    process: Literal["poisson", "gamma"]
    rate_per_s: PosFloat
    cv: PosFloat = 1.0


class Workload(Frozen):
    """Where requests come from and when.

    mode ``open``: arrivals from ``arrival`` or, with ``trace`` and no ``arrival``, the
    trace's own timestamps (inter-arrival gaps divided by ``time_scale``: 2.0 replays twice
    as fast). mode ``closed``: ``concurrency`` clients, each sending its next request when
    its last one finishes. mode ``offline``: every request arrives at t = 0.
    Lengths come from the trace's columns when ``trace`` is given, else from
    ``prompt_tokens`` / ``output_tokens``.
    """

    mode: Literal["open", "closed", "offline"] = "open"
    trace: Path | None = None
    arrival: Arrival | None = None
    time_scale: PosFloat = 1.0
    concurrency: PosInt | None = None
    num_requests: PosInt | None = None
    prompt_tokens: LengthDist | None = None
    output_tokens: LengthDist | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Workload:
        if self.trace is None and (self.prompt_tokens is None or self.output_tokens is None):
            raise ValueError("@trace: give a trace, or both prompt_tokens and output_tokens")
        if self.mode == "open" and self.trace is None and self.arrival is None:
            raise ValueError("@arrival: is required for mode open without a trace to replay")
        if self.mode == "closed" and self.concurrency is None:
            raise ValueError("@concurrency: is required for mode closed")
        if self.trace is None and self.num_requests is None:
            raise ValueError("@num_requests: is required without a trace")
        return self


class Serving(Frozen):
    """Serving-engine limits (vLLM-like)."""

    max_num_seqs: PosInt = 256
    max_batched_tokens: PosInt = 8192
    kv_cache_tokens: PosInt | Literal["auto"] = "auto"
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    kv_dtype_bytes: PosFloat = 2.0
    weight_dtype_bytes: PosFloat = 2.0
    step_overhead_ms: NonNegFloat = 0.0
    # Host work per sequence per iteration (scheduling, sampling, bookkeeping): an engine
    # iteration's overhead is step_overhead_ms + step_overhead_per_seq_ms x sequences in it.
    step_overhead_per_seq_ms: NonNegFloat = 0.0
    # fused: prefill chunks join the iteration's one forward (vLLM); separate: every prompt
    # is its own forward (and draft-model forward) at full cost, as the live engine does.
    prefill: Literal["fused", "separate"] = "fused"
    # The context a decode iteration's attention is priced at: mean = each sequence reads
    # its own KV (paged attention: vLLM, SGLang, TRT-LLM); max = every sequence reads as
    # far as the batch's longest (a padded batch cache, as the live engine and HF do).
    attention_context: Literal["mean", "max"] = "mean"
    preemption: Literal["recompute", "queue"] = "recompute"


class Slo(Frozen):
    """Latency bounds, each met when its ``percentile`` over requests is within the bound
    (e.g. p99 TPOT <= 50 ms). Goodput counts the requests that meet every bound."""

    ttft_s: PosFloat | None = None
    tpot_s: PosFloat | None = None
    e2e_s: PosFloat | None = None
    percentile: Literal[50, 90, 99] = 99


class TargetSpec(Frozen):
    name: str | None = None
    latency_profile: Path
    # What an engine serves: a Hugging Face id or a local checkpoint folder (engine configs
    # name it; a placeholder, flagged, when absent).
    model: str | None = None


class AcceptanceRef(Frozen):
    """Inline acceptance numbers, or a path to an acceptance profile."""

    profile: Path | None = None
    per_position: list[Prob] | None = None
    ranked: list[Prob] | None = None
    spread: NonNegFloat = 0.0

    @model_validator(mode="after")
    def _one_source(self) -> AcceptanceRef:
        if (self.profile is None) == (self.per_position is None):
            raise ValueError("@per_position: give exactly one of 'profile' or 'per_position'")
        if self.per_position is not None and len(self.per_position) == 0:
            raise ValueError("per_position must not be empty")
        return self


class DrafterSpec(Frozen):
    """A candidate drafter.

    ``draft_model`` and ``heads`` need a ``latency_profile`` (one draft pass); ``self``
    drafts with the target's first ``self_layers`` layers (cost = that fraction of a target
    pass); ``ngram`` costs ``draft_ms_per_token`` (default 0) per drafted token.
    """

    name: str = Field(min_length=1)
    kind: DrafterKind
    latency_profile: Path | None = None
    acceptance: AcceptanceRef
    self_layers: PosInt | None = None
    draft_ms_per_token: NonNegFloat = 0.0
    # Host overhead that speculating with this drafter adds to every iteration (drafter
    # bookkeeping, lookups, verification), on top of the serving step overhead.
    step_overhead_ms: NonNegFloat = 0.0
    step_overhead_per_seq_ms: NonNegFloat = 0.0
    # ... and per sequence per draft pass (a model drafter's passes: k for a chain, the
    # depth for a tree; an n-gram drafter's lookups: 1 for a chain, one per tree node with
    # children, the root included) and per sequence per drafted node (verification,
    # sampling, tree masks): host work that grows with the draft shape.
    step_overhead_per_pass_seq_ms: NonNegFloat = 0.0
    step_overhead_per_node_seq_ms: NonNegFloat = 0.0
    # How a model drafter drafts a tree level: incremental = one pass over the previous
    # level's nodes (the tree's K/V stays cached, EAGLE-style); refeed = one pass over every
    # node above the level (no cached tree K/V, as spectune's live ModelDrafter does).
    tree_draft: Literal["incremental", "refeed"] = "incremental"
    # The checkpoint an engine loads for this drafter (Hugging Face id or folder): the draft
    # model, or the EAGLE/Medusa head; MTP heads live in the target's own checkpoint.
    model: str | None = None
    # Which algorithm of the kind, for engine configs (the simulator prices the kind):
    # heads: eagle (EAGLE-1/2 head), eagle3, mtp (the target's multi-token-prediction
    # layers), medusa; ngram: ngram (prompt lookup), suffix (suffix decoding). None =
    # eagle for heads, ngram for ngram (engine output flags the assumption).
    variant: DrafterVariant | None = None

    @field_validator("name")
    @classmethod
    def _not_none(cls, v: str) -> str:
        if v.lower() == "none":
            raise ValueError("'none' is reserved for plain decoding")
        return v

    @model_validator(mode="after")
    def _variant_fits_kind(self) -> DrafterSpec:
        allowed = VARIANTS_BY_KIND[self.kind]
        if self.variant is not None and self.variant not in allowed:
            ok = ", ".join(allowed) or "none"
            raise ValueError(f"@variant: {self.variant!r} is not a {self.kind} variant ({ok})")
        return self

    @model_validator(mode="after")
    def _kind_needs(self) -> DrafterSpec:
        if self.kind in ("draft_model", "heads") and self.latency_profile is None:
            raise ValueError(f"@latency_profile: is required for kind {self.kind}")
        if self.kind == "self" and self.self_layers is None:
            raise ValueError("@self_layers: is required for kind self")
        return self


class TreeSpec(Frozen):
    """A static tree: explicit ``paths`` (vLLM/TRT-LLM format: each path a list of ranked
    child indices from the root), or a node ``budget`` and ``depth`` for which the optimal
    tree is built from the drafter's ranked acceptance."""

    paths: list[list[NonNegInt]] | None = None
    budget: PosInt | None = None
    depth: PosInt | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TreeSpec:
        if (self.paths is None) == (self.budget is None):
            raise ValueError("give exactly one of 'paths' or 'budget'")
        if self.paths is not None:
            if not self.paths:
                raise ValueError("paths must not be empty")
            known = {tuple(p) for p in self.paths}
            for p in self.paths:
                if not p:
                    raise ValueError("a path must not be empty")
                if len(p) > 1 and tuple(p[:-1]) not in known:
                    raise ValueError(f"path {p} has no parent path {p[:-1]}")
            if len(known) != len(self.paths):
                raise ValueError("paths contain duplicates")
        return self


class SpecConfig(Frozen):
    """The speculative-decoding configuration to simulate. ``drafter: none`` = plain decoding."""

    drafter: str = "none"
    num_spec_tokens: NonNegInt = 0
    tree: TreeSpec | None = None

    @model_validator(mode="after")
    def _shape(self) -> SpecConfig:
        if self.tree is not None and self.drafter == "none":
            raise ValueError("@tree: a tree needs a drafter (spec.drafter is none)")
        return self


class SearchSpace(Frozen):
    """What the tuner may choose from (issue 4). Empty lists mean 'not searched'."""

    drafters: list[str] | None = None  # default: all candidates plus none
    num_spec_tokens: list[NonNegInt] = Field(default_factory=lambda: list(range(0, 9)))
    tree_budgets: list[PosInt] = Field(default_factory=list)
    tree_depths: list[PosInt] = Field(default_factory=list)
    max_num_seqs: list[PosInt] = Field(default_factory=list)
    # What `spectune recommend` optimises when --objective is not given; auto = latency
    # (p99 TPOT) for open-loop workloads, throughput otherwise (see tuner/objective.py).
    objective: Literal["auto", "throughput", "goodput", "latency"] = "auto"


class Scenario(Frozen):
    schema_: Literal["spectune/scenario/v1"] = Field(alias="schema")
    name: str | None = None
    target: TargetSpec
    drafters: list[DrafterSpec] = Field(default_factory=list)
    workload: Workload
    serving: Serving = Serving()
    slo: Slo = Slo()
    spec: SpecConfig = SpecConfig()
    search: SearchSpace = SearchSpace()
    seed: NonNegInt = 0

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _names(self) -> Scenario:
        names = [d.name for d in self.drafters]
        if len(set(names)) != len(names):
            raise ValueError(f"@drafters: names must be unique, got {names}")
        if self.spec.drafter != "none" and self.spec.drafter not in names:
            raise ValueError(
                f"@spec.drafter: unknown drafter '{self.spec.drafter}' "
                f"(known: {', '.join(names) or 'none'})"
            )
        return self

    def drafter(self, name: str) -> DrafterSpec:
        for d in self.drafters:
            if d.name == name:
                return d
        raise InputError(f"unknown drafter '{name}'", field="spec.drafter")


# --------------------------------------------------------------------------- loading


def load_yaml_model(cls: type[Frozen], path: str | Path) -> Any:
    """Read and validate one YAML file as ``cls``."""
    return validate_model(cls, read_yaml(path), path)


def load_latency_profile(path: str | Path) -> LatencyProfile:
    return load_yaml_model(LatencyProfile, path)


def load_acceptance_profile(path: str | Path) -> AcceptanceProfile:
    return load_yaml_model(AcceptanceProfile, path)
