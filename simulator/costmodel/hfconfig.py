"""Read a Hugging Face ``config.json`` into a :class:`~.shape.ModelShape`.

Supported ``model_type`` values (the architecture families whose cost the model knows):

- dense decoders with grouped-query attention: ``llama``, ``mistral``, ``qwen2``,
  ``qwen3``, ``gemma``, ``gemma2``, ``gemma3_text`` (and ``gemma3``'s ``text_config``);
  explicit ``head_dim``, tied embeddings and sliding-window layers (``sliding_window`` with
  Mistral's all-layer window, Qwen's ``use_sliding_window``/``max_window_layers``,
  Gemma-2's alternation, Gemma-3's ``sliding_window_pattern``, or a ``layer_types`` list)
  are read where they change the cost;
- MoE decoders: ``mixtral``, ``qwen2_moe``, ``qwen3_moe``, ``glm4_moe``, ``deepseek_v2``,
  ``deepseek_v3`` (routed experts, experts per token, shared experts, dense first layers,
  and DeepSeek's latent attention);
- draft heads: EAGLE-1 (a one-layer Llama-style config: ``kind="eagle"``), EAGLE-3
  (``architectures`` naming ``Eagle3``, ``draft_vocab_size``), and MTP modules read from
  the *target's* config (``num_nextn_predict_layers``: DeepSeek-V3, GLM-4.5, MiMo).

Anything else fails with an :class:`~spectune.simulator.errors.InputError` naming the field
it could not understand (``model_type``, a missing ``hidden_size``, an unknown
``layer_types`` entry, ...), which the CLI prints on one line with exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from .shape import MLASpec, ModelShape, MoESpec

DENSE = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")
MOE = ("mixtral", "qwen2_moe", "qwen3_moe", "glm4_moe", "deepseek_v2", "deepseek_v3")
SUPPORTED = (*DENSE, "gemma3", *MOE)
HEAD_KINDS = ("auto", "model", "eagle", "eagle3")

# tie_word_embeddings when the config omits it: each family's transformers default.
_TIED_DEFAULT = {"gemma": True, "gemma2": True, "gemma3_text": True}
# fields that mean a routed-expert MLP; a dense family carrying one is not understood
_MOE_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a config.json.

    Raises:
        InputError: missing file or invalid JSON (naming the file).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError("file not found", source=p) from None
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"not a readable JSON config: {e}", source=p) from None
    if not isinstance(data, dict):
        raise InputError("a config.json must hold a JSON object", source=p)
    return data


class _Reader:
    """Typed access to config fields with errors that name the field."""

    def __init__(self, cfg: dict[str, Any], source: str):
        self.cfg = cfg
        self.source = source

    def err(self, field: str, message: str) -> InputError:
        return InputError(message, source=self.source, field=field)

    def int(self, field: str, default: int | None = None, *, minimum: int = 1) -> int:
        v = self.cfg.get(field, default)
        if v is None:
            raise self.err(field, "missing (needed to price this architecture)")
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.err(field, f"must be an integer >= {minimum}, got {v!r}")
        return v

    def opt_int(self, field: str) -> int | None:
        return None if self.cfg.get(field) is None else self.int(field, minimum=0)

    def bool(self, field: str, default: bool) -> bool:
        v = self.cfg.get(field, default)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.err(field, f"must be true or false, got {v!r}")
        return v


def shape_from_config(
    cfg: dict[str, Any],
    *,
    slug: str = "model",
    name: str | None = None,
    kind: str = "auto",
    source: str = "config.json",
    target: ModelShape | None = None,
) -> ModelShape:
    """A model (or draft head) shape from a config.json's contents.

    Args:
        cfg: the parsed config.
        slug, name: identifiers for the shape (``name`` defaults to ``_name_or_path`` or
            the slug).
        kind: ``auto`` (an ``architectures`` entry naming Eagle3 or Eagle decides, else a
            model), ``model``, ``eagle`` (EAGLE-1 head) or ``eagle3``.
        source: the file name used in error messages.
        target: the target a head belongs to (its layer count; EAGLE-3's fc input width
            falls back to the target's hidden size).

    Returns:
        The shape.

    Raises:
        InputError: an unsupported ``model_type`` or a field the cost model cannot read.
    """
    if kind not in HEAD_KINDS:
        raise InputError(f"must be one of {', '.join(HEAD_KINDS)}, got {kind!r}", field="kind")
    mt = cfg.get("model_type")
    if mt == "gemma3" and isinstance(cfg.get("text_config"), dict):
        return shape_from_config(
            {**cfg["text_config"], "model_type": "gemma3_text"},
            slug=slug,
            name=name,
            kind=kind,
            source=source,
            target=target,
        )
    if kind == "auto":
        archs = " ".join(str(a) for a in cfg.get("architectures") or []).lower()
        kind = "eagle3" if "eagle3" in archs else "eagle" if "eagle" in archs else "model"
    if kind in ("eagle", "eagle3") and mt is None:
        mt = "llama"  # EAGLE checkpoints often omit model_type; their layers are Llama's
    r = _Reader(cfg, source)
    if mt not in SUPPORTED:
        raise r.err(
            "model_type",
            f"architecture {mt!r} is not supported (supported: {', '.join(SUPPORTED)}); "
            "its cost terms are unknown",
        )
    if mt in DENSE:
        for f in _MOE_FIELDS:
            if cfg.get(f):
                raise r.err(f, f"routed experts in a {mt!r} config are not understood")
    shape = _decoder(r, mt, slug, name or str(cfg.get("_name_or_path") or slug))
    if kind == "eagle":
        return _replace(
            shape,
            head_kind="eagle",
            fc_in=2 * shape.hidden,
            target_layers=target.layers if target else 0,
        )
    if kind == "eagle3":
        target_hidden = cfg.get("target_hidden_size") or (target.hidden if target else None)
        th = r.int("target_hidden_size", target_hidden or shape.hidden)
        draft_vocab = r.int("draft_vocab_size", shape.vocab)
        return _replace(
            shape,
            head_kind="eagle3",
            fc_in=3 * th,
            attn_in=2 * shape.hidden,
            draft_vocab=draft_vocab,
            target_layers=target.layers if target else 0,
        )
    return shape


def mtp_from_config(
    cfg: dict[str, Any], target: ModelShape, *, slug: str, source: str = "config.json"
) -> ModelShape:
    """The multi-token-prediction module(s) a target's config declares.

    Each of ``num_nextn_predict_layers`` modules is: two RMSNorms, an fc over
    [embedding, previous feature] (2·hidden -> hidden), one decoder layer of the target's
    kind (MoE if the target's deeper layers are) and the target's lm_head, shared.

    Raises:
        InputError: the config declares no MTP module (names the field).
    """
    r = _Reader(cfg, source)
    n = r.int("num_nextn_predict_layers", 0, minimum=0)
    if n == 0:
        raise r.err(
            "num_nextn_predict_layers",
            "this config has no MTP module (needs num_nextn_predict_layers >= 1)",
        )
    moe = target.moe
    if moe is not None:
        moe = MoESpec(
            moe.experts,
            moe.experts_per_token,
            moe.expert_intermediate,
            moe.shared_intermediate,
            layers=n,
        )
    return _replace(
        target,
        slug=slug,
        name=f"MTP module of {target.name}",
        layers=n,
        moe=moe,
        head_kind="mtp",
        fc_in=2 * target.hidden,
        target_layers=target.layers,
        sliding_layers=0,
        published_params=None,
    )


def _replace(shape: ModelShape, **changes: Any) -> ModelShape:
    from dataclasses import replace

    return replace(shape, **changes)


def _decoder(r: _Reader, mt: str, slug: str, name: str) -> ModelShape:
    hidden = r.int("hidden_size")
    layers = r.int("num_hidden_layers")
    heads = r.int("num_attention_heads")
    kv_heads = r.int("num_key_value_heads", heads)
    if heads % kv_heads:
        raise r.err(
            "num_key_value_heads", f"must divide num_attention_heads ({heads}), got {kv_heads}"
        )
    head_dim = r.int("head_dim", hidden // heads)
    vocab = r.int("vocab_size")
    tied = r.bool("tie_word_embeddings", _TIED_DEFAULT.get(mt, False))
    moe, mla = _moe(r, mt, layers), _mla(r, mt)
    if moe is not None and moe.layers == layers:  # no dense MLP (Mixtral's is the expert's)
        dense_width = r.int("intermediate_size", 0, minimum=0)
    else:
        dense_width = r.int("intermediate_size")
    window, sliding = _sliding(r, mt, layers)
    return ModelShape(
        slug=slug,
        name=name,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=dense_width,
        vocab=vocab,
        tied_embeddings=tied,
        qkv_bias=mt in ("qwen2", "qwen2_moe") or r.bool("attention_bias", False),
        qk_norm=mt in ("qwen3", "qwen3_moe", "gemma3_text") or r.bool("use_qk_norm", False),
        norms_per_layer=4 if mt in ("gemma2", "gemma3_text") else 2,
        sliding_window=window,
        sliding_layers=sliding,
        moe=moe,
        mla=mla,
    )


def _moe(r: _Reader, mt: str, layers: int) -> MoESpec | None:
    if mt not in MOE:
        return None
    if mt == "mixtral":
        return MoESpec(
            experts=r.int("num_local_experts"),
            experts_per_token=r.int("num_experts_per_tok"),
            expert_intermediate=r.int("intermediate_size"),
            shared_intermediate=0,
            layers=layers,
        )
    if mt in ("qwen2_moe", "qwen3_moe"):
        step = r.int("decoder_sparse_step", 1)
        only_mlp = r.cfg.get("mlp_only_layers") or []
        if not isinstance(only_mlp, list):
            raise r.err("mlp_only_layers", f"must be a list of layer indices, got {only_mlp!r}")
        n_moe = sum(1 for i in range(layers) if i not in only_mlp and (i + 1) % step == 0)
        shared = r.int("shared_expert_intermediate_size", 0, minimum=0) if mt == "qwen2_moe" else 0
        experts = r.int("num_experts")
    else:  # glm4_moe, deepseek_v2, deepseek_v3
        first_dense = r.int("first_k_dense_replace", 0, minimum=0)
        freq = r.int("moe_layer_freq", 1)
        n_moe = sum(1 for i in range(first_dense, layers) if i % freq == 0)
        shared = r.int("n_shared_experts", 0, minimum=0) * r.int("moe_intermediate_size")
        experts = r.int("n_routed_experts")
    per_token = r.int("num_experts_per_tok")
    if per_token > experts:
        raise r.err("num_experts_per_tok", f"must be <= the {experts} experts, got {per_token}")
    return MoESpec(
        experts=experts,
        experts_per_token=per_token,
        expert_intermediate=r.int("moe_intermediate_size"),
        shared_intermediate=shared,
        layers=n_moe,
    )


def _mla(r: _Reader, mt: str) -> MLASpec | None:
    if mt not in ("deepseek_v2", "deepseek_v3"):
        return None
    return MLASpec(
        q_lora_rank=r.opt_int("q_lora_rank") or 0,
        kv_lora_rank=r.int("kv_lora_rank"),
        qk_nope_head_dim=r.int("qk_nope_head_dim"),
        qk_rope_head_dim=r.int("qk_rope_head_dim"),
        v_head_dim=r.int("v_head_dim"),
    )


def _sliding(r: _Reader, mt: str, layers: int) -> tuple[int, int]:
    """(window, sliding layers) from the family's sliding-window fields."""
    cfg = r.cfg
    types = cfg.get("layer_types")
    window = r.opt_int("sliding_window") or 0
    if types is not None:
        if not isinstance(types, list) or len(types) != layers:
            raise r.err("layer_types", f"must list one type per layer ({layers}), got {types!r}")
        unknown = sorted({t for t in types if t not in ("full_attention", "sliding_attention")})
        if unknown:
            raise r.err("layer_types", f"layer type(s) {unknown} are not supported")
        n = types.count("sliding_attention")
        return (window, n) if window and n else (0, 0)
    if not window:
        return 0, 0
    if mt in ("qwen2", "qwen3", "qwen2_moe", "qwen3_moe"):
        if not r.bool("use_sliding_window", False):
            return 0, 0
        full = r.int("max_window_layers", layers, minimum=0)
        return window, max(0, layers - full)
    if mt == "gemma2":
        return window, (layers + 1) // 2  # even layers slide
    if mt == "gemma3_text":
        pattern = r.int("sliding_window_pattern", 6)
        return window, layers - layers // pattern
    if mt in ("mistral", "mixtral"):
        return window, layers
    return 0, 0
