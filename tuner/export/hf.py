"""Hugging Face transformers: assisted generation with ``model.generate`` (batch 1).

``num_assistant_tokens``, ``num_assistant_tokens_schedule`` and
``assistant_confidence_threshold`` are read from the *assistant's* ``generation_config``;
passed to ``generate()`` as keyword arguments they are ignored (transformers 4.57-5.x). The
emitted snippet therefore sets them on the model that drafts (the assistant, or the
target itself for early exit) and passes only what ``generate()`` reads.
"""

from __future__ import annotations

from typing import Any

from .common import (
    Band,
    EngineConfig,
    SpecChoice,
    comment_lines,
    draft_ref,
    flag_assumed_variant,
    target_ref,
)
from .versions import Capabilities


def emit_hf(choice: SpecChoice, bands: list[Band], caps: Capabilities) -> EngineConfig:
    notes: list[str] = [f"for {caps.label}; checked with {caps.checked}"]
    model = target_ref(choice, notes)
    flag_assumed_variant(choice, notes)
    lines = [
        "from transformers import AutoModelForCausalLM",
        f"target = AutoModelForCausalLM.from_pretrained({model!r})",
    ]
    payload: dict[str, Any] = {"target": model, "draft_generation_config": {}, "generate": {}}
    if not choice.speculates:
        notes.append("plain decoding is best here: call generate() without assistant kwargs")
        lines.append("generate_kwargs = {}")
    else:
        _assisted(choice, bands, notes, lines, payload)
    lines.append("# out = target.generate(input_ids, max_new_tokens=..., **generate_kwargs)")
    text = comment_lines(notes) + "\n".join(lines) + "\n"
    return EngineConfig(
        "hf", payload, text, notes=tuple(notes), version=caps.version, checked=caps.checked
    )


def _assisted(
    choice: SpecChoice,
    bands: list[Band],
    notes: list[str],
    lines: list[str],
    payload: dict[str, Any],
) -> None:
    k = choice.num_spec_tokens
    if bands and bands[0][2] != k:
        notes.append(
            f"assisted generation is batch-1: the schedule's batch-1 k is {bands[0][2]}; "
            f"k = {k} was simulated and is written"
        )
    m = choice.method
    if m == "ngram":
        payload["generate"] = {"prompt_lookup_num_tokens": k}
        lines.append(f"generate_kwargs = {{'prompt_lookup_num_tokens': {k}}}")
        return
    settings = {
        "num_assistant_tokens": k,
        "num_assistant_tokens_schedule": "constant",
        # 0 turns off the confidence-based early stop, so exactly k tokens are drafted.
        "assistant_confidence_threshold": 0.0,
    }
    payload["draft_generation_config"] = settings
    if m == "self":
        drafter = "target"  # early exit drafts with the target's own first layers
        payload["generate"] = {"assistant_early_exit": choice.self_layers}
        kwargs = f"{{'assistant_early_exit': {choice.self_layers}}}"
    else:
        draft = draft_ref(choice, notes)
        payload["assistant"] = draft
        lines.append(f"assistant = AutoModelForCausalLM.from_pretrained({draft!r})")
        drafter = "assistant"
        kwargs = "{'assistant_model': assistant}"
    for key, value in settings.items():
        lines.append(f"{drafter}.generation_config.{key} = {value!r}")
    lines.append(f"generate_kwargs = {kwargs}")
