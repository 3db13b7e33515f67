"""The types every emitter shares (the tuner's pick, one engine's config, schedule bands)
and the small formatting helpers (comments, shell commands, YAML, tree paths)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

Band = tuple[int, int, int]  # (lo batch, hi batch, k), inclusive


@dataclass(frozen=True)
class SpecChoice:
    """The configuration to export.

    Args:
        drafter: drafter name, ``"none"`` = plain decoding.
        kind: drafter kind (``draft_model``, ``heads``, ``ngram``, ``self``); None for none.
        num_spec_tokens: chain length k (for a tree: its depth).
        tree_paths: the static tree in vLLM/TRT-LLM path format, or None for a chain.
        draft_model: checkpoint id or path of the draft model / heads (a placeholder the
            user replaces when the scenario only names it).
        self_layers: layers of the target a ``self`` drafter runs.
        max_num_seqs: the serving cap, when the tuner chose it.
    """

    drafter: str = "none"
    kind: str | None = None
    num_spec_tokens: int = 0
    tree_paths: tuple[tuple[int, ...], ...] | None = None
    draft_model: str | None = None
    self_layers: int | None = None
    max_num_seqs: int | None = None

    @property
    def speculates(self) -> bool:
        return self.drafter != "none" and (self.num_spec_tokens > 0 or bool(self.tree_paths))

    @property
    def num_nodes(self) -> int:
        return len(self.tree_paths) if self.tree_paths else self.num_spec_tokens


@dataclass(frozen=True)
class EngineConfig:
    """One engine's config: ``payload`` is the structured value (JSON/YAML-able), ``text``
    what to paste (with ``#`` comment lines for the notes), ``files`` extra files to write
    (name -> content), ``notes`` caveats."""

    engine: str
    payload: dict[str, Any]
    text: str
    files: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "config": self.payload,
            "paste": self.text,
            "files": self.files,
            "notes": list(self.notes),
        }


def clean_schedule(schedule: Sequence[Band] | None) -> list[Band]:
    """Bands sorted, merged where neighbours share k."""
    if not schedule:
        return []
    out: list[Band] = []
    for lo, hi, k in sorted((int(a), int(b), int(c)) for a, b, c in schedule):
        if out and out[-1][2] == k and out[-1][1] + 1 >= lo:
            out[-1] = (out[-1][0], max(out[-1][1], hi), k)
        else:
            out.append((lo, hi, k))
    return out


def comment_lines(lines: Sequence[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def draft_path(choice: SpecChoice) -> str:
    return choice.draft_model or f"<path-to-{choice.drafter}>"


def tree_tuples(paths: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    # vLLM sorts the tree breadth-first, (len, path); emit it already sorted.
    return sorted((tuple(int(x) for x in p) for p in paths), key=lambda t: (len(t), t))


def uniform_branching(paths: Sequence[Sequence[int]]) -> bool:
    """True when every node of a level has the same number of children (vLLM's tree
    proposer derives children per level as a ratio of level sizes)."""
    kids: dict[tuple[int, ...], int] = {}
    levels: dict[int, list[tuple[int, ...]]] = {}
    for p in paths:
        t = tuple(p)
        kids[t[:-1]] = kids.get(t[:-1], 0) + 1
        levels.setdefault(len(t), []).append(t)
    for depth in sorted(levels)[:-1]:
        counts = {kids.get(n, 0) for n in levels[depth]}
        if len(counts) > 1:
            return False
    return True


def max_siblings(paths: Sequence[Sequence[int]]) -> int:
    return max((int(p[-1]) + 1 for p in paths), default=1)


def band_k_at(bands: Sequence[Band], batch: int, default: int) -> int:
    for lo, hi, k in bands:
        if lo <= batch <= hi:
            return k
    return default


def shell_command(head: str, args: dict[str, Any]) -> str:
    parts = [head]
    for flag, value in args.items():
        parts.append(flag if value is True else f"{flag} {value}")
    return " \\\n    ".join(parts) + "\n"


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
