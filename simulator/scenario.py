"""Load a scenario file into a fully resolved, validated :class:`ResolvedScenario`.

Resolution reads every file the scenario names (latency profiles, acceptance profiles, the
trace's existence) and derives ``kv_cache_tokens: auto`` the way vLLM does:
``device memory × count × gpu_memory_utilization − weights`` divided by the KV bytes one
token occupies (target plus the drafter's own layers: :func:`auto_kv_cache_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .costmodel.dtypes import KV_DTYPE_BYTES
from .errors import InputError
from .loading import check_input_file
from .schema import (
    AcceptanceSpec,
    DrafterSpec,
    LatencyProfile,
    Scenario,
    Serving,
    apply_overrides,
    load_acceptance_profile,
    load_latency_profile,
    read_yaml,
    resolve_path,
    validate_model,
)
from .workload import TraceArrays, read_trace, trace_options

GIB = 1024**3


@dataclass(frozen=True)
class ResolvedDrafter:
    spec: DrafterSpec
    acceptance: AcceptanceSpec
    latency: LatencyProfile | None  # None for ngram and self


@dataclass(frozen=True)
class ResolvedScenario:
    """A scenario with every referenced file loaded and ``auto`` values derived."""

    scenario: Scenario
    source: str
    target: LatencyProfile
    drafters: dict[str, ResolvedDrafter] = field(default_factory=dict)
    trace_path: Path | None = None
    kv_cache_tokens: int = 0

    def trace(self) -> TraceArrays | None:
        """The workload's trace file parsed as the workload declares (None without one)."""
        if self.trace_path is None:
            return None
        return read_trace(self.trace_path, trace_options(self.scenario.workload))

    def with_spec(self, **changes: object) -> ResolvedScenario:
        """A copy with ``spec`` fields replaced (validated), e.g. ``num_spec_tokens=3``."""
        data = self.scenario.spec.model_dump()
        data.update(changes)
        spec = type(self.scenario.spec).model_validate(data)
        if spec.drafter != "none" and spec.drafter not in self.drafters:
            raise InputError(f"unknown drafter '{spec.drafter}'", field="spec.drafter")
        return _replace_scenario(self, self.scenario.model_copy(update={"spec": spec}))

    def with_serving(self, **changes: object) -> ResolvedScenario:
        data = self.scenario.serving.model_dump()
        data.update(changes)
        serving = type(self.scenario.serving).model_validate(data)
        return _replace_scenario(self, self.scenario.model_copy(update={"serving": serving}))

    def with_workload(self, **changes: object) -> ResolvedScenario:
        """A copy with ``workload`` fields replaced (validated), e.g. ``num_requests=500``
        or ``arrival={"process": "poisson", "rate_per_s": 4.0}``; the trace stays resolved."""
        data = self.scenario.workload.model_dump()
        data.update(changes)
        workload = type(self.scenario.workload).model_validate(data)
        return _replace_scenario(self, self.scenario.model_copy(update={"workload": workload}))


def _replace_scenario(rs: ResolvedScenario, sc: Scenario) -> ResolvedScenario:
    return ResolvedScenario(
        scenario=sc,
        source=rs.source,
        target=rs.target,
        drafters=rs.drafters,
        trace_path=rs.trace_path,
        kv_cache_tokens=(
            sc.serving.kv_cache_tokens
            if isinstance(sc.serving.kv_cache_tokens, int)
            else rs.kv_cache_tokens
        ),
    )


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> ResolvedScenario:
    """Read, override, validate and resolve a scenario file.

    Raises:
        InputError: one line naming the file (or ``--set``) and the field.
    """
    path = Path(path)
    raw = read_yaml(path)
    source = str(path) if not overrides else f"{path} (with --set)"
    data = apply_overrides(raw, overrides or [])
    sc: Scenario = validate_model(Scenario, data, source)
    return resolve_scenario(sc, base_dir=path.parent, source=source)


def resolve_scenario(sc: Scenario, base_dir: Path, source: str) -> ResolvedScenario:
    target_path = resolve_path(
        sc.target.latency_profile, base_dir, source, "target.latency_profile"
    )
    target = load_latency_profile(target_path)
    drafters: dict[str, ResolvedDrafter] = {}
    for i, d in enumerate(sc.drafters):
        lat = None
        if d.latency_profile is not None:
            lp = resolve_path(d.latency_profile, base_dir, source, f"drafters.{i}.latency_profile")
            lat = load_latency_profile(lp)
        if d.kind == "self" and d.self_layers is not None and d.self_layers >= target.model.layers:
            raise InputError(
                f"must be < the target's {target.model.layers} layers, got {d.self_layers}",
                source=source,
                field=f"drafters.{i}.self_layers",
            )
        acc_ref = d.acceptance
        if acc_ref.profile is not None:
            ap = resolve_path(acc_ref.profile, base_dir, source, f"drafters.{i}.acceptance.profile")
            prof = load_acceptance_profile(ap)
            acc = prof.acceptance
            if prof.drafter_kind != d.kind:
                raise InputError(
                    f"profile {ap.name} is for a {prof.drafter_kind} drafter, not {d.kind}",
                    source=source,
                    field=f"drafters.{i}.acceptance.profile",
                )
        else:
            acc = AcceptanceSpec(
                per_position=acc_ref.per_position or [],
                ranked=acc_ref.ranked,
                spread=acc_ref.spread,
            )
        drafters[d.name] = ResolvedDrafter(spec=d, acceptance=acc, latency=lat)

    trace_path = None
    wl = sc.workload
    if isinstance(wl.tokenizer, Path):  # a tokenizer.json: resolved like every other path
        tok = resolve_path(wl.tokenizer, base_dir, source, "workload.tokenizer")
        check_input_file(tok, source=source, field="workload.tokenizer")
        sc = sc.model_copy(update={"workload": wl.model_copy(update={"tokenizer": tok})})
    if sc.workload.trace is not None:
        trace_path = resolve_path(sc.workload.trace, base_dir, source, "workload.trace")
        check_input_file(trace_path, source=source, field="workload.trace")

    kv = sc.serving.kv_cache_tokens
    kv_tokens = kv if isinstance(kv, int) else auto_kv_cache_tokens(sc, target, drafters, source)
    return ResolvedScenario(
        scenario=sc,
        source=source,
        target=target,
        drafters=drafters,
        trace_path=trace_path,
        kv_cache_tokens=kv_tokens,
    )


def auto_kv_cache_tokens(
    sc: Scenario,
    target: LatencyProfile,
    drafters: dict[str, ResolvedDrafter],
    source: str,
) -> int:
    """KV-cache capacity in tokens from device memory, as vLLM sizes its block pool.

    ``device memory × count × gpu_memory_utilization × 0.95 − weights`` (0.95: activations
    and CUDA graphs, which vLLM profiles as a peak) divided by the KV bytes of one token.
    Weights: the target's, plus the drafter in ``spec`` if it has a latency profile (a draft
    model, or a head such as EAGLE or MTP, which shares the target's embedding and lm_head
    and holds only its own layers). KV per token: the target's, plus the drafter's own
    layers (a draft model keeps a full cache; EAGLE and MTP heads cache their layer(s)).
    Byte sizes: ``serving.weight_dtype_bytes`` / ``kv_dtype_bytes`` when the scenario sets
    them, else the profile's own (``model.weight_bytes`` at its dtype, ``device.kv_dtype``),
    else 2 bytes. For a search over drafters the tuner re-resolves per drafter.
    """
    dev = target.device
    if dev.memory_gib is None:
        raise InputError(
            "kv_cache_tokens: auto needs device.memory_gib in the target's latency profile",
            source=source,
            field="serving.kv_cache_tokens",
        )
    sv = sc.serving
    budget = dev.memory_gib * GIB * dev.count * sv.gpu_memory_utilization
    weights = _weight_bytes(target, sv)
    per_token = target.model.kv_bytes_per_token(_kv_bytes(target, sv))
    rd = drafters.get(sc.spec.drafter)
    if rd is not None and rd.latency is not None:
        weights += _weight_bytes(rd.latency, sv)
        if rd.spec.kind in ("draft_model", "heads"):
            per_token += rd.latency.model.kv_bytes_per_token(_kv_bytes(rd.latency, sv))
    free = budget * 0.95 - weights
    if free <= 0:
        raise InputError(
            f"weights ({weights / GIB:.1f} GiB) do not fit in {budget / GIB:.1f} GiB "
            "of device memory",
            source=source,
            field="serving.kv_cache_tokens",
        )
    return int(free // per_token)


def _weight_bytes(profile: LatencyProfile, serving: Serving) -> float:
    """Weights a profile's model holds: the scenario's bytes per weight if it sets them, else
    the profile's own figure, else 2 bytes per parameter."""
    if "weight_dtype_bytes" in serving.model_fields_set or profile.model.weight_bytes is None:
        return profile.model.params * serving.weight_dtype_bytes
    return profile.model.weight_bytes


def _kv_bytes(profile: LatencyProfile, serving: Serving) -> float:
    """Bytes per KV element: the scenario's if it sets them, else the profile's KV dtype."""
    if "kv_dtype_bytes" in serving.model_fields_set or profile.device.kv_dtype is None:
        return serving.kv_dtype_bytes
    return KV_DTYPE_BYTES.get(profile.device.kv_dtype, 2.0)
