"""Prompt files and the byte tokenizer: what every live engine and profiler reads.

A prompt file is text (one prompt per line, or blocks between ``---`` lines) or ``.jsonl``
(strings, ``{"prompt": ...}`` or ``{"prompt_ids": [...]}``). Text becomes token ids
through the model's tokenizer; the only built-in one is ``bytes`` (UTF-8 bytes, vocabulary
256), which byte-level models declare with ``"spectune_tokenizer": "bytes"`` in config.json.
No torch here.
"""

from __future__ import annotations

import json
from pathlib import Path

from spectune.simulator.errors import InputError


def encode(text: str) -> list[int]:
    """Text to byte tokens (UTF-8)."""
    return list(text.encode("utf-8"))


def decode(tokens: list[int]) -> str:
    """Byte tokens to text; invalid UTF-8 sequences are replaced, never raised."""
    return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")


PROMPT_SEPARATOR = "---"


def read_prompts(path: str | Path) -> list[str | list[int]]:
    """Read a prompt file.

    Formats:
        - ``*.jsonl``: one JSON value per line: a string, ``{"prompt": "..."}`` or
          ``{"prompt_ids": [1, 2, ...]}`` (token ids, for models without a byte tokenizer);
        - text: if some line is exactly ``---``, the prompts are the blocks between such
          lines (multi-line code snippets; the newline before a separator is dropped);
          otherwise every non-empty line is one prompt.

    Returns:
        Prompts as text or token-id lists, in file order.

    Raises:
        InputError: the file is missing, unreadable, malformed, or holds no prompt.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", source=p)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read prompts: {e}", source=p) from None
    prompts: list[str | list[int]] = []
    if p.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"line {n}: not JSON ({e.msg})", source=p) from None
            if isinstance(obj, dict) and "prompt_ids" in obj:
                ids = obj["prompt_ids"]
                if not isinstance(ids, list) or not all(
                    isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids
                ):
                    raise InputError(f"line {n}: prompt_ids must be a list of ints >= 0", source=p)
                prompts.append(ids)
            elif isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
                prompts.append(obj["prompt"])
            elif isinstance(obj, str):
                prompts.append(obj)
            else:
                raise InputError(
                    f'line {n}: expected a string, {{"prompt": ...}} or {{"prompt_ids": [...]}}',
                    source=p,
                )
    elif any(line == PROMPT_SEPARATOR for line in text.splitlines()):
        block: list[str] = []
        for line in [*text.splitlines(), PROMPT_SEPARATOR]:
            if line == PROMPT_SEPARATOR:
                if "".join(block).strip():
                    prompts.append("\n".join(block) + "\n")
                block = []
            else:
                block.append(line)
    else:
        prompts = [line for line in text.splitlines() if line.strip()]
    prompts = [x for x in prompts if len(x) > 0]
    if not prompts:
        raise InputError("holds no prompt", source=p)
    return prompts


def tokenize_prompts(
    prompts: list[str | list[int]], tokenizer: str | None, vocab_size: int, source: str
) -> list[list[int]]:
    """Token ids of prompts: text through the model's tokenizer, ids checked against the vocab.

    Raises:
        InputError: text prompts for a model without a byte tokenizer, or an id >= vocab.
    """
    out = []
    for i, pr in enumerate(prompts):
        if isinstance(pr, str):
            if tokenizer != "bytes":
                raise InputError(
                    f"prompt {i} is text but the model has no byte tokenizer "
                    "(config.json 'spectune_tokenizer'); give token ids in a .jsonl file "
                    '({"prompt_ids": [...]})',
                    source=source,
                )
            ids = encode(pr)
        else:
            ids = list(pr)
        if any(t >= vocab_size for t in ids):
            raise InputError(f"prompt {i} has a token id >= vocab_size {vocab_size}", source=source)
        out.append(ids)
    return out
