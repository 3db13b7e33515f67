"""Named engine behaviours (``serving.engine``): where a serving engine does something the
simulator's generic rules do not, as one named set per engine.

The generic rules are those of :mod:`.scheduler` and :mod:`.stepcost`. A behaviour set
changes only what its engine is shown to do differently (docs/engines.md gives each rule's
evidence: the engine's code and the live runs that showed it), so choosing
``serving.engine: generic`` reproduces the simulator's results bit for bit.

vLLM (``vllm``, V1 engine, checked on 0.32):

- ``draft_first_pass``: a draft model's (or EAGLE head's) first pass of a step runs over
  the tokens the step just verified, padded: ``k + 1`` verify tokens plus the one extra
  slot vLLM keeps for a draft model's autoregressive input, so ``k + 2`` query tokens per
  sequence, then ``k − 1`` passes of one token (``k = 1``: the first pass only).
  Generic: ``k`` passes of one token.

Room for other engines (SGLang, TensorRT-LLM): a new :class:`EngineRules` in
:data:`RULES` and a name in the schema's ``serving.engine``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tree import Tree

MODEL_DRAFTERS = ("draft_model", "heads")


@dataclass(frozen=True)
class EngineRules:
    """One engine's behaviours (module docstring)."""

    name: str
    draft_first_pass: str = "one_token"  # or "verify_window"
    extra_slots: int = 0  # slots a model drafter's first pass adds beyond k + 1

    def draft_levels(
        self, kind: str | None, tree: Tree, levels: tuple[int, ...]
    ) -> tuple[int, ...]:
        """Query tokens per sequence of each draft pass, given the generic ``levels``."""
        if (
            self.draft_first_pass != "verify_window"
            or kind not in MODEL_DRAFTERS
            or not tree.is_chain
            or tree.num_nodes == 0
        ):
            return levels
        k = tree.num_nodes
        return (k + 1 + self.extra_slots, *([1] * (k - 1)))


RULES = {
    "generic": EngineRules("generic"),
    "vllm": EngineRules("vllm", draft_first_pass="verify_window", extra_slots=1),
}


def rules(name: str) -> EngineRules:
    """The behaviour set of ``serving.engine`` = ``name``."""
    return RULES[name]
