"""vLLM: ``vllm serve MODEL --speculative-config JSON`` plus the simulated serving caps.

Keys per version (vLLM's ``SpeculativeConfig`` forbids unknown keys from 0.10.2 on):
``speculative_token_tree`` (a Python-literal list of tuples, breadth-first) exists in
0.9-0.20; ``num_speculative_tokens_per_batch_size`` (inclusive ``[start, end, k]`` ranges,
the first starting at 1, checked when the engine starts) from 0.24. Method names:
``draft_model``, ``eagle``, ``eagle3``, ``mtp``, ``medusa`` (gone in 0.33), ``ngram``,
``suffix`` (needs ``pip install arctic-inference``). ``--max-num-seqs`` and
``--max-num-batched-tokens`` are always written: vLLM's defaults are not what was simulated.
"""

from __future__ import annotations

import json
from typing import Any

from .common import (
    Band,
    EngineConfig,
    SpecChoice,
    comment_lines,
    draft_ref,
    flag_assumed_variant,
    shell_command,
    target_ref,
    tree_tuples,
    uniform_branching,
)
from .versions import Capabilities


def emit_vllm(choice: SpecChoice, bands: list[Band], caps: Capabilities) -> EngineConfig:
    notes: list[str] = [f"for {caps.label}; checked with {caps.checked}"]
    model = target_ref(choice, notes)
    flag_assumed_variant(choice, notes)
    args: list[tuple[str, Any]] = []
    cfg: dict[str, Any] = {}
    if choice.speculates:
        cfg = _spec_config(choice, bands, caps, notes)
        args.append(("--speculative-config", json.dumps(cfg, separators=(",", ":"))))
    else:
        notes.append("plain decoding is best here: run without --speculative-config")
    if choice.max_num_seqs:
        args.append(("--max-num-seqs", choice.max_num_seqs))
    if choice.max_num_batched_tokens:
        args.append(("--max-num-batched-tokens", choice.max_num_batched_tokens))
    head = ["vllm", "serve", model]
    argv = [*head, *(w for flag, v in args for w in (flag, str(v)))]
    payload = {"model": model, "speculative_config": cfg or None}
    payload.update({flag.lstrip("-").replace("-", "_"): v for flag, v in args[1 if cfg else 0 :]})
    text = comment_lines(notes) + shell_command(head, args)
    return EngineConfig(
        "vllm",
        payload,
        text,
        notes=tuple(notes),
        version=caps.version,
        checked=caps.checked,
        argv=tuple(argv),
    )


def _spec_config(
    choice: SpecChoice, bands: list[Band], caps: Capabilities, notes: list[str]
) -> dict[str, Any]:
    m = choice.method
    cfg: dict[str, Any] = {"method": caps.methods[m]}
    if m in ("draft_model", "eagle", "eagle3", "medusa"):
        cfg["model"] = draft_ref(choice, notes)
    if m == "ngram":
        # The simulator does not model the lookup window; 4/1 are vLLM's documented example.
        cfg["prompt_lookup_max"] = 4
        cfg["prompt_lookup_min"] = 1
        notes.append("prompt_lookup_max/min are not tuned (vLLM's documented example values)")
    elif m == "suffix":
        notes.append("method suffix needs `pip install arctic-inference` next to vLLM")
    elif m == "mtp":
        notes.append("method mtp drafts with the target's own MTP layers (an MTP checkpoint)")
    if choice.tree_paths:
        tree = tree_tuples(choice.tree_paths)
        # num_speculative_tokens counts the tree's nodes (vLLM's tree examples do the same).
        cfg["num_speculative_tokens"] = len(tree)
        cfg["speculative_token_tree"] = str(tree)
        if not uniform_branching(tree):
            notes.append(
                "this tree's levels branch unevenly; vLLM's tree proposer assumes every node "
                "of a level has the same number of children"
            )
        return cfg
    k_max = max([choice.num_spec_tokens, *(k for _, _, k in bands)])
    cfg["num_speculative_tokens"] = k_max
    if bands:
        # [start, end, k], inclusive, from batch 1 up; k <= num_speculative_tokens.
        cfg["num_speculative_tokens_per_batch_size"] = [[lo, hi, k] for lo, hi, k in bands]
        notes.append(
            "num_speculative_tokens is the largest draft window; the per-batch-size schedule "
            "picks k each step (not with --data-parallel-size > 1)"
        )
    return cfg
