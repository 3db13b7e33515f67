"""SGLang: ``python -m sglang.launch_server`` flags (+ an adaptive-spec JSON file)."""

from __future__ import annotations

import json
from typing import Any

from .common import (
    Band,
    EngineConfig,
    SpecChoice,
    comment_lines,
    draft_path,
    max_siblings,
    shell_command,
)


def emit_sglang(choice: SpecChoice, bands: list[Band], target: str) -> EngineConfig:
    notes: list[str] = ["SGLang launch_server flags as documented in SGLang main (2026)"]
    args: dict[str, Any] = {}
    head = f"python -m sglang.launch_server --model-path {target}"
    if choice.max_num_seqs:
        args["--max-running-requests"] = choice.max_num_seqs
    if not choice.speculates:
        notes.append("plain decoding is best here: run without --speculative-algorithm")
        return EngineConfig(
            "sglang", {"args": args}, comment_lines(notes) + shell_command(head, args)
        )

    kind = choice.kind
    algo = {"heads": "EAGLE", "draft_model": "STANDALONE", "ngram": "NGRAM"}.get(kind or "")
    if algo is None:  # self
        algo = "STANDALONE"
        notes.append(
            "SGLang has no layer-skip (self) drafter: serve the target's first "
            f"{choice.self_layers} layers as a STANDALONE draft model"
        )
    args["--speculative-algorithm"] = algo
    if kind != "ngram":
        args["--speculative-draft-model-path"] = (
            draft_path(choice) if kind != "self" else f"<first-{choice.self_layers}-layers>"
        )
    if choice.tree_paths:
        depth = max(len(p) for p in choice.tree_paths)
        args["--speculative-num-steps"] = depth
        args["--speculative-eagle-topk"] = max_siblings(choice.tree_paths)
        # num_draft_tokens counts the verified root token too (chain k -> k + 1).
        args["--speculative-num-draft-tokens"] = len(choice.tree_paths) + 1
        notes.append(
            "SGLang builds its tree each step (top-k per level, then the best "
            "num_draft_tokens by score); the flags give the optimal static tree's depth, "
            "widest branching and node budget"
        )
    else:
        k = choice.num_spec_tokens
        args["--speculative-num-steps"] = k
        if kind != "ngram":
            args["--speculative-eagle-topk"] = 1
        args["--speculative-num-draft-tokens"] = k + 1
        if kind == "ngram":
            args["--speculative-ngram-max-bfs-breadth"] = 1  # a chain, not a BFS tree
    files: dict[str, str] = {}
    payload: dict[str, Any] = {"args": args}
    if bands and not choice.tree_paths:
        adaptive = {str(lo): {"candidate_steps": [k]} for lo, _, k in bands}
        payload["adaptive_config"] = adaptive
        files["adaptive_spec.json"] = json.dumps(adaptive) + "\n"
        args["--speculative-adaptive"] = True
        args["--speculative-adaptive-config"] = "adaptive_spec.json"
        notes.append(
            "adaptive_spec.json pins one num_steps per batch-size band (keys = band lower "
            "bounds); SGLang supports it for EAGLE/EAGLE3 with topk 1, and step 0 (no "
            "speculation) only in recent releases"
        )
        if kind != "heads":
            notes.append(f"SGLang's adaptive mode does not cover {algo}: it will use the static k")
    text = comment_lines(notes) + shell_command(head, args)
    if files:
        text += "".join(f"# {name}:\n{body}" for name, body in files.items())
    return EngineConfig("sglang", payload, text, files=files, notes=tuple(notes))
