"""TensorRT-LLM: the LLM-API YAML given to ``trtllm-serve --config``."""

from __future__ import annotations

from typing import Any

from .common import (
    Band,
    EngineConfig,
    SpecChoice,
    comment_lines,
    draft_path,
    to_yaml,
    tree_tuples,
)


def emit_trtllm(choice: SpecChoice, bands: list[Band], target: str) -> EngineConfig:
    notes: list[str] = [
        f"TensorRT-LLM LLM-API options: trtllm-serve {target} --config spec.yaml "
        "(alias --extra_llm_api_options)"
    ]
    doc: dict[str, Any] = {}
    if choice.max_num_seqs:
        doc["max_batch_size"] = choice.max_num_seqs
    if not choice.speculates:
        notes.append("plain decoding is best here: leave speculative_config out")
        return EngineConfig("trtllm", doc, comment_lines(notes) + to_yaml(doc), notes=tuple(notes))
    kind = choice.kind
    spec: dict[str, Any] = {}
    if kind == "ngram":
        spec["decoding_type"] = "NGram"
        spec["max_draft_len"] = choice.num_spec_tokens
        spec["max_matching_ngram_size"] = 4
        notes.append("max_matching_ngram_size is not tuned (the docs' example value)")
    elif kind == "heads":
        spec["decoding_type"] = "Eagle3"
        spec["speculative_model"] = draft_path(choice)
    else:
        spec["decoding_type"] = "DraftTarget"
        spec["speculative_model"] = (
            draft_path(choice) if kind == "draft_model" else f"<first-{choice.self_layers}-layers>"
        )
        if kind == "self":
            notes.append("no layer-skip drafter in TensorRT-LLM: export the first layers")
    if choice.tree_paths:
        depth = max(len(p) for p in choice.tree_paths)
        spec["max_draft_len"] = depth
        spec["max_total_draft_tokens"] = len(choice.tree_paths)
        spec["eagle_choices"] = [list(p) for p in tree_tuples(choice.tree_paths)]
        if kind != "heads":
            notes.append("static trees (eagle_choices) apply to Eagle decoding only")
        if bands:
            notes.append("draft_len_schedule not exported for a static tree")
    elif kind != "ngram":
        spec["max_draft_len"] = max([choice.num_spec_tokens, *(k for _, _, k in bands)])
    if bands and not choice.tree_paths:
        spec["max_draft_len"] = max([spec["max_draft_len"], *(k for _, _, k in bands)])
        # Keys are batch-size upper bounds; above the largest key the draft length is 0,
        # so trailing k = 0 bands are left implicit.
        trimmed = list(bands)
        while trimmed and trimmed[-1][2] == 0:
            trimmed.pop()
        if trimmed:
            spec["draft_len_schedule"] = {hi: k for _, hi, k in trimmed}
            if any(k == 0 for _, _, k in trimmed):
                notes.append("a k = 0 band below a k > 0 band: check your release accepts 0")
        notes.append("draft_len_schedule: batch size <= key uses that draft length")
    doc["speculative_config"] = spec
    return EngineConfig("trtllm", doc, comment_lines(notes) + to_yaml(doc), notes=tuple(notes))
