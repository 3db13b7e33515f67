"""Model specs the profilers accept, and the controllable demo pair.

A *model spec* names a model on the command line:

- ``DIR``: a Hugging Face-format checkpoint directory (config.json + *.safetensors);
- ``CONFIG.json``: a config only; the weights are random (``random_model``, seed 0) —
  enough for latency, which does not depend on the weights' values;
- ``ctrl:EPS``: the controllable pair's target (DESIGN.md §5): :data:`CTRL_CONFIG` with the
  output projections of layers >= :data:`CTRL_DRAFT_LAYERS` scaled by ``EPS``, seed
  :data:`CTRL_SEED`. Its drafter is ``self:2``. Regenerated deterministically on the fly,
  so no weights are committed; the architecture equals the byte demo target's, so that
  target's latency profile prices it too.

Prompts use the model's tokenizer: ``"spectune_tokenizer": "bytes"`` in config.json (and
every ``ctrl:`` model) means UTF-8 bytes; other models need token ids in the prompt file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from spectune.simulator.errors import InputError

from .checkpoint import load_checkpoint
from .config import ModelConfig
from .model import DecoderLM, controllable_pair, random_model

CTRL_SEED = 0
CTRL_DRAFT_LAYERS = 2
# The byte demo target's shape (profiler/demo/train.py TARGET_RECIPE), random weights.
CTRL_CONFIG = ModelConfig(
    vocab_size=256,
    hidden_size=256,
    intermediate_size=768,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)


@dataclass
class LoadedModel:
    """A model with the name and tokenizer the profiles record."""

    model: DecoderLM
    name: str
    tokenizer: str | None  # "bytes" or None (token ids only)


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    names = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if isinstance(dtype, str):
        if dtype not in names:
            raise InputError(f"must be one of {', '.join(names)}, got {dtype!r}", field="--dtype")
        return names[dtype]
    return dtype


def parse_ctrl(spec: str) -> float:
    """``ctrl:0.01`` -> 0.01.

    Raises:
        InputError: not a number, or negative.
    """
    raw = spec.split(":", 1)[1]
    try:
        eps = float(raw)
    except ValueError:
        raise InputError(f"expected ctrl:EPS with a number EPS, got {spec!r}") from None
    if not eps >= 0:
        raise InputError(f"ctrl eps must be >= 0, got {eps}")
    return eps


def ctrl_name(eps: float) -> str:
    return f"ctrl-eps{eps:g}"


def load_model(
    spec: str | Path, dtype: str | torch.dtype | None = None, device: str = "cpu"
) -> LoadedModel:
    """Resolve a model spec (module docstring).

    Args:
        spec: ``DIR``, ``CONFIG.json`` or ``ctrl:EPS``.
        dtype: ``bf16``/``fp16``/``fp32`` or a torch dtype; default the checkpoint's.
        device: where the model lives.

    Returns:
        The model (eval mode) with its name and tokenizer.

    Raises:
        InputError: a missing path, a bad config or checkpoint, a bad ctrl spec.
    """
    dt = _dtype(dtype)
    text = str(spec)
    if text.startswith("ctrl:"):
        eps = parse_ctrl(text)
        model = controllable_pair(CTRL_CONFIG, eps, CTRL_DRAFT_LAYERS, CTRL_SEED)
        return LoadedModel(
            model.to(device=device, dtype=dt or torch.float32), ctrl_name(eps), "bytes"
        )
    path = Path(spec)
    if path.is_file() and path.suffix == ".json":
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"cannot read JSON: {e}", source=path) from None
        cfg = ModelConfig.from_hf_dict(raw, source=str(path))
        model = random_model(cfg, seed=0, device=device, dtype=dt)
        return LoadedModel(model, path.stem, raw.get("spectune_tokenizer"))
    model = load_checkpoint(path, device=device, dtype=dt)
    raw = json.loads((path / "config.json").read_text())
    return LoadedModel(model, path.resolve().name, raw.get("spectune_tokenizer"))
