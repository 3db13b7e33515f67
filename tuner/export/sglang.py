"""SGLang: ``python -m sglang.launch_server`` flags (+ an adaptive-spec JSON file).

Rules of 0.5.23 (``arg_groups/speculative_hook.py``): ``--speculative-num-steps`` without
``--speculative-eagle-topk`` crashes at start, so steps, top-k and draft tokens are always
written together; with ``--speculative-adaptive`` the start-up steps must be one of the
config's ``candidate_steps`` (the batch-1 band's k is written); ``--max-running-requests``
is always written, or SGLang resets it to 48 for speculative decoding.
"""

from __future__ import annotations

import json
from typing import Any

from .common import (
    Band,
    EngineConfig,
    SpecChoice,
    capped_schedule,
    comment_lines,
    draft_ref,
    flag_assumed_variant,
    max_siblings,
    shell_command,
    target_ref,
)
from .versions import Capabilities

ADAPTIVE_FILE = "adaptive_spec.json"


def emit_sglang(choice: SpecChoice, bands: list[Band], caps: Capabilities) -> EngineConfig:
    notes: list[str] = [f"for {caps.label}; checked with {caps.checked}"]
    model = target_ref(choice, notes)
    flag_assumed_variant(choice, notes)
    head = ["python", "-m", "sglang.launch_server"]
    args: list[tuple[str, Any]] = [("--model-path", model)]
    if choice.max_num_seqs:
        args.append(("--max-running-requests", choice.max_num_seqs))
    files: dict[str, str] = {}
    if choice.speculates:
        _spec_args(choice, bands, caps, args, files, notes, model)
    else:
        notes.append("plain decoding is best here: run without --speculative-algorithm")
    payload = {"args": {flag: v for flag, v in args}}
    if files:
        payload["adaptive_config"] = json.loads(files[ADAPTIVE_FILE])
    text = comment_lines(notes)
    for name, body in files.items():  # paste-ready: the shell writes the file first
        text += f"cat > {name} <<'EOF'\n{body}EOF\n"
    text += shell_command(head, args)
    argv = [*head, *(w for flag, v in args for w in ((flag,) if v is True else (flag, str(v))))]
    return EngineConfig(
        "sglang",
        payload,
        text,
        files=files,
        notes=tuple(notes),
        version=caps.version,
        checked=caps.checked,
        argv=tuple(argv),
    )


def _spec_args(
    choice: SpecChoice,
    bands: list[Band],
    caps: Capabilities,
    args: list[tuple[str, Any]],
    files: dict[str, str],
    notes: list[str],
    model: str,
) -> None:
    m = choice.method
    args.append(("--speculative-algorithm", caps.methods[m]))
    if m == "mtp":  # NEXTN drafts with the target's own MTP layers
        args.append(("--speculative-draft-model-path", model))
    elif m != "ngram":
        args.append(("--speculative-draft-model-path", draft_ref(choice, notes)))
    if m == "ngram":
        # NGRAM's top-k is its BFS breadth: 1 = a chain; draft tokens count the root.
        args.append(("--speculative-num-draft-tokens", choice.num_spec_tokens + 1))
        args.append(("--speculative-ngram-max-bfs-breadth", 1))
        return
    if choice.tree_paths:
        args.append(("--speculative-num-steps", choice.depth))
        args.append(("--speculative-eagle-topk", max_siblings(choice.tree_paths)))
        args.append(("--speculative-num-draft-tokens", len(choice.tree_paths) + 1))
        notes.append(
            "SGLang builds its tree each step (top-k per level, then the best draft tokens "
            "by score); the flags give the simulated tree's depth, widest branching and size"
        )
        return
    k = choice.num_spec_tokens
    if choice.policy == "sglang_adaptive":
        # The built-in slots (no config file), starting at the simulated k.
        args.append(("--speculative-adaptive", True))
        notes.append(
            "--speculative-adaptive without a config file: SGLang's built-in slots "
            "(batch 1+: steps 1/3/5/7, 8+: 0/1/3, 32+: 0/1, 64+: 0), as simulated"
        )
    elif bands:
        bands, changed = capped_schedule(bands)
        k = bands[0][2]
        adaptive = {str(lo): {"candidate_steps": [bk]} for lo, _, bk in bands}
        files[ADAPTIVE_FILE] = json.dumps(adaptive) + "\n"
        args.append(("--speculative-adaptive", True))
        args.append(("--speculative-adaptive-config", ADAPTIVE_FILE))
        notes.append(
            f"{ADAPTIVE_FILE} pins one step count per batch-size band (keys = band lower "
            "bounds); start-up steps = the batch-1 band's"
        )
        if changed:
            notes.append("later bands' k capped at the batch-1 k (SGLang starts at it)")
    args.append(("--speculative-num-steps", k))
    args.append(("--speculative-eagle-topk", 1))
    args.append(("--speculative-num-draft-tokens", k + 1))
