"""Engine-ready speculative-decoding configs: vLLM, SGLang, TensorRT-LLM, Hugging Face.

:func:`emit` turns a simulated configuration (a :class:`SpecChoice`) and an optional
batch-size schedule (``[(lo, hi, k), ...]``, inclusive bands, k = 0 = do not speculate)
into what a user pastes into one version of an engine. What each version accepts lives in
:mod:`.versions` (every listed version is checked by the test suite against the engine's
own parser, or TensorRT-LLM's documented schema); a configuration a version cannot run is
refused with the reason (:class:`Unsupported`), so the caller can emit the best one it can.
Paste text is shell-safe (``shlex.quote``) and names the models from the scenario
(``target.model``, ``drafters[].model``), with flagged placeholders only when absent.
"""

from __future__ import annotations

from collections.abc import Sequence

from spectune.simulator.errors import SpectuneError

from .common import Band, EngineConfig, SpecChoice, clean_schedule
from .hf import emit_hf
from .sglang import emit_sglang
from .trtllm import emit_trtllm
from .versions import ENGINES, VERSIONS, Capabilities, capabilities, versions_help
from .vllm import emit_vllm

__all__ = [
    "ENGINES",
    "VERSIONS",
    "Band",
    "Capabilities",
    "EngineConfig",
    "SpecChoice",
    "Unsupported",
    "capabilities",
    "emit",
    "versions_help",
]

_EMITTERS = {"vllm": emit_vllm, "sglang": emit_sglang, "trtllm": emit_trtllm, "hf": emit_hf}


class Unsupported(SpectuneError):
    """The configuration cannot be expressed for that engine version (``str(e)`` says why)."""


def emit(
    caps: Capabilities, choice: SpecChoice, schedule: Sequence[Band] | None = None
) -> tuple[EngineConfig, list[str]]:
    """Build one engine version's config for ``choice``.

    Args:
        caps: the engine version (:func:`capabilities`).
        choice: the simulated configuration.
        schedule: inclusive batch-size bands ``(lo, hi, k)`` covering 1..max batch, or None.

    Returns:
        The :class:`EngineConfig` and messages about what was left out (a schedule the
        version cannot express).

    Raises:
        Unsupported: the version cannot run ``choice`` (a method or a static tree it lacks).
    """
    why = caps.why_not(choice)
    if why is not None:
        raise Unsupported(why)
    if choice.policy in ("schedule", "cutoff"):
        schedule = choice.bands  # the bands that were simulated
    bands = clean_schedule(schedule) if choice.speculates and not choice.tree_paths else []
    left_out: list[str] = []
    if bands and (note := caps.schedule_note(choice)) is not None:
        left_out.append(f"batch-size schedule not emitted ({note}); the simulated k is written")
        bands = [] if caps.engine != "hf" else bands  # hf notes the batch-1 k itself
    return _EMITTERS[caps.engine](choice, bands, caps), left_out
