"""TensorRT-LLM: the LLM-API YAML given to ``trtllm-serve MODEL --config spec.yaml``.

Every model in ``llm_args`` forbids unknown keys. ``decoding_type`` is a discriminated
union (``Draft_Target``, ``Eagle``, ``Eagle3``, ``MTP``, ``NGram``, ``SA``, ...);
``eagle_choices`` (a static tree) exists up to 1.3.0rc27; ``draft_len_schedule`` keys are
batch-size upper bounds (above the largest, speculation is off), its smallest key's draft
length must equal ``max_draft_len`` and none may exceed it, and it excludes
``max_concurrency``. ``max_batch_size`` / ``max_num_tokens`` carry the simulated caps.
"""

from __future__ import annotations

from typing import Any

from .common import (
    Band,
    EngineConfig,
    SpecChoice,
    capped_schedule,
    comment_lines,
    draft_ref,
    flag_assumed_variant,
    target_ref,
    to_yaml,
    tree_tuples,
)
from .versions import Capabilities


def emit_trtllm(choice: SpecChoice, bands: list[Band], caps: Capabilities) -> EngineConfig:
    notes: list[str] = [f"for {caps.label}; checked against {caps.checked}"]
    model = target_ref(choice, notes)
    flag_assumed_variant(choice, notes)
    notes.append(f"save as spec.yaml; run: trtllm-serve {model} --config spec.yaml")
    doc: dict[str, Any] = {}
    if choice.max_num_seqs:
        doc["max_batch_size"] = choice.max_num_seqs
    if choice.max_num_batched_tokens:
        doc["max_num_tokens"] = choice.max_num_batched_tokens
    if choice.speculates:
        doc["speculative_config"] = _spec(choice, bands, caps, notes)
    else:
        notes.append("plain decoding is best here: leave speculative_config out")
    return EngineConfig(
        "trtllm",
        doc,
        comment_lines(notes) + to_yaml(doc),
        notes=tuple(notes),
        version=caps.version,
        checked=caps.checked,
    )


def _spec(
    choice: SpecChoice, bands: list[Band], caps: Capabilities, notes: list[str]
) -> dict[str, Any]:
    m = choice.method
    spec: dict[str, Any] = {"decoding_type": caps.methods[m]}
    if m in ("draft_model", "eagle", "eagle3"):
        spec["speculative_model"] = draft_ref(choice, notes)
    if m == "eagle":
        notes.append(
            "decoding_type Eagle: the PyTorch backend runs it as Eagle3 and cannot load "
            "EAGLE-1/2 heads; use an EAGLE-3 head there"
        )
    if choice.tree_paths:
        tree = tree_tuples(choice.tree_paths)
        spec["max_draft_len"] = choice.depth
        spec["max_total_draft_tokens"] = len(tree)
        spec["eagle_choices"] = [list(p) for p in tree]
        return spec
    spec["max_draft_len"] = choice.num_spec_tokens
    if bands:
        bands, changed = capped_schedule(bands)
        # Keys are batch-size upper bounds; above the largest the draft length is 0, so
        # trailing k = 0 bands stay implicit.
        while bands and bands[-1][2] == 0:
            bands.pop()
        if bands:
            spec["max_draft_len"] = bands[0][2]
            spec["draft_len_schedule"] = {hi: k for _, hi, k in bands}
            notes.append("draft_len_schedule: a batch of at most each key uses that length")
            if changed:
                notes.append("later bands' k capped at the batch-1 k (= max_draft_len)")
    return spec
