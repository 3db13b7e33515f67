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
from .policy_schema import PolicySpec
from .profile_schema import (  # noqa: F401  (re-exported: the contracts' one home)
    AcceptanceCounts,
    AcceptanceProfile,
    AcceptanceSpec,
    DeviceInfo,
    HostOverhead,
    LatencyFit,
    LatencyPoint,
    LatencyProfile,
    LatencyStats,
    ModelArch,
    Provenance,
)
from .schema_base import (  # noqa: F401
    ACCEPTANCE_SCHEMA,
    CONFIG,
    LATENCY_SCHEMA,
    MAX_LIST,
    MAX_NUM_SEQS,
    MAX_REQUESTS,
    MAX_SPEC_TOKENS,
    MAX_TOKENS,
    MAX_TREE_NODES,
    SCENARIO_SCHEMA,
    DrafterKind,
    Frozen,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Prob,
)
from .workload_schema import Arrival, LengthDist, Workload  # noqa: F401

# --------------------------------------------------------------------------- scenario

NumSeqs = Annotated[int, Field(gt=0, le=MAX_NUM_SEQS)]
SpecTokens = Annotated[int, Field(ge=0, le=MAX_SPEC_TOKENS)]
TreeNodes = Annotated[int, Field(gt=0, le=MAX_TREE_NODES)]

DrafterVariant = Literal["eagle", "eagle3", "mtp", "medusa", "ngram", "suffix"]
VARIANTS_BY_KIND: dict[str, tuple[str, ...]] = {
    "heads": ("eagle", "eagle3", "mtp", "medusa"),
    "ngram": ("ngram", "suffix"),
    "draft_model": (),
    "self": (),
    "suffix": ("suffix",),
}
Ms = Annotated[float, Field(ge=0.0, le=1e6)]


class Serving(Frozen):
    """Serving-engine limits (vLLM-like)."""

    max_num_seqs: NumSeqs = 256
    """Most sequences in one iteration's batch (vLLM ``max_num_seqs``)."""
    max_batched_tokens: Annotated[int, Field(gt=0, le=MAX_TOKENS)] = 8192
    """Most tokens one iteration processes: prefill chunks plus decode/verify tokens."""
    kv_cache_tokens: Annotated[int, Field(gt=0, le=10**12)] | Literal["auto"] = "auto"
    """KV-cache capacity in tokens; auto = device memory x utilization - weights, divided by
    the KV bytes of one token (as vLLM sizes its block pool)."""
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    """Share of device memory the engine may use (for kv_cache_tokens: auto)."""
    kv_dtype_bytes: Annotated[float, Field(gt=0.0, le=16.0)] = 2.0
    """Bytes per KV-cache element (2 = fp16/bf16, 1 = fp8)."""
    weight_dtype_bytes: Annotated[float, Field(gt=0.0, le=16.0)] = 2.0
    """Bytes per weight (for kv_cache_tokens: auto)."""
    step_overhead_ms: Ms = 0.0
    """Host time per engine iteration in ms (scheduling, sampling), on top of the forwards."""
    step_overhead_per_seq_ms: Ms = 0.0
    """Host work per sequence per iteration in ms (scheduling, sampling, bookkeeping): an
    iteration's overhead is step_overhead_ms + step_overhead_per_seq_ms x its sequences."""
    prefill: Literal["fused", "separate"] = "fused"
    """fused: prefill chunks join the iteration's one forward (vLLM); separate: every prompt
    is its own forward (and draft-model forward) at full cost, as the live engine does."""
    attention_context: Literal["mean", "max"] = "mean"
    """The context a decode iteration's attention is priced at: mean = each sequence reads
    its own KV (paged attention: vLLM, SGLang, TRT-LLM); max = every sequence reads as far
    as the batch's longest (a padded batch cache, as the live engine and HF do)."""
    preemption: Literal["recompute", "queue"] = "recompute"
    """What happens when the KV cache is full: recompute = evict the newest sequence and
    prefill it again later (vLLM); queue = admit no new request until space frees."""
    engine: Literal["generic", "vllm"] = "generic"
    """Named engine behaviours the simulator follows where engines differ (docs/engines.md
    lists each rule and its evidence): generic = the simulator's own rules; vllm = vLLM's
    V1 engine (a draft model's first pass runs over the verified tokens, not one token)."""


class Slo(Frozen):
    """Latency bounds, each met when its ``percentile`` over requests is within the bound
    (e.g. p99 TPOT <= 50 ms). Goodput counts the requests that meet every bound."""

    ttft_s: PosFloat | None = None
    """Time to first token bound, seconds."""
    tpot_s: PosFloat | None = None
    """Time per output token (after the first) bound, seconds."""
    e2e_s: PosFloat | None = None
    """End-to-end latency bound, seconds."""
    percentile: Literal[50, 90, 99] = 99
    """The percentile over requests each bound applies to."""


class TargetSpec(Frozen):
    """The target model."""

    name: str | None = None
    """Display name (default: the latency profile's model name)."""
    latency_profile: Path
    """Latency profile of the target (spectune/latency/v1), relative to the scenario."""
    model: str | None = None
    """What an engine serves: a Hugging Face id or a checkpoint folder (engine configs name
    it; without it they carry a flagged placeholder)."""


class AcceptanceRef(Frozen):
    """Inline acceptance numbers, or a path to an acceptance profile."""

    profile: Path | None = None
    """An acceptance profile (spectune/acceptance/v1), relative to the scenario."""
    per_position: Annotated[list[Prob], Field(max_length=MAX_LIST)] | None = None
    """Inline chain acceptance a_1, a_2, ... = P(draft i accepted | drafts 1..i-1 accepted);
    the last value repeats for longer chains."""
    ranked: Annotated[list[Prob], Field(max_length=MAX_LIST)] | None = None
    """Inline ranked acceptance p_1, p_2, ... of the drafter's top candidates (trees)."""
    spread: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    """Standard deviation of the per-request mean acceptance (0 = every request alike)."""

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
    """Name used by spec.drafter and search.drafters (``none`` is reserved)."""
    kind: DrafterKind
    """draft_model (separate small LM), heads (Medusa/EAGLE-like), ngram (prompt lookup) or
    self (layer skip: the target's first layers)."""
    latency_profile: Path | None = None
    """Latency profile of one draft pass (draft_model, heads)."""
    acceptance: AcceptanceRef
    """Acceptance of this drafter against the target."""
    self_layers: PosInt | None = None
    """self: the target layers that draft."""
    draft_ms_per_token: Ms = 0.0
    """ngram: host time per drafted token, ms."""
    step_overhead_ms: Ms = 0.0
    """Host overhead in ms that speculating with this drafter adds to every iteration
    (bookkeeping, lookups, verification), on top of the serving step overhead."""
    step_overhead_per_seq_ms: Ms = 0.0
    """... and per sequence in the iteration, ms."""
    step_overhead_per_pass_seq_ms: Ms = 0.0
    """... and per sequence per draft pass, ms (a model drafter's passes: k for a chain, the
    depth for a tree; an n-gram drafter's lookups: 1 for a chain, one per tree node with
    children, the root included)."""
    step_overhead_per_node_seq_ms: Ms = 0.0
    """... and per sequence per drafted node, ms (verification, sampling, tree masks)."""
    prompt_lookup_min: Annotated[int, Field(ge=1, le=64)] | None = None
    """ngram: the shortest n-gram prompt lookup matches (vLLM's prompt_lookup_min; default 1)."""
    prompt_lookup_max: Annotated[int, Field(ge=1, le=64)] | None = None
    """ngram: the longest n-gram it tries first (vLLM's prompt_lookup_max; default 3)."""
    tree_draft: Literal["incremental", "refeed"] = "incremental"
    """How a model drafter drafts a tree level: incremental = one pass over the previous
    level's nodes (the tree's K/V stays cached, EAGLE-style); refeed = one pass over every
    node above the level (no cached tree K/V, as spectune's live ModelDrafter does)."""
    model: str | None = None
    """The checkpoint an engine loads for this drafter (Hugging Face id or folder): the draft
    model or the EAGLE/Medusa head; MTP layers live in the target's own checkpoint."""
    variant: DrafterVariant | None = None
    """Which algorithm of the kind, for engine configs (the simulator prices the kind):
    heads: eagle (EAGLE-1/2 head; the default), eagle3, mtp (the target's multi-token
    prediction layers), medusa; ngram: ngram (prompt lookup; the default), suffix (suffix
    decoding)."""

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
        lo, hi = self.prompt_lookup_min, self.prompt_lookup_max
        if (lo is not None or hi is not None) and self.kind != "ngram":
            raise ValueError("@prompt_lookup_min: only ngram drafters look up prompts")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"@prompt_lookup_min: must be <= prompt_lookup_max, got {lo} > {hi}")
        return self

    @property
    def lookup_window(self) -> tuple[int, int]:
        """(min, max) n-gram sizes of an ngram drafter (defaults 1 and 3)."""
        lo = self.prompt_lookup_min or 1
        return lo, max(lo, self.prompt_lookup_max or 3)


class TreeSpec(Frozen):
    """A static tree: explicit ``paths`` (vLLM/TRT-LLM format: each path a list of ranked
    child indices from the root), or a node ``budget`` and ``depth`` for which the optimal
    tree is built from the drafter's ranked acceptance."""

    paths: (
        Annotated[
            list[Annotated[list[NonNegInt], Field(max_length=MAX_TREE_NODES)]],
            Field(max_length=MAX_TREE_NODES),
        ]
        | None
    ) = None
    """Explicit tree: each path a list of ranked child indices from the root."""
    budget: TreeNodes | None = None
    """Node budget of the optimal tree built from the drafter's ranked acceptance."""
    depth: TreeNodes | None = None
    """Maximum depth of that tree (default: the budget)."""

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
    """A drafter's name, or none (plain decoding)."""
    num_spec_tokens: SpecTokens = 0
    """k, the draft length of a chain (0 = plain decoding)."""
    tree: TreeSpec | None = None
    """A tree instead of a chain."""
    policy: PolicySpec | None = None
    """How k is chosen at each iteration (default: fixed at num_spec_tokens, which is then
    the largest k the policy may pick; SGLang's initial one): kind fixed, batch_schedule
    (vLLM), trtllm_dynamic, sglang_adaptive or goodput (docs/policies.md)."""

    @model_validator(mode="after")
    def _shape(self) -> SpecConfig:
        if self.tree is not None and self.drafter == "none":
            raise ValueError("@tree: a tree needs a drafter (spec.drafter is none)")
        if self.policy is not None and self.policy.kind != "fixed":
            if self.tree is not None:
                raise ValueError("@policy: speculation policies choose a chain's k (no tree)")
            if self.drafter == "none" or self.num_spec_tokens == 0:
                raise ValueError("@policy: a policy needs a drafter and num_spec_tokens > 0")
            sched = getattr(self.policy, "draft_len_schedule", None)
            if sched:
                if sched[min(sched)] != self.num_spec_tokens:
                    raise ValueError(
                        "@policy.draft_len_schedule: the smallest batch size must map to "
                        f"num_spec_tokens ({self.num_spec_tokens}), as TensorRT-LLM requires"
                    )
                if max(sched.values()) > self.num_spec_tokens:
                    raise ValueError(
                        "@policy.draft_len_schedule: a draft length exceeds num_spec_tokens "
                        f"({self.num_spec_tokens})"
                    )
        return self


def _bounded_list(item: Any) -> Any:
    return Annotated[list[item], Field(max_length=MAX_LIST)]


class SearchSpace(Frozen):
    """What the tuner may choose from. Empty lists mean 'not searched'."""

    drafters: _bounded_list(str) | None = None  # type: ignore[valid-type]
    """Drafter names to search, ``none`` (plain decoding, the baseline every pick is
    compared with) included; default: every candidate plus none."""
    num_spec_tokens: _bounded_list(SpecTokens) = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(range(0, 9))
    )
    """Chain lengths k to search."""
    tree_budgets: _bounded_list(TreeNodes) = Field(default_factory=list)  # type: ignore[valid-type]
    """Tree node budgets to search (empty: no trees)."""
    tree_depths: _bounded_list(TreeNodes) = Field(default_factory=list)  # type: ignore[valid-type]
    """Tree depths to search (empty: each budget's best depth)."""
    max_num_seqs: _bounded_list(NumSeqs) = Field(default_factory=list)  # type: ignore[valid-type]
    """Batch caps to search (empty: serving.max_num_seqs only)."""
    policies: list[Literal["fixed", "schedule", "cutoff", "sglang_adaptive", "goodput"]] = Field(
        default_factory=lambda: ["fixed"], max_length=5
    )
    """Speculation policies to search for chains: fixed k; the per-batch-size schedule
    (priced per band, simulated); cutoff (k up to a batch size, none above); SGLang's
    adaptive speculation (built-in slots); goodput per step (no engine runs it: a
    reference). docs/policies.md."""
    objective: Literal["auto", "throughput", "goodput", "latency"] = "auto"
    """What ``spectune recommend`` optimises when --objective is not given; auto = latency
    (TPOT at the SLO percentile) for open-loop workloads, throughput otherwise."""


class Scenario(Frozen):
    """A scenario: the target, candidate drafters, workload, serving limits, SLOs, the
    config to simulate and the tuner's search space."""

    schema_: Literal["spectune/scenario/v1"] = Field(alias="schema")
    """Always ``spectune/scenario/v1``."""
    name: str | None = None
    """Display name."""
    target: TargetSpec
    """The target model."""
    drafters: list[DrafterSpec] = Field(default_factory=list, max_length=64)
    """Candidate drafters."""
    workload: Workload
    """Where requests come from and when."""
    serving: Serving = Serving()
    """Serving-engine limits."""
    slo: Slo = Slo()
    """Latency bounds (goodput counts requests that meet every one)."""
    spec: SpecConfig = SpecConfig()
    """The config ``simulate`` runs."""
    search: SearchSpace = SearchSpace()
    """What ``recommend`` searches."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    """Random seed (arrivals, lengths, acceptance draws)."""

    model_config = ConfigDict(**CONFIG, populate_by_name=True)

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
        searched = self.search.drafters
        if searched is not None:
            for i, name in enumerate(searched):
                if name != "none" and name not in names:
                    raise ValueError(
                        f"@search.drafters.{i}: unknown drafter '{name}' "
                        f"(known: {', '.join(['none', *names])})"
                    )
            if searched and "none" not in searched:
                # Named at `search`: the whole space needs its baseline.
                raise ValueError(
                    "@search: drafters must include none (plain decoding, the baseline every "
                    f"pick is compared with), got {searched}; e.g. {['none', *searched]}"
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
