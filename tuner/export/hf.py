"""Hugging Face transformers: ``generate()`` assisted-generation kwargs."""

from __future__ import annotations

import json
from typing import Any

from .common import (
    Band,
    EngineConfig,
    SpecChoice,
    band_k_at,
    comment_lines,
    draft_path,
)


def emit_hf(choice: SpecChoice, bands: list[Band], target: str) -> EngineConfig:
    notes: list[str] = ["transformers GenerationConfig kwargs for model.generate(...)"]
    if not choice.speculates:
        notes.append("plain decoding is best here: call generate() without assistant kwargs")
        return EngineConfig("hf", {}, comment_lines(notes) + "generate_kwargs = {}\n")
    k = choice.num_spec_tokens
    if choice.tree_paths:
        k = max(len(p) for p in choice.tree_paths)
        notes.append(f"HF assisted generation drafts chains only: the tree's depth {k} is used")
    if bands:
        # Assisted generation is batch-1, so the batch-1 band is the one that applies.
        k = band_k_at(bands, 1, k)
        notes.append("assisted generation is batch-1: k is the schedule's batch-1 value")
    kwargs: dict[str, Any] = {}
    if choice.kind == "ngram":
        kwargs["prompt_lookup_num_tokens"] = k
    else:
        if choice.kind == "self":
            kwargs["assistant_early_exit"] = choice.self_layers
        else:
            # The user loads it: AutoModelForCausalLM.from_pretrained(...).
            kwargs["assistant_model"] = draft_path(choice)
            notes.append("assistant_model: pass the loaded model object, not the string")
        if choice.kind == "heads":
            notes.append("HF generate has no EAGLE heads: the checkpoint must be a causal LM")
        kwargs["num_assistant_tokens"] = k
        kwargs["num_assistant_tokens_schedule"] = "constant"
        # 0 turns off the confidence-based early stop, so exactly k tokens are drafted.
        kwargs["assistant_confidence_threshold"] = 0.0
    text = comment_lines(notes) + f"generate_kwargs = {json.dumps(kwargs)}\n"
    return EngineConfig("hf", kwargs, text, notes=tuple(notes))
