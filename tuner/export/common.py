"""The types every emitter shares (the config to export, one engine's output, schedule
bands) and the formatting helpers (comments, shell-safe commands, YAML, tree paths)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

Band = tuple[int, int, int]  # (lo batch, hi batch, k), inclusive

TARGET_PLACEHOLDER = "<target-model>"


@dataclass(frozen=True)
class SpecChoice:
    """The simulated configuration to export.

    Args:
        drafter: drafter name, ``"none"`` = plain decoding.
        kind: drafter kind (``draft_model``, ``heads``, ``ngram``, ``self``); None for none.
        variant: the algorithm within the kind (``eagle``, ``eagle3``, ``mtp``, ``medusa``,
            ``ngram``, ``suffix``), None = the kind's default (``eagle`` / ``ngram``).
        num_spec_tokens: chain length k (for a tree: its depth).
        tree_paths: the static tree in vLLM/TRT-LLM path format, or None for a chain.
        draft_model: checkpoint id or path of the draft model / heads (None = a flagged
            placeholder).
        self_layers: layers of the target a ``self`` drafter runs.
        max_num_seqs: the serving cap that was simulated.
        max_num_batched_tokens: the per-iteration token budget that was simulated.
        target_model: the served model's id or path (None = a flagged placeholder).
        policy: how k is chosen per iteration (``fixed``, ``schedule``, ``cutoff``,
            ``sglang_adaptive``, ``goodput``; :mod:`spectune.tuner.policies`).
        bands: the batch-size bands a ``schedule`` / ``cutoff`` policy simulated.
    """

    drafter: str = "none"
    kind: str | None = None
    variant: str | None = None
    num_spec_tokens: int = 0
    tree_paths: tuple[tuple[int, ...], ...] | None = None
    draft_model: str | None = None
    self_layers: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    target_model: str | None = None
    policy: str = "fixed"
    bands: tuple[Band, ...] | None = None

    @property
    def speculates(self) -> bool:
        return self.drafter != "none" and (self.num_spec_tokens > 0 or bool(self.tree_paths))

    @property
    def method(self) -> str:
        """The drafter's method: ``draft_model``, ``self`` or its variant."""
        if self.kind == "heads":
            return self.variant or "eagle"
        if self.kind == "ngram":
            return self.variant or "ngram"
        return self.kind or "none"

    @property
    def depth(self) -> int:
        return max(len(p) for p in self.tree_paths) if self.tree_paths else self.num_spec_tokens


@dataclass(frozen=True)
class EngineConfig:
    """One engine's config: ``payload`` is the structured value (JSON/YAML-able), ``text``
    what to paste (``#`` comment lines carry the notes), ``files`` extra files to write
    (name -> content), ``notes`` caveats, ``version``/``checked`` what it was checked
    against and how."""

    engine: str
    payload: dict[str, Any]
    text: str
    files: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    version: str = ""
    checked: str = ""
    argv: tuple[str, ...] = ()  # the command's words as the shell passes them (if a command)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "version": self.version,
            "checked": self.checked,
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


def capped_schedule(bands: Sequence[Band]) -> tuple[list[Band], bool]:
    """The bands with every k at most the smallest batch's k (returns whether any changed).

    TensorRT-LLM requires the smallest batch's draft length to equal ``max_draft_len`` and
    every other to be at most it, and SGLang's start-up draft length must be one of the
    adaptive candidates: a schedule whose batch-1 k is below a later band's would crash
    both at start. Schedules priced by :mod:`spectune.tuner.schedule` fall with the batch,
    so this only changes one that does not.
    """
    if not bands:
        return [], False
    top = bands[0][2]
    capped = clean_schedule([(lo, hi, min(k, top)) for lo, hi, k in bands])
    return capped, capped != list(bands)


def comment_lines(lines: Sequence[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def target_ref(choice: SpecChoice, notes: list[str]) -> str:
    """The served model's id/path, or a placeholder (and a note saying so)."""
    if choice.target_model:
        return choice.target_model
    notes.append(f"target.model is not set in the scenario: replace {TARGET_PLACEHOLDER}")
    return TARGET_PLACEHOLDER


def draft_ref(choice: SpecChoice, notes: list[str]) -> str:
    """The draft model's / head's id or path, or a placeholder (and a note saying so)."""
    if choice.draft_model:
        return choice.draft_model
    ph = f"<{choice.drafter}-checkpoint>"
    notes.append(f"drafters[{choice.drafter}].model is not set in the scenario: replace {ph}")
    return ph


def flag_assumed_variant(choice: SpecChoice, notes: list[str]) -> None:
    """Say so when the scenario left a drafter's variant out and its default was written."""
    if choice.speculates and choice.kind in ("heads", "ngram") and choice.variant is None:
        options = "eagle, eagle3, mtp or medusa" if choice.kind == "heads" else "ngram or suffix"
        notes.append(
            f"drafters[{choice.drafter}].variant is not set: {choice.method} assumed "
            f"(set {options})"
        )


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


def shell_command(head: Sequence[str], args: Sequence[tuple[str, Any]]) -> str:
    """A paste-ready command: every word shell-quoted (``shlex.quote``), one flag (and its
    value) per line; a value of True is a bare flag."""
    lines = [" ".join(shlex.quote(str(w)) for w in head)]
    for flag, value in args:
        lines.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return " \\\n    ".join(lines) + "\n"


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
