"""Hugging Face-format checkpoints: a directory with config.json and *.safetensors.

Tensor names are transformers' (``model.layers.0.self_attn.q_proj.weight``,
``lm_head.weight``...), which are also ``DecoderLM``'s parameter names, so loading is a
check of names and shapes followed by ``load_state_dict(assign=True)`` on a model built
on the meta device (no wasted random init). A tied lm_head is omitted on save and
re-shared on load, as transformers does. Sharded checkpoints
(``model.safetensors.index.json``) load too.

Every expected failure is an :class:`InputError` naming the directory, file or tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from spectune.simulator.errors import InputError

from .config import ModelConfig
from .layers import rope_inv_freq
from .model import DecoderLM, _dtype_of

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Tensors some checkpoints carry that this runtime recomputes instead of loading.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def read_config(path: str | Path) -> ModelConfig:
    """Read ``config.json`` of a checkpoint directory.

    Args:
        path: the checkpoint directory.
    Returns:
        The validated config.
    Raises:
        InputError: the directory or config.json is missing or unreadable, or the config
            describes an unsupported architecture.
    """
    root = Path(path)
    if not root.exists():
        raise InputError("checkpoint directory not found", root)
    if not root.is_dir():
        raise InputError(
            "checkpoint path is not a directory (expected config.json + *.safetensors inside)", root
        )
    cfg_path = root / CONFIG_FILE
    if not cfg_path.is_file():
        raise InputError(f"missing {CONFIG_FILE} in checkpoint directory", root)
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read JSON: {exc}", cfg_path) from None
    return ModelConfig.from_hf_dict(raw, source=str(cfg_path))


def _weight_files(root: Path) -> list[Path]:
    index = root / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise InputError(f"bad safetensors index: {exc}", index) from None
        files = [root / name for name in sorted(set(weight_map.values()))]
        for f in files:
            if not f.is_file():
                raise InputError(f"weight shard {f.name} listed in {INDEX_FILE} is missing", root)
        return files
    files = sorted(root.glob("*.safetensors"))
    if not files:
        other = sorted(p.name for pattern in ("*.bin", "*.pt") for p in root.glob(pattern))
        hint = f" (found {', '.join(other)}: convert to safetensors)" if other else ""
        raise InputError(f"no *.safetensors weights in checkpoint directory{hint}", root)
    return files


def _read_tensors(files: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for f in files:
        try:
            part = load_file(str(f), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise InputError(f"cannot read safetensors file: {exc}", f) from None
        for name, t in part.items():
            tensors[name] = t
            origin[name] = f
    return tensors, origin


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> DecoderLM:
    """Load a model from a Hugging Face-format directory.

    Args:
        path: directory with config.json and model.safetensors (or sharded *.safetensors).
        device: where the model lives.
        dtype: weight dtype; defaults to the config's ``torch_dtype``. The returned
            model's ``config.torch_dtype`` names the dtype actually used.
    Returns:
        The model, in eval mode.
    Raises:
        InputError: missing directory / config / weights, unsupported architecture,
            a missing, unexpected or wrongly shaped tensor (named, with both shapes).
    """
    root = Path(path)
    config = read_config(root)
    torch_dtype = _dtype_of(config, dtype)
    config = dataclasses.replace(config, torch_dtype=str(torch_dtype).removeprefix("torch."))
    tensors, origin = _read_tensors(_weight_files(root))
    with torch.device("meta"):
        model = DecoderLM(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")
        tensors.pop("lm_head.weight", None)  # some tied checkpoints still store it
    for name in list(tensors):
        if name.endswith(_IGNORED_SUFFIXES):
            del tensors[name]
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        more = f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else ""
        raise InputError(
            f"unexpected tensors {', '.join(unexpected[:3])}{more} for a "
            f"{config.num_hidden_layers}-layer {config.architecture} config (config.json "
            f"does not match the weights)",
            origin[unexpected[0]],
        )
    missing = [name for name in expected if name not in tensors]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(f"missing tensors {', '.join(missing[:3])}{more}", root)
    for name, shape in expected.items():
        got = tuple(tensors[name].shape)
        if got != shape:
            raise InputError(
                f"tensor {name} has shape {list(got)} but config.json implies {list(shape)}",
                origin[name],
                name,
            )
    state = {name: t.to(torch_dtype) for name, t in tensors.items()}
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    model._inv_freq = rope_inv_freq(config)
    return model.to(device).eval()


def save_checkpoint(model: DecoderLM, path: str | Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` (transformers-loadable).

    The files are written to temporary names and renamed, so an interrupted save never
    leaves a half-written checkpoint under the final names.

    Args:
        model: the model; its weights are saved in their current dtype.
        path: target directory (created if missing).
    Raises:
        InputError: the directory cannot be created or written.
    """
    from safetensors.torch import save_file

    root = Path(path)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create checkpoint directory: {exc}", root) from None
    dtype_name = str(model.dtype).removeprefix("torch.")
    config = dataclasses.replace(model.config, torch_dtype=dtype_name)
    # clone: state-dict entries of fused matrices are views sharing memory, which
    # safetensors refuses to write.
    state = {n: t.detach().to("cpu").clone() for n, t in model.state_dict().items()}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # safetensors refuses shared tensors; HF omits it
    try:
        tmp = root / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, root / WEIGHTS_FILE)
        tmp = root / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n")
        os.replace(tmp, root / CONFIG_FILE)
    except OSError as exc:
        raise InputError(f"cannot write checkpoint: {exc}", root) from None
