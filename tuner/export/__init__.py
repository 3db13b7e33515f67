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

from collections.abc import Sequence

from spectune.simulator.errors import InputError

from .common import Band, EngineConfig, SpecChoice, clean_schedule
from .hf import emit_hf
from .sglang import emit_sglang
from .trtllm import emit_trtllm
from .vllm import emit_vllm

ENGINES = ("vllm", "sglang", "trtllm", "hf")

__all__ = ["ENGINES", "Band", "EngineConfig", "SpecChoice", "emit"]


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
    bands = clean_schedule(schedule)
    emitter = {"vllm": emit_vllm, "sglang": emit_sglang, "trtllm": emit_trtllm, "hf": emit_hf}[
        engine
    ]
    return emitter(choice, bands, target)
