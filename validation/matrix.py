"""The validation matrix: which configurations and workloads ``spectune validate`` runs.

Every matrix entry is one configuration (drafter, chain k or tree budget/depth,
``max_num_seqs``) under one workload. Entries are run live
(:mod:`spectune.profiler.native.serve`) and simulated
(:func:`spectune.simulator.api.simulate`) on the *same* resolved scenario and seed, so both
serve the same requests.

Workloads (lengths sized for tiny CPU models: prompts and outputs of tens to a couple of
hundred tokens, so a run takes seconds):

- ``offline``: every request at t = 0 (saturated engine).
- ``closed``: 4 clients, each sending its next request when its last one finishes.
- ``poisson-low`` / ``poisson-high``: open-loop Poisson arrivals at 30% / 70% of the
  *capacity* (requests/s the simulator predicts for plain decoding at ``max_num_seqs`` 16
  on the offline workload — a load level, computed before any live run).
- ``azure``: the first rows of the Azure LLM 2023 conversation trace (Splitwise, CC-BY
  4.0) with its real arrival pattern, lengths scaled to the tiny models (prompt / 8,
  output / 4, each clipped to [8, 256] / [8, 128]) and time-scaled so that its mean
  arrival rate is 60% of the capacity. The scaled slice is written as a CSV beside the
  report and read by both sides through the workload's ``trace`` field.

Serving limits are set so the simulator cannot do what the live engine cannot
(``check_comparable`` in :mod:`spectune.profiler.native.serve`): a token budget above any
whole prefill and a KV cache that never binds, with the ``queue`` policy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spectune.simulator.api import simulate
from spectune.simulator.scenario import ResolvedScenario
from spectune.simulator.workload import read_trace

PROMPT_MAX_TOKENS = 256
OUTPUT_MAX_TOKENS = 128
MAX_BATCHED_TOKENS = 8192
TRACE_PROMPT_SCALE = 1 / 8
TRACE_OUTPUT_SCALE = 1 / 4
CLOSED_CONCURRENCY = 4
LOAD_FRACTIONS = {"poisson-low": 0.3, "poisson-high": 0.7, "azure": 0.6}


@dataclass(frozen=True)
class Entry:
    """One matrix entry: a configuration under a workload."""

    workload: str
    drafter: str  # scenario drafter name, or "none"
    k: int = 0
    tree: tuple[int, int] | None = None  # (node budget, depth) -> the optimal tree
    max_num_seqs: int = 8

    @property
    def id(self) -> str:
        shape = (
            "plain"
            if self.drafter == "none"
            else (f"tree{self.tree[0]}x{self.tree[1]}" if self.tree else f"k{self.k}")
        )
        who = "none" if self.drafter == "none" else self.drafter
        return f"{self.workload}/{who}/{shape}/mns{self.max_num_seqs}"

    def label(self) -> str:
        if self.drafter == "none":
            cfg = "plain"
        elif self.tree:
            cfg = f"{self.drafter} tree {self.tree[0]}/{self.tree[1]}"
        else:
            cfg = f"{self.drafter} k={self.k}"
        return f"{cfg}, mns {self.max_num_seqs}, {self.workload}"


@dataclass(frozen=True)
class Lengths:
    """Workload lengths (lognormal mean/cv, capped) and request counts."""

    prompt_mean: int
    output_mean: int
    num_requests: int
    trace_requests: int


# 64 scored requests: acceptance varies from request to request (the byte target's n-gram
# acceptance has a per-request spread of ~0.18), and 32 requests' mean n-gram tokens/step
# sat 7-13% below that of 256 other prompts of the same source. --quick: 32 (16 requests
# accepted 22-28% more than 96 calibration prompts in one run).
FULL = Lengths(prompt_mean=96, output_mean=64, num_requests=64, trace_requests=80)
QUICK = Lengths(prompt_mean=64, output_mean=40, num_requests=32, trace_requests=40)


def pick_drafters(rs: ResolvedScenario) -> tuple[str | None, str | None]:
    """(the first model drafter — a draft_model if any, else self or heads —, the first
    ngram drafter)."""
    order = {"draft_model": 0, "self": 1, "heads": 2}
    models = sorted(
        (order[d.spec.kind], i, n)
        for i, (n, d) in enumerate(rs.drafters.items())
        if d.spec.kind in order
    )
    model = models[0][2] if models else None
    ngram = next((n for n, d in rs.drafters.items() if d.spec.kind == "ngram"), None)
    return model, ngram


def build_matrix(rs: ResolvedScenario, quick: bool = False) -> list[Entry]:
    """The entries for this scenario's drafters (see the module docstring).

    Full: 30 entries — plain decoding at 4 batch caps; the model drafter at k = 1, 2, 3,
    4, 6, 8 (cap 8) and k = 4 at caps 1 and 16; the n-gram drafter at k = 2, 4, 8; trees
    (budget/depth) 4/2, 8/3, 12/4 for the model drafter and 6/3 for n-grams; all offline;
    then closed-loop, two Poisson loads and the Azure slice with plain and speculative
    configs. Quick: 10 entries over offline, closed and poisson-high.
    """
    dm, ng = pick_drafters(rs)
    out: list[Entry] = []

    def add(workload: str, drafter: str | None, **kw: Any) -> None:
        if drafter is not None:
            out.append(Entry(workload, drafter, **kw))

    if quick:
        add("offline", "none", max_num_seqs=1)
        add("offline", "none", max_num_seqs=8)
        add("offline", dm, k=4, max_num_seqs=1)
        add("offline", dm, k=2)
        add("offline", dm, k=4)
        add("offline", dm, tree=(8, 3))
        add("offline", ng, k=4)
        add("closed", dm, k=3, max_num_seqs=CLOSED_CONCURRENCY)
        add("poisson-high", "none", max_num_seqs=16)
        add("poisson-high", dm, k=4, max_num_seqs=16)
        return out
    for mns in (1, 4, 8, 16):
        add("offline", "none", max_num_seqs=mns)
    for k in (1, 2, 3, 4, 6, 8):
        add("offline", dm, k=k)
    add("offline", dm, k=4, max_num_seqs=1)
    add("offline", dm, k=4, max_num_seqs=16)
    for k in (2, 4, 8):
        add("offline", ng, k=k)
    for tree in ((4, 2), (8, 3), (12, 4)):
        add("offline", dm, tree=tree)
    add("offline", ng, tree=(6, 3))
    add("closed", "none", max_num_seqs=CLOSED_CONCURRENCY)
    add("closed", dm, k=3, max_num_seqs=CLOSED_CONCURRENCY)
    add("closed", ng, k=4, max_num_seqs=CLOSED_CONCURRENCY)
    for wl in ("poisson-low", "poisson-high"):
        add(wl, "none", max_num_seqs=16)
        add(wl, dm, k=4, max_num_seqs=16)
    add("poisson-high", ng, tree=(6, 3), max_num_seqs=16)
    add("azure", "none", max_num_seqs=16)
    add("azure", dm, k=3, max_num_seqs=16)
    add("azure", dm, tree=(8, 3), max_num_seqs=16)
    return out


# --------------------------------------------------------------------------- scenarios


def _lengths_workload(lengths: Lengths) -> dict[str, Any]:
    return {
        "trace": None,
        "num_requests": lengths.num_requests,
        "prompt_tokens": {
            "dist": "lognormal",
            "mean": lengths.prompt_mean,
            "cv": 0.5,
            "max": PROMPT_MAX_TOKENS,
        },
        "output_tokens": {
            "dist": "lognormal",
            "mean": lengths.output_mean,
            "cv": 0.4,
            "max": OUTPUT_MAX_TOKENS,
        },
        "arrival": None,
        "concurrency": None,
        "time_scale": 1.0,
    }


def scaled_trace(src: str | Path, out: str | Path, rows: int) -> Path:
    """Write the first ``rows`` rows of an Azure-style trace with lengths scaled and
    clipped for tiny models (module docstring); timestamps are kept.

    Returns:
        The written CSV's path.
    """
    src_text = Path(src).read_text().splitlines()
    tr = read_trace(src)
    prompt = np.clip(np.rint(tr.prompt_tokens[:rows] * TRACE_PROMPT_SCALE), 8, PROMPT_MAX_TOKENS)
    output = np.clip(np.rint(tr.output_tokens[:rows] * TRACE_OUTPUT_SCALE), 8, OUTPUT_MAX_TOKENS)
    header = [h.strip() for h in src_text[0].split(",")]
    col = header.index("TIMESTAMP")
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for i, row in enumerate(src_text[1 : rows + 1]):
        stamp = row.split(",")[col].strip()
        lines.append(f"{stamp},{int(prompt[i])},{int(output[i])}")
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n")
    return p


@dataclass
class Workloads:
    """Resolved workload settings for one validation (capacity and trace computed once)."""

    lengths: Lengths
    capacity_req_per_s: float
    trace_path: Path | None
    trace_mean_gap_s: float

    def apply(self, rs: ResolvedScenario, name: str) -> ResolvedScenario:
        """``rs`` with workload ``name``."""
        wl = _lengths_workload(self.lengths)
        trace_path = None
        if name == "offline":
            wl["mode"] = "offline"
        elif name == "closed":
            wl.update(mode="closed", concurrency=CLOSED_CONCURRENCY)
        elif name in ("poisson-low", "poisson-high"):
            rate = LOAD_FRACTIONS[name] * self.capacity_req_per_s
            wl.update(mode="open", arrival={"process": "poisson", "rate_per_s": rate})
        elif name == "azure":
            assert self.trace_path is not None
            rate = LOAD_FRACTIONS[name] * self.capacity_req_per_s
            wl.update(
                mode="open",
                trace=str(self.trace_path),
                num_requests=self.lengths.trace_requests,
                prompt_tokens=None,
                output_tokens=None,
                time_scale=rate * self.trace_mean_gap_s,
            )
            trace_path = self.trace_path
        else:
            raise KeyError(name)
        out = rs.with_workload(**wl)
        return dataclasses.replace(out, trace_path=trace_path)


def serving_for(rs: ResolvedScenario, max_num_seqs: int) -> ResolvedScenario:
    """Serving limits under which the DES and the live engine follow the same rules."""
    kv = max_num_seqs * (PROMPT_MAX_TOKENS + OUTPUT_MAX_TOKENS + 64)
    return rs.with_serving(
        max_num_seqs=max_num_seqs,
        max_batched_tokens=MAX_BATCHED_TOKENS,
        kv_cache_tokens=kv,
        preemption="queue",
    )


def entry_scenario(rs: ResolvedScenario, wls: Workloads, e: Entry) -> ResolvedScenario:
    """The resolved scenario that runs entry ``e``."""
    out = wls.apply(serving_for(rs, e.max_num_seqs), e.workload)
    if e.drafter == "none":
        return out.with_spec(drafter="none", num_spec_tokens=0, tree=None)
    if e.tree is not None:
        return out.with_spec(
            drafter=e.drafter,
            num_spec_tokens=0,
            tree={"budget": e.tree[0], "depth": e.tree[1]},
        )
    return out.with_spec(drafter=e.drafter, num_spec_tokens=e.k, tree=None)


def make_workloads(
    rs: ResolvedScenario,
    quick: bool,
    trace_src: Path | None,
    out_dir: Path,
    seed: int,
    scenario_for: Callable[[ResolvedScenario, Workloads, Entry], ResolvedScenario] | None = None,
) -> Workloads:
    """Capacity (simulated, plain decoding, cap 16, offline) and the scaled trace slice.

    The capacity is kept in ``out_dir/capacity.json`` (per lengths and seed) so a resumed
    validation keeps the load levels of its first run. ``scenario_for`` builds an entry's
    scenario (default :func:`entry_scenario`; another engine's serving rules)."""
    lengths = QUICK if quick else FULL
    base = Workloads(lengths, 1.0, None, 1.0)
    cache = out_dir / "capacity.json"
    key = json.dumps({"lengths": lengths.__dict__, "seed": seed}, sort_keys=True)
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if cached.get("key") == key:
        cap = float(cached["capacity_req_per_s"])
    else:
        build = scenario_for or entry_scenario
        plain = build(rs, base, Entry("offline", "none", max_num_seqs=16))
        cap = float(simulate(plain, seed).metrics["requests_per_s"])
        cache.write_text(json.dumps({"key": key, "capacity_req_per_s": cap}))
    trace_path, gap = None, 1.0
    if trace_src is not None and Path(trace_src).is_file():
        trace_path = scaled_trace(
            trace_src, out_dir / "azure-conv-scaled.csv", lengths.trace_requests
        )
        t = read_trace(trace_path).time_s
        gap = float((t[-1] - t[0]) / max(len(t) - 1, 1)) or 1.0
    return Workloads(lengths, cap, trace_path, gap)


def fingerprint(rs: ResolvedScenario, lengths: Lengths, seed: int) -> str:
    """Identity of a validation's live runs: runs are kept by entry id and repeat, so a
    resume matches when the models, the workload lengths and the seed are the same. Only
    what the live runs depend on counts (a drafter's kind, layers and acceptance — trees
    are built from it —, not the simulator's pricing fields), so a change to the
    simulator re-predicts the runs already made."""
    live_fields = {"name", "kind", "self_layers", "acceptance"}
    body = {
        "target": rs.target.model.name,
        "drafters": {
            n: d.spec.model_dump(mode="json", include=live_fields) for n, d in rs.drafters.items()
        },
        "lengths": lengths.__dict__,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
