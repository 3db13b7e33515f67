"""vLLM: ``vllm serve ... --speculative-config JSON``."""

from __future__ import annotations

import json
from typing import Any

from .common import (
    Band,
    EngineConfig,
    SpecChoice,
    comment_lines,
    draft_path,
    tree_tuples,
    uniform_branching,
)


def emit_vllm(choice: SpecChoice, bands: list[Band], target: str) -> EngineConfig:
    notes: list[str] = ["vLLM --speculative-config keys as documented in vLLM main (2026)"]
    serve = f"vllm serve {target}"
    if choice.max_num_seqs:
        serve += f" --max-num-seqs {choice.max_num_seqs}"
    if not choice.speculates:
        notes.append("plain decoding is best here: run without --speculative-config")
        return EngineConfig("vllm", {}, comment_lines(notes) + serve + "\n", notes=tuple(notes))

    cfg: dict[str, Any] = {}
    kind = choice.kind
    if kind == "ngram":
        cfg["method"] = "ngram"
        # Window sizes are not modelled by the simulator; 4/1 are vLLM's documented example.
        cfg["prompt_lookup_max"] = 4
        cfg["prompt_lookup_min"] = 1
        notes.append("prompt_lookup_max/min are not tuned (vLLM's documented example values)")
    elif kind == "heads":
        cfg["method"] = "eagle"
        cfg["model"] = draft_path(choice)
        notes.append("heads drafter exported as method 'eagle'; use 'eagle3' for EAGLE-3 heads")
    elif kind == "draft_model":
        cfg["method"] = "draft_model"
        cfg["model"] = draft_path(choice)
    else:  # self
        cfg["method"] = "draft_model"
        cfg["model"] = f"<checkpoint of the target's first {choice.self_layers} layers>"
        notes.append(
            "vLLM has no layer-skip (self) drafter: export the target's first "
            f"{choice.self_layers} layers as a separate draft checkpoint"
        )

    if choice.tree_paths:
        tree = tree_tuples(choice.tree_paths)
        # num_speculative_tokens counts the tree's nodes (vLLM's tree examples do the same).
        cfg["num_speculative_tokens"] = len(tree)
        cfg["speculative_token_tree"] = str(tree)
        if kind != "heads":
            notes.append("vLLM runs static trees with EAGLE-style drafters only")
        if not uniform_branching(tree):
            notes.append(
                "this tree's levels branch unevenly; vLLM's tree proposer assumes every node "
                "of a level has the same number of children — check your vLLM version"
            )
        if bands:
            notes.append("batch-size schedule not exported: vLLM schedules chains, not trees")
    else:
        k_max = max([choice.num_spec_tokens, *(k for _, _, k in bands)])
        cfg["num_speculative_tokens"] = k_max
        if bands:
            # [start_bs, end_bs, K], inclusive; K <= num_speculative_tokens (the maximum).
            cfg["num_speculative_tokens_per_batch_size"] = [[lo, hi, k] for lo, hi, k in bands]
            notes.append(
                "num_speculative_tokens is the maximum draft window; the per-batch-size "
                "schedule picks K each step (Dynamic SD, not with --data-parallel-size > 1)"
            )
    payload = cfg
    text = comment_lines(notes) + f"{serve} --speculative-config '{json.dumps(cfg)}'\n"
    return EngineConfig("vllm", payload, text, notes=tuple(notes))
