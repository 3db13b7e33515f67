"""Hugging Face config.json -> ModelShape: every supported family, heads, and the errors
that name the field the cost model could not understand. Fixtures are config files
written here (the published numbers of each model's config.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hfconfigs import MISTRAL_7B_V03, QWEN25_7B

from spectune.simulator.costmodel.catalog import CATALOG, get_model
from spectune.simulator.costmodel.hfconfig import load_config, mtp_from_config, shape_from_config
from spectune.simulator.errors import InputError

GEMMA2_9B = {
    "model_type": "gemma2",
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "num_hidden_layers": 42,
    "vocab_size": 256000,
    "sliding_window": 4096,
}
DEEPSEEK_V3 = {
    "model_type": "deepseek_v3",
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "num_hidden_layers": 61,
    "vocab_size": 129280,
    "q_lora_rank": 1536,
    "kv_lora_rank": 512,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "moe_layer_freq": 1,
    "num_nextn_predict_layers": 1,
    "tie_word_embeddings": False,
}


def write(tmp_path: Path, cfg: dict, name: str = "config.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return p


@pytest.mark.parametrize(
    ("cfg", "params"),
    [
        (QWEN25_7B, 7_615_616_512),  # published Qwen2.5-7B
        (MISTRAL_7B_V03, 7_248_023_552),  # published Mistral-7B-v0.3
        (GEMMA2_9B, 9_241_705_984),  # published gemma-2-9b (4 norms per layer, tied head)
    ],
)
def test_dense_families_reproduce_published_parameter_counts(tmp_path, cfg, params) -> None:
    shape = shape_from_config(load_config(write(tmp_path, cfg)))
    assert shape.params() == params
    assert shape.moe is None and shape.mla is None


@pytest.mark.parametrize("slug", [s for s, e in CATALOG.items() if e.published_params])
def test_catalogue_models_reproduce_published_parameter_counts(slug: str) -> None:
    shape = get_model(slug)
    assert shape.params() == shape.published_params


def test_family_details_read_from_their_fields() -> None:
    qwen2 = shape_from_config(QWEN25_7B)
    assert qwen2.qkv_bias and qwen2.sliding_layers == 0  # use_sliding_window: false
    qwen3 = get_model("qwen3-8b")
    assert qwen3.qk_norm and qwen3.head_dim == 128 and not qwen3.tied_embeddings
    gemma = shape_from_config(GEMMA2_9B)
    assert gemma.tied_embeddings  # Gemma's default when the field is absent
    assert (gemma.sliding_window, gemma.sliding_layers) == (4096, 21)  # every other layer
    assert gemma.head_dim == 256 != gemma.hidden // gemma.heads
    mistral01 = shape_from_config({**MISTRAL_7B_V03, "sliding_window": 4096})
    assert mistral01.sliding_layers == 32
    sliding_qwen = shape_from_config(
        {**QWEN25_7B, "use_sliding_window": True, "sliding_window": 4096, "max_window_layers": 20}
    )
    assert (sliding_qwen.sliding_window, sliding_qwen.sliding_layers) == (4096, 8)


def test_gemma3_reads_its_text_config_and_layer_types() -> None:
    text = {
        **GEMMA2_9B,
        "model_type": "gemma3_text",
        "sliding_window": 1024,
        "sliding_window_pattern": 6,
        "num_hidden_layers": 12,
    }
    shape = shape_from_config({"model_type": "gemma3", "text_config": text})
    assert shape.sliding_layers == 10 and shape.qk_norm  # layers 6 and 12 are global
    types = ["sliding_attention"] * 5 + ["full_attention"]
    listed = shape_from_config({**text, "num_hidden_layers": 6, "layer_types": types})
    assert listed.sliding_layers == 5


def test_moe_families() -> None:
    mixtral = get_model("mixtral-8x7b")
    assert mixtral.moe.experts == 8 and mixtral.moe.experts_per_token == 2
    assert mixtral.moe.layers == 32 and mixtral.dense_layers == 0
    qwen = get_model("qwen3-30b-a3b")
    assert qwen.moe.expert_intermediate == 768 and qwen.moe.shared_intermediate == 0
    assert 2.9e9 < qwen.active_params() < 3.4e9  # "A3B"
    qwen2moe = shape_from_config(
        {
            **QWEN25_7B,
            "model_type": "qwen2_moe",
            "num_experts": 60,
            "num_experts_per_tok": 4,
            "moe_intermediate_size": 1408,
            "shared_expert_intermediate_size": 5632,
            "decoder_sparse_step": 2,
            "mlp_only_layers": [1],
        }
    )
    assert qwen2moe.moe.shared_intermediate == 5632
    assert qwen2moe.moe.layers == 13 and qwen2moe.dense_layers == 15  # odd layers, minus 1
    glm = get_model("glm-4.5-air")
    assert glm.moe.layers == 45 and glm.dense_layers == 1  # first_k_dense_replace: 1
    assert glm.moe.shared_intermediate == 1408 and glm.qkv_bias
    assert 105e9 < glm.params() < 108e9 and 11e9 < glm.active_params() < 13.5e9


def test_deepseek_v3_latent_attention_moe_and_mtp() -> None:
    shape = shape_from_config(DEEPSEEK_V3)
    assert 670e9 < shape.params() < 672e9  # "671B"
    assert shape.moe.layers == 58 and shape.dense_layers == 3
    # MLA caches one 512 + 64 latent per layer: ~70 KB per token in bf16
    assert shape.kv_bytes_per_token(2.0) == 61 * 576 * 2
    mtp = mtp_from_config(DEEPSEEK_V3, shape, slug="mtp")
    assert mtp.head_kind == "mtp" and mtp.layers == 1 and mtp.moe.layers == 1
    assert mtp.shares_lm_head and mtp.fc_in == 2 * 7168
    assert 11e9 < mtp.params() < 12.5e9  # DeepSeek's "14B" counts embedding and head too


def test_eagle_heads() -> None:
    e3 = get_model("eagle3-llama-3.1-8b")
    assert e3.head_kind == "eagle3" and e3.fc_in == 3 * 4096 and e3.attn_in == 2 * 4096
    assert e3.draft_vocab == 32000 and not e3.shares_lm_head
    assert 0.40e9 < e3.params() < 0.45e9  # published head ~0.42 B
    e1 = get_model("eagle-llama-3.1-8b")
    assert e1.head_kind == "eagle" and e1.shares_lm_head and e1.fc_in == 2 * 4096
    # a one-layer Llama config is an EAGLE-1 head only when asked
    one_layer = {**CATALOG["llama-3.1-8b"].config, "num_hidden_layers": 1}
    assert shape_from_config(one_layer).head_kind == "decoder"
    assert shape_from_config(one_layer, kind="eagle").head_kind == "eagle"
    # EAGLE-3 checkpoints name themselves in architectures and may omit model_type
    bare = {k: v for k, v in CATALOG["eagle3-llama-3.1-8b"].config.items() if k != "model_type"}
    assert shape_from_config(bare).head_kind == "eagle3"


@pytest.mark.parametrize(
    ("cfg", "field", "message"),
    [
        ({**QWEN25_7B, "model_type": "qwen3_next"}, "model_type", "'qwen3_next' is not supported"),
        ({"model_type": "mamba", "hidden_size": 768}, "model_type", "'mamba' is not supported"),
        ({k: v for k, v in MISTRAL_7B_V03.items() if k != "hidden_size"}, "hidden_size", "missing"),
        ({**MISTRAL_7B_V03, "num_attention_heads": "32"}, "num_attention_heads", "integer"),
        ({**MISTRAL_7B_V03, "num_key_value_heads": 6}, "num_key_value_heads", "must divide"),
        ({**MISTRAL_7B_V03, "num_local_experts": 8}, "num_local_experts", "not understood"),
        (
            {**MISTRAL_7B_V03, "layer_types": ["linear_attention"] * 32},
            "layer_types",
            "not supported",
        ),
        ({**DEEPSEEK_V3, "num_experts_per_tok": 300}, "num_experts_per_tok", "must be <="),
    ],
)
def test_unsupported_or_bad_configs_name_the_field(tmp_path, cfg, field, message) -> None:
    path = write(tmp_path, cfg)
    with pytest.raises(InputError, match=message) as e:
        shape_from_config(load_config(path), source=str(path))
    assert e.value.field == field and e.value.source == str(path)


def test_mtp_needs_the_field_and_bad_files_fail_cleanly(tmp_path) -> None:
    with pytest.raises(InputError, match="no MTP module") as e:
        mtp_from_config(QWEN25_7B, shape_from_config(QWEN25_7B), slug="m")
    assert e.value.field == "num_nextn_predict_layers"
    with pytest.raises(InputError, match="file not found"):
        load_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a readable JSON"):
        load_config(bad)
