"""The real models behind a scenario's names, for live runs on this device.

A scenario names its target and drafters through their latency profiles (the profile's
``model.name``) and kinds; live runs need the weights. Resolution:

- target: ``target.name`` if the scenario gives one, else the target latency profile's
  ``model.name``; a drafter of kind ``draft_model``/``heads``: its latency profile's
  ``model.name``.
- a name ``ctrl-eps<E>`` is the controllable pair's target (``ctrl:<E>``, regenerated
  from its seed, :mod:`spectune.profiler.runtime.specs`); any other name is a checkpoint directory
  ``<models_dir>/<name>`` (Hugging Face format).
- ``self`` drafters draft with the target's first ``self_layers`` layers in the target's
  cache; ``ngram`` drafters are prompt lookup with n-grams of 1..3 tokens (the acceptance
  profiler's setting).

Prompt content for the live runs: byte-tokenised models (``spectune_tokenizer: bytes``)
read a text prompt file; others get random token ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spectune.profiler.live import PromptSource
from spectune.profiler.native.drafters import Drafter, ModelDrafter, NgramDrafter
from spectune.profiler.runtime.model import DecoderLM
from spectune.profiler.runtime.prompts import read_prompts
from spectune.profiler.runtime.specs import LoadedModel, load_model
from spectune.simulator.errors import InputError
from spectune.simulator.scenario import ResolvedScenario

NGRAM_MAX_N = 3


@dataclass
class LiveModels:
    """The target and a factory of fresh drafters by scenario drafter name."""

    target: LoadedModel
    drafters: dict[str, Callable[[], Drafter]]
    draft_models: dict[str, DecoderLM] = field(default_factory=dict)

    def drafter_model(self, name: str) -> DecoderLM:
        """The separate draft model of drafter ``name`` (kinds draft_model/heads)."""
        return self.draft_models[name]

    def drafter(self, name: str) -> Drafter | None:
        """A fresh drafter for ``name`` (None for ``none``)."""
        if name == "none":
            return None
        return self.drafters[name]()


def _spec_for(name: str, models_dir: Path, source: str, field: str) -> str:
    if name.startswith("ctrl-eps"):
        return "ctrl:" + name.removeprefix("ctrl-eps")
    path = models_dir / name
    if not path.is_dir():
        raise InputError(
            f"no checkpoint for model '{name}' in {models_dir} (train the demo pair with "
            "`spectune profile train-demo --out models/`, or pass --models DIR)",
            source=source,
            field=field,
        )
    return str(path)


def load_live_models(
    rs: ResolvedScenario, models_dir: str | Path, dtype: str = "bf16"
) -> LiveModels:
    """Load the scenario's target and every drafter it names.

    Args:
        rs: the resolved scenario.
        models_dir: folder holding checkpoint directories named after the models.
        dtype: weights dtype for the live runs (bf16/fp16/fp32: the latency profiles').

    Returns:
        The models.

    Raises:
        InputError: a model without a checkpoint, or an unsupported drafter kind.
    """
    models_dir = Path(models_dir)
    tname = rs.scenario.target.name or rs.target.model.name
    target = load_model(_spec_for(tname, models_dir, rs.source, "target"), dtype=dtype)
    factories: dict[str, Callable[[], Drafter]] = {}
    draft_models: dict[str, DecoderLM] = {}
    for i, (name, rd) in enumerate(rs.drafters.items()):
        kind = rd.spec.kind
        if kind == "ngram":
            lo, hi = rd.spec.lookup_window
            factories[name] = lambda lo=lo, hi=hi: NgramDrafter(lo, hi)
        elif kind == "self":
            layers = int(rd.spec.self_layers or 1)
            factories[name] = lambda layers=layers: ModelDrafter(
                target.model, layers, share_target_cache=True
            )
        elif kind == "draft_model":
            assert rd.latency is not None
            spec = _spec_for(rd.latency.model.name, models_dir, rs.source, f"drafters.{i}")
            dm = load_model(spec, dtype=dtype).model
            draft_models[name] = dm
            factories[name] = lambda dm=dm: ModelDrafter(dm)
        else:
            raise InputError(
                f"the live engine has no '{kind}' drafter", source=rs.source, field=f"drafters.{i}"
            )
    return LiveModels(target, factories, draft_models)


def prompt_source(
    models: LiveModels, prompts_file: str | Path | None, seed: int = 0
) -> PromptSource:
    """Prompt content for live runs: the prompt file's text for byte models, else random ids.

    Raises:
        InputError: a byte model without a readable prompt file.
    """
    cfg = models.target.model.config
    return _prompts(models.target.tokenizer, cfg.vocab_size, prompts_file, seed)


def prompt_source_for(model_dir: str | Path, prompts_file: str | Path | None, seed: int = 0):
    """:func:`prompt_source` for a model directory, reading only its config.json (engines
    that load the model themselves)."""
    import json

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return _prompts(cfg.get("spectune_tokenizer"), int(cfg["vocab_size"]), prompts_file, seed)


def _prompts(
    tokenizer: str | None, vocab_size: int, prompts_file: str | Path | None, seed: int
) -> PromptSource:
    if tokenizer == "bytes":
        if prompts_file is None:
            raise InputError("a byte-level target needs a prompt file (--prompts)")
        texts = [p for p in read_prompts(prompts_file) if isinstance(p, str)]
        if not texts:
            raise InputError("holds no text prompts", source=prompts_file)
        return PromptSource.from_texts(texts, name=Path(prompts_file).stem)
    return PromptSource.random(vocab_size, 20_000, seed)


def warm_shapes(
    models: LiveModels, max_tokens: int, max_batch: int = 16, max_query: int = 13
) -> float:
    """Run every model once at each token count 1..``max_tokens`` (one sequence), and at
    every batch size up to ``max_batch`` with every query width up to ``max_query``.

    The CPU matmul backend builds a kernel per new shape the first time it meets it
    (measured here: ~1.5-2 ms on top of a 4-7 ms prefill), and live runs meet new prompt
    lengths all the time; a serving engine warms its shapes up before serving (vLLM's
    warm-up and CUDA-graph capture), so the driver does too, once per process.

    Returns:
        Seconds spent.
    """
    import time

    import torch

    from spectune.profiler.runtime.kvcache import KVCache

    t0 = time.perf_counter()
    nets = [models.target.model, *models.draft_models.values()]
    with torch.inference_mode():
        for net in nets:
            limit = min(max_tokens, net.config.max_position_embeddings)
            cache = KVCache(net.config, 1, limit, net.device, net.dtype)
            for m in range(1, limit + 1):
                cache.truncate(torch.zeros(1, dtype=torch.long))
                net(torch.zeros((1, m), dtype=torch.long, device=net.device), cache)
            # Decode and verify shapes: every batch size with every verify width.
            for b in range(1, max_batch + 1):
                cache = KVCache(net.config, b, 64 + max_query, net.device, net.dtype)
                for q in range(1, max_query + 1):
                    cache.truncate(torch.full((b,), 64, dtype=torch.long))
                    net(torch.zeros((b, q), dtype=torch.long, device=net.device), cache)
    return time.perf_counter() - t0
