"""The validation matrix against vLLM, grouped by engine configuration.

A vLLM engine fixes its drafter, k and ``max_num_seqs`` at start-up, and a start costs
tens of seconds, so the matrix is run engine configuration by engine configuration
(:func:`group`), every entry of a configuration on one server. Entries
(:class:`~.matrix.Entry`, ids as the native validation's):

Full (32 entries, 20 engine configurations):

- offline, ``max_num_seqs`` 8: plain; the first n-gram drafter (its prompt-lookup window)
  at k = 1, 2, 4, 6, 8; the second n-gram drafter (another window) at k = 3, 5, 8; the
  draft model at k = 1, 2, 3, 4, 6;
- offline at other caps: plain at 1, 4, 16; the draft model k = 3 at 1 and 16; the first
  n-gram k = 4 at 16;
- load levels on the cap-16 engines (plain, n-gram k = 4, draft model k = 3): a closed loop
  of 4 clients, Poisson arrivals at 30 % and 70 % of the simulated capacity, and the
  time-scaled Azure conversation slice at 60 % (:mod:`.matrix`'s workloads).

Quick (8 entries, 4 engine configurations): plain, n-gram k = 4 and draft model k = 3 at
cap 16, offline and Poisson-high; the second n-gram k = 2 at cap 4, offline and closed.

Serving limits are vLLM's, in the engine and in the simulation alike
(:func:`entry_scenario`): the server's token budget (2048 on CPU, set explicitly),
``preemption: recompute``, a KV cache of ``kv_cache_gib`` (tokens as vLLM sizes them:
the target's and a draft model's KV per token out of the same bytes, in blocks of 128)
and ``serving.engine: vllm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectune.profiler.engines.vllm_config import GIB, VllmSettings, VllmSpec
from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario

from .matrix import Entry, Workloads

BUDGET_TOKENS = 2048  # vLLM's server default on CPU, set explicitly on both sides
BLOCK = 128  # vLLM's CPU KV block size
CLOSED = 4


@dataclass(frozen=True)
class EngineBase:
    """What every engine of a validation shares (from the CLI)."""

    target_dir: str
    drafter_dirs: dict[str, str]  # draft_model drafter name -> its directory
    dtype: str = "bfloat16"
    eager: bool = False
    kv_cache_gib: float = 1.0
    seed: int = 0


def drafters_by_kind(rs: ResolvedScenario) -> tuple[str | None, list[str]]:
    """(the first draft_model drafter, the n-gram drafters in scenario order).

    Raises:
        InputError: a drafter kind vLLM cannot run here (self, heads without a model).
    """
    model = None
    ngrams = []
    for i, (name, rd) in enumerate(rs.drafters.items()):
        kind = rd.spec.kind
        if kind == "ngram":
            ngrams.append(name)
        elif kind == "draft_model":
            model = model or name
        else:
            raise InputError(
                f"vLLM validation has no '{kind}' drafter (use draft_model or ngram)",
                source=rs.source,
                field=f"drafters.{i}",
            )
    return model, ngrams


def build_vllm_matrix(rs: ResolvedScenario, quick: bool = False) -> list[Entry]:
    """The entries for this scenario's drafters (module docstring)."""
    dm, ngrams = drafters_by_kind(rs)
    ng1 = ngrams[0] if ngrams else None
    ng2 = ngrams[1] if len(ngrams) > 1 else None
    out: list[Entry] = []

    def add(workload: str, drafter: str | None, **kw: Any) -> None:
        if drafter is not None:
            out.append(Entry(workload, drafter, **kw))

    if quick:
        for wl in ("offline", "poisson-high"):
            add(wl, "none", max_num_seqs=16)
            add(wl, ng1, k=4, max_num_seqs=16)
            add(wl, dm, k=3, max_num_seqs=16)
        add("offline", ng2, k=2, max_num_seqs=CLOSED)
        add("closed", ng2, k=2, max_num_seqs=CLOSED)
        return out
    add("offline", "none", max_num_seqs=8)
    for k in (1, 2, 4, 6, 8):
        add("offline", ng1, k=k)
    for k in (3, 5, 8):
        add("offline", ng2, k=k)
    for k in (1, 2, 3, 4, 6):
        add("offline", dm, k=k)
    for mns in (1, 4, 16):
        add("offline", "none", max_num_seqs=mns)
    add("offline", dm, k=3, max_num_seqs=1)
    add("offline", dm, k=3, max_num_seqs=16)
    add("offline", ng1, k=4, max_num_seqs=16)
    for wl in ("closed", "poisson-low", "poisson-high", "azure"):
        add(wl, "none", max_num_seqs=16)
        add(wl, ng1, k=4, max_num_seqs=16)
        add(wl, dm, k=3, max_num_seqs=16)
    return out


def settings_for(rs: ResolvedScenario, e: Entry, base: EngineBase) -> VllmSettings:
    """The vLLM engine configuration that runs entry ``e``."""
    spec = None
    if e.drafter != "none":
        rd = rs.drafters[e.drafter]
        if rd.spec.kind == "ngram":
            lo, hi = rd.spec.lookup_window
            spec = VllmSpec("ngram", e.k, lo, hi)
        else:
            spec = VllmSpec("draft_model", e.k, model=base.drafter_dirs[e.drafter])
    return VllmSettings(
        model=base.target_dir,
        dtype=base.dtype,
        max_num_seqs=e.max_num_seqs,
        max_num_batched_tokens=BUDGET_TOKENS,
        spec=spec,
        enforce_eager=base.eager,
        kv_cache_gib=base.kv_cache_gib,
        seed=base.seed,
    )


def group(
    rs: ResolvedScenario, entries: list[Entry], base: EngineBase
) -> list[tuple[VllmSettings, list[Entry]]]:
    """Entries by engine configuration, in first-appearance order."""
    out: dict[str, tuple[VllmSettings, list[Entry]]] = {}
    for e in entries:
        st = settings_for(rs, e, base)
        out.setdefault(st.key(), (st, []))[1].append(e)
    return list(out.values())


def kv_tokens(rs: ResolvedScenario, drafter: str, kv_cache_gib: float) -> int:
    """KV-cache tokens vLLM makes of ``kv_cache_gib`` for this spec: bytes over the KV
    bytes per token of the target and, for a draft model, the drafter, in whole blocks."""
    arch = rs.target.model
    per_token = arch.kv_bytes_per_token(2.0)
    if drafter != "none":
        rd = rs.drafters[drafter]
        if rd.spec.kind == "draft_model" and rd.latency is not None:
            per_token += rd.latency.model.kv_bytes_per_token(2.0)
    tokens = int(kv_cache_gib * GIB // per_token)
    return max(BLOCK, tokens // BLOCK * BLOCK)


def entry_scenario(
    rs: ResolvedScenario, wls: Workloads, e: Entry, kv_cache_gib: float = 1.0
) -> ResolvedScenario:
    """The resolved scenario that runs entry ``e`` (vLLM's serving limits and rules)."""
    out = rs.with_serving(
        max_num_seqs=e.max_num_seqs,
        max_batched_tokens=BUDGET_TOKENS,
        kv_cache_tokens=kv_tokens(rs, e.drafter, kv_cache_gib),
        preemption="recompute",
        engine="vllm",
        prefill="fused",
        attention_context="mean",
    )
    out = wls.apply(out, e.workload)
    if e.drafter == "none":
        return out.with_spec(drafter="none", num_spec_tokens=0, tree=None)
    if e.tree is not None:
        raise InputError("vLLM validation runs chains only", field="spec.tree")
    return out.with_spec(drafter=e.drafter, num_spec_tokens=e.k, tree=None)


def drafter_dirs(rs: ResolvedScenario, models_dir: Path) -> dict[str, str]:
    """Directory of each draft_model drafter (``<models_dir>/<latency profile's model>``).

    Raises:
        InputError: a drafter whose directory is missing.
    """
    out = {}
    for i, (name, rd) in enumerate(rs.drafters.items()):
        if rd.spec.kind != "draft_model":
            continue
        assert rd.latency is not None
        path = models_dir / rd.latency.model.name
        if not (path / "config.json").is_file():
            raise InputError(
                f"no checkpoint for drafter model '{rd.latency.model.name}' in {models_dir} "
                "(pass --models DIR)",
                source=rs.source,
                field=f"drafters.{i}",
            )
        out[name] = str(path.resolve())
    return out
