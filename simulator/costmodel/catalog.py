"""Models spectune knows by name: their Hugging Face ``config.json`` fields (as published
with each checkpoint, trimmed to what the cost model reads), parsed by the same
:mod:`.hfconfig` a user's own config goes through.

``published_params`` is the parameter count the checkpoint's safetensors index reports;
the tests check that the shapes reproduce it (a check on the parser and on
:meth:`~.shape.ModelShape.params`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import InputError
from .hfconfig import mtp_from_config, shape_from_config
from .shape import ModelShape


def _llama(hidden: int, inter: int, heads: int, layers: int, kv: int, vocab: int, **kw: Any):
    return {
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        **kw,
    }


def _qwen3(hidden: int, inter: int, heads: int, layers: int, kv: int, **kw: Any):
    return {
        "model_type": "qwen3",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
        **kw,
    }


LLAMA31_8B = _llama(4096, 14336, 32, 32, 8, 128256, tie_word_embeddings=False)
LLAMA31_70B = _llama(8192, 28672, 64, 80, 8, 128256, tie_word_embeddings=False)
GLM45_AIR = {
    "architectures": ["Glm4MoeForCausalLM"],
    "model_type": "glm4_moe",
    "attention_bias": True,
    "first_k_dense_replace": 1,
    "head_dim": 128,
    "hidden_size": 4096,
    "intermediate_size": 10944,
    "moe_intermediate_size": 1408,
    "n_routed_experts": 128,
    "n_shared_experts": 1,
    "num_attention_heads": 96,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 46,
    "num_key_value_heads": 8,
    "num_nextn_predict_layers": 1,
    "tie_word_embeddings": False,
    "use_qk_norm": False,
    "vocab_size": 151552,
}


@dataclass(frozen=True)
class CatalogEntry:
    slug: str
    name: str
    config: dict[str, Any]
    kind: str = "model"  # model | eagle | eagle3 | mtp
    target: str | None = None  # slug of the target a head belongs to
    published_params: int | None = None


ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry("llama-3.1-8b", "Llama-3.1-8B", LLAMA31_8B, published_params=8_030_261_248),
    CatalogEntry(
        "llama-3.2-1b",
        "Llama-3.2-1B",
        _llama(2048, 8192, 32, 16, 8, 128256, head_dim=64, tie_word_embeddings=True),
        published_params=1_235_814_400,
    ),
    CatalogEntry("llama-3.1-70b", "Llama-3.1-70B", LLAMA31_70B, published_params=70_553_706_496),
    CatalogEntry(
        "llama-2-7b",
        "Llama-2-7B",
        _llama(4096, 11008, 32, 32, 32, 32000),
        published_params=6_738_415_616,
    ),
    CatalogEntry(
        "llama-2-13b",
        "Llama-2-13B",
        _llama(5120, 13824, 40, 40, 40, 32000),
        published_params=13_015_864_320,
    ),
    CatalogEntry(
        "llama-2-70b",
        "Llama-2-70B",
        _llama(8192, 28672, 64, 80, 8, 32000),
        published_params=68_976_648_192,
    ),
    CatalogEntry(
        "qwen3-8b", "Qwen3-8B", _qwen3(4096, 12288, 32, 36, 8), published_params=8_190_735_360
    ),
    CatalogEntry(
        "qwen3-32b", "Qwen3-32B", _qwen3(5120, 25600, 64, 64, 8), published_params=32_762_123_264
    ),
    CatalogEntry(
        "qwen3-4b",
        "Qwen3-4B",
        {**_qwen3(2560, 9728, 32, 36, 8), "tie_word_embeddings": True},
        published_params=4_022_468_096,
    ),
    CatalogEntry(
        "qwen3-30b-a3b",
        "Qwen3-30B-A3B",
        {
            **_qwen3(2048, 6144, 32, 48, 4),
            "model_type": "qwen3_moe",
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "moe_intermediate_size": 768,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
        },
        published_params=30_532_122_624,
    ),
    CatalogEntry(
        "mixtral-8x7b",
        "Mixtral-8x7B",
        {
            "model_type": "mixtral",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_attention_heads": 32,
            "num_hidden_layers": 32,
            "num_key_value_heads": 8,
            "vocab_size": 32000,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "sliding_window": None,
            "tie_word_embeddings": False,
        },
        published_params=46_702_792_704,
    ),
    CatalogEntry("glm-4.5-air", "GLM-4.5-Air", GLM45_AIR),
    # draft heads
    CatalogEntry(
        "eagle-llama-3.1-8b",
        "EAGLE head for Llama-3.1-8B",
        LLAMA31_8B | {"num_hidden_layers": 1},
        kind="eagle",
        target="llama-3.1-8b",
    ),
    CatalogEntry(
        "eagle3-llama-3.1-8b",
        "EAGLE-3 head for Llama-3.1-8B",
        LLAMA31_8B
        | {
            "architectures": ["LlamaForCausalLMEagle3"],
            "num_hidden_layers": 1,
            "draft_vocab_size": 32000,
        },
        kind="eagle3",
        target="llama-3.1-8b",
    ),
    CatalogEntry(
        "eagle3-llama-3.1-70b",
        "EAGLE-3 head for Llama-3.1/3.3-70B",
        LLAMA31_70B
        | {
            "architectures": ["LlamaForCausalLMEagle3"],
            "num_hidden_layers": 1,
            "draft_vocab_size": 32000,
        },
        kind="eagle3",
        target="llama-3.1-70b",
    ),
    CatalogEntry(
        "mtp-glm-4.5-air", "MTP module of GLM-4.5-Air", GLM45_AIR, kind="mtp", target="glm-4.5-air"
    ),
)
CATALOG: dict[str, CatalogEntry] = {e.slug: e for e in ENTRIES}


def get_model(slug: str) -> ModelShape:
    """The shape of a catalogue model by slug (case-insensitive).

    Raises:
        InputError: unknown slug; the message lists the known ones and ``--config``.
    """
    e = CATALOG.get(slug.lower())
    if e is None:
        raise InputError(
            f"unknown model {slug!r} (known: {', '.join(CATALOG)}; or pass --config "
            "path/to/config.json)",
            field="--model",
        )
    source = f"catalog:{e.slug}"
    target = get_model(e.target) if e.target else None
    if e.kind == "mtp":
        assert target is not None
        shape = mtp_from_config(e.config, target, slug=e.slug, source=source)
    else:
        shape = shape_from_config(
            e.config, slug=e.slug, name=e.name, kind=e.kind, source=source, target=target
        )
    return replace(shape, name=e.name, published_params=e.published_params)
