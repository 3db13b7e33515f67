"""Engine-ready speculative-decoding configs: vLLM, SGLang, TensorRT-LLM, Hugging Face.

:func:`emit` turns the tuner's pick (a :class:`SpecChoice`) and an optional batch-size
schedule (``[(lo, hi, k), ...]``, inclusive bands, k = 0 = do not speculate) into what a
user pastes into an engine. Every key below was looked up in the engine's own docs or
source (the citations sit next to each emitter); anything an engine cannot express is
said in a ``notes`` line (printed as ``#`` comments), never smuggled in as an unknown key.

Sources read (2026 snapshots of the projects' main branches):

- vLLM: ``docs/features/speculative_decoding/configuration.md`` (keys of
  ``--speculative-config``: method, model, num_speculative_tokens, prompt_lookup_max/min,
  speculative_token_tree), ``docs/features/speculative_decoding/dynamic_speculative_decoding.md``
  (``num_speculative_tokens_per_batch_size``: a list of ``[start_bs, end_bs, K]``, every K
  <= num_speculative_tokens; PR vllm-project/vllm#32374), ``vllm/config/speculative.py``
  (``speculative_token_tree`` is a Python-literal string of tuples, sorted breadth-first).
- SGLang: ``docs/advanced_features/server_arguments.md`` (``--speculative-algorithm``
  EAGLE | EAGLE3 | NEXTN | STANDALONE | NGRAM, ``--speculative-draft-model-path``,
  ``--speculative-num-steps``, ``--speculative-eagle-topk``,
  ``--speculative-num-draft-tokens``), ``docs/advanced_features/adaptive_speculative_decoding.md``
  and ``python/sglang/srt/speculative/adaptive_spec_params.py`` (``--speculative-adaptive``,
  ``--speculative-adaptive-config FILE.json`` keyed by batch-size lower bounds, each with
  ``candidate_steps``; EAGLE/EAGLE3 with topk 1 only; PR sgl-project/sglang#24055).
- TensorRT-LLM: ``docs/source/features/speculative-decoding.md`` (YAML given to
  ``trtllm-serve --config`` / ``--extra_llm_api_options``: ``speculative_config`` with
  ``decoding_type`` Eagle3 | DraftTarget | NGram, ``max_draft_len``, ``speculative_model``,
  ``max_matching_ngram_size``), the ``EagleDecodingConfig`` API reference (``eagle_choices``
  static tree, ``max_total_draft_tokens``, ``draft_len_schedule: dict[int, int]``) and PR
  NVIDIA/TensorRT-LLM#10860 (schedule keys are batch-size upper bounds; above the largest
  key the draft length is 0).
- Hugging Face transformers 4.57 ``GenerationConfig`` (installed here):
  ``assistant_model``, ``num_assistant_tokens``, ``num_assistant_tokens_schedule``
  (constant | heuristic | heuristic_transient), ``assistant_confidence_threshold``,
  ``prompt_lookup_num_tokens``, ``assistant_early_exit``. Assisted generation is batch-1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from spectune.simulator.errors import InputError

ENGINES = ("vllm", "sglang", "trtllm", "hf")

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


def emit(
    engine: str,
    choice: SpecChoice,
    schedule: Sequence[Band] | None = None,
    target: str = "<target-model>",
) -> EngineConfig:
    """Build one engine's config for ``choice``.

    Args:
        engine: ``vllm``, ``sglang``, ``trtllm`` or ``hf``.
        choice: the tuned configuration.
        schedule: inclusive batch-size bands ``(lo, hi, k)`` covering 1..max batch, or None.
        target: the target model id/path used on the command line.

    Returns:
        The :class:`EngineConfig`.

    Raises:
        InputError: an unknown engine.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})", "--emit")
    bands = _clean_schedule(schedule)
    return {"vllm": _vllm, "sglang": _sglang, "trtllm": _trtllm, "hf": _hf}[engine](
        choice, bands, target
    )


def _clean_schedule(schedule: Sequence[Band] | None) -> list[Band]:
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


def _comment(lines: Sequence[str]) -> str:
    return "".join(f"# {line}\n" for line in lines)


def _model(choice: SpecChoice) -> str:
    return choice.draft_model or f"<path-to-{choice.drafter}>"


def _tree_tuples(paths: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    # vLLM sorts the tree breadth-first, (len, path); emit it already sorted.
    return sorted((tuple(int(x) for x in p) for p in paths), key=lambda t: (len(t), t))


def _uniform_branching(paths: Sequence[Sequence[int]]) -> bool:
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


def _max_siblings(paths: Sequence[Sequence[int]]) -> int:
    return max((int(p[-1]) + 1 for p in paths), default=1)


def _band_k_at(bands: Sequence[Band], batch: int, default: int) -> int:
    for lo, hi, k in bands:
        if lo <= batch <= hi:
            return k
    return default


# --------------------------------------------------------------------------- vLLM


def _vllm(choice: SpecChoice, bands: list[Band], target: str) -> EngineConfig:
    notes: list[str] = ["vLLM --speculative-config keys as documented in vLLM main (2026)"]
    serve = f"vllm serve {target}"
    if choice.max_num_seqs:
        serve += f" --max-num-seqs {choice.max_num_seqs}"
    if not choice.speculates:
        notes.append("plain decoding is best here: run without --speculative-config")
        return EngineConfig("vllm", {}, _comment(notes) + serve + "\n", notes=tuple(notes))

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
        cfg["model"] = _model(choice)
        notes.append("heads drafter exported as method 'eagle'; use 'eagle3' for EAGLE-3 heads")
    elif kind == "draft_model":
        cfg["method"] = "draft_model"
        cfg["model"] = _model(choice)
    else:  # self
        cfg["method"] = "draft_model"
        cfg["model"] = f"<checkpoint of the target's first {choice.self_layers} layers>"
        notes.append(
            "vLLM has no layer-skip (self) drafter: export the target's first "
            f"{choice.self_layers} layers as a separate draft checkpoint"
        )

    if choice.tree_paths:
        tree = _tree_tuples(choice.tree_paths)
        # num_speculative_tokens counts the tree's nodes (vLLM's tree examples do the same).
        cfg["num_speculative_tokens"] = len(tree)
        cfg["speculative_token_tree"] = str(tree)
        if kind != "heads":
            notes.append("vLLM runs static trees with EAGLE-style drafters only")
        if not _uniform_branching(tree):
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
    text = _comment(notes) + f"{serve} --speculative-config '{json.dumps(cfg)}'\n"
    return EngineConfig("vllm", payload, text, notes=tuple(notes))


# --------------------------------------------------------------------------- SGLang


def _sglang(choice: SpecChoice, bands: list[Band], target: str) -> EngineConfig:
    notes: list[str] = ["SGLang launch_server flags as documented in SGLang main (2026)"]
    args: dict[str, Any] = {}
    head = f"python -m sglang.launch_server --model-path {target}"
    if choice.max_num_seqs:
        args["--max-running-requests"] = choice.max_num_seqs
    if not choice.speculates:
        notes.append("plain decoding is best here: run without --speculative-algorithm")
        return EngineConfig("sglang", {"args": args}, _comment(notes) + _cmd(head, args))

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
            _model(choice) if kind != "self" else f"<first-{choice.self_layers}-layers>"
        )
    if choice.tree_paths:
        depth = max(len(p) for p in choice.tree_paths)
        args["--speculative-num-steps"] = depth
        args["--speculative-eagle-topk"] = _max_siblings(choice.tree_paths)
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
    text = _comment(notes) + _cmd(head, args)
    if files:
        text += "".join(f"# {name}:\n{body}" for name, body in files.items())
    return EngineConfig("sglang", payload, text, files=files, notes=tuple(notes))


def _cmd(head: str, args: dict[str, Any]) -> str:
    parts = [head]
    for flag, value in args.items():
        parts.append(flag if value is True else f"{flag} {value}")
    return " \\\n    ".join(parts) + "\n"


# --------------------------------------------------------------------------- TensorRT-LLM


def _trtllm(choice: SpecChoice, bands: list[Band], target: str) -> EngineConfig:
    notes: list[str] = [
        f"TensorRT-LLM LLM-API options: trtllm-serve {target} --config spec.yaml "
        "(alias --extra_llm_api_options)"
    ]
    doc: dict[str, Any] = {}
    if choice.max_num_seqs:
        doc["max_batch_size"] = choice.max_num_seqs
    if not choice.speculates:
        notes.append("plain decoding is best here: leave speculative_config out")
        return EngineConfig("trtllm", doc, _comment(notes) + _yaml(doc), notes=tuple(notes))
    kind = choice.kind
    spec: dict[str, Any] = {}
    if kind == "ngram":
        spec["decoding_type"] = "NGram"
        spec["max_draft_len"] = choice.num_spec_tokens
        spec["max_matching_ngram_size"] = 4
        notes.append("max_matching_ngram_size is not tuned (the docs' example value)")
    elif kind == "heads":
        spec["decoding_type"] = "Eagle3"
        spec["speculative_model"] = _model(choice)
    else:
        spec["decoding_type"] = "DraftTarget"
        spec["speculative_model"] = (
            _model(choice) if kind == "draft_model" else f"<first-{choice.self_layers}-layers>"
        )
        if kind == "self":
            notes.append("no layer-skip drafter in TensorRT-LLM: export the first layers")
    if choice.tree_paths:
        depth = max(len(p) for p in choice.tree_paths)
        spec["max_draft_len"] = depth
        spec["max_total_draft_tokens"] = len(choice.tree_paths)
        spec["eagle_choices"] = [list(p) for p in _tree_tuples(choice.tree_paths)]
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
    return EngineConfig("trtllm", doc, _comment(notes) + _yaml(doc), notes=tuple(notes))


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


# --------------------------------------------------------------------------- Hugging Face


def _hf(choice: SpecChoice, bands: list[Band], target: str) -> EngineConfig:
    notes: list[str] = ["transformers GenerationConfig kwargs for model.generate(...)"]
    if not choice.speculates:
        notes.append("plain decoding is best here: call generate() without assistant kwargs")
        return EngineConfig("hf", {}, _comment(notes) + "generate_kwargs = {}\n")
    k = choice.num_spec_tokens
    if choice.tree_paths:
        k = max(len(p) for p in choice.tree_paths)
        notes.append(f"HF assisted generation drafts chains only: the tree's depth {k} is used")
    if bands:
        # Assisted generation is batch-1, so the batch-1 band is the one that applies.
        k = _band_k_at(bands, 1, k)
        notes.append("assisted generation is batch-1: k is the schedule's batch-1 value")
    kwargs: dict[str, Any] = {}
    if choice.kind == "ngram":
        kwargs["prompt_lookup_num_tokens"] = k
    else:
        if choice.kind == "self":
            kwargs["assistant_early_exit"] = choice.self_layers
        else:
            # The user loads it: AutoModelForCausalLM.from_pretrained(...).
            kwargs["assistant_model"] = _model(choice)
            notes.append("assistant_model: pass the loaded model object, not the string")
        if choice.kind == "heads":
            notes.append("HF generate has no EAGLE heads: the checkpoint must be a causal LM")
        kwargs["num_assistant_tokens"] = k
        kwargs["num_assistant_tokens_schedule"] = "constant"
        # 0 turns off the confidence-based early stop, so exactly k tokens are drafted.
        kwargs["assistant_confidence_threshold"] = 0.0
    text = _comment(notes) + f"generate_kwargs = {json.dumps(kwargs)}\n"
    return EngineConfig("hf", kwargs, text, notes=tuple(notes))
