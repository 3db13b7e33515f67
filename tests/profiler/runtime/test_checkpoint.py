"""Hugging Face-format checkpoints: round trips, transformers-written dirs, bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

from spectune.profiler.runtime.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from spectune.profiler.runtime.config import ModelConfig  # noqa: E402
from spectune.profiler.runtime.model import random_model  # noqa: E402
from spectune.simulator.errors import InputError  # noqa: E402

TINY = ModelConfig(
    vocab_size=61,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
IDS = torch.randint(0, 61, (2, 9), generator=torch.Generator().manual_seed(0))


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_keeps_weights_config_and_dtype(tmp_path, dtype):
    m = random_model(TINY, seed=0, dtype=dtype)
    save_checkpoint(m, tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["torch_dtype"] == str(
        dtype
    ).removeprefix("torch.")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.dtype == dtype
    assert loaded.config == m.config
    assert same_weights(m, loaded)


def test_load_with_other_dtype_updates_config(tmp_path):
    save_checkpoint(random_model(TINY, seed=0), tmp_path)
    m = load_checkpoint(tmp_path, dtype="bfloat16")
    assert m.dtype == torch.bfloat16 and m.config.torch_dtype == "bfloat16"
    with pytest.raises(InputError, match=r"unsupported dtype"):
        load_checkpoint(tmp_path, dtype="int8")


def test_tied_embeddings_saved_once_and_shared_on_load(tmp_path):
    cfg = dataclasses.replace(TINY, tie_word_embeddings=True)
    m = random_model(cfg, seed=0)
    assert m.lm_head.weight is m.model.embed_tokens.weight
    save_checkpoint(m, tmp_path)
    assert "lm_head.weight" not in load_file(str(tmp_path / "model.safetensors"))
    loaded = load_checkpoint(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert torch.equal(loaded(IDS), m(IDS))


def test_sharded_checkpoint_loads(tmp_path):
    m = random_model(TINY, seed=0)
    save_checkpoint(m, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    names = sorted(state)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    for file, part in shards.items():
        save_file({n: state[n] for n in part}, str(tmp_path / file))
    weight_map = {n: f for f, part in shards.items() for n in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert same_weights(load_checkpoint(tmp_path), m)


@pytest.mark.slow
def test_loads_a_checkpoint_written_by_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.LlamaConfig(
        **{k: v for k, v in TINY.to_hf_dict().items() if k not in ("architectures", "model_type")}
    )
    hf_cfg.tie_word_embeddings = True
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    hf.save_pretrained(tmp_path)
    m = load_checkpoint(tmp_path)
    assert m.config.tie_word_embeddings
    with torch.no_grad():
        assert (m(IDS) - hf(IDS).logits).abs().max() < 1e-4


# ------------------------------------------------------------------ bad input
def test_missing_directory(tmp_path):
    with pytest.raises(InputError, match=r"checkpoint directory not found") as err:
        load_checkpoint(tmp_path / "nope")
    assert "nope" in str(err.value)


def test_path_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"not a directory"):
        load_checkpoint(tmp_path / "f")


def test_missing_config(tmp_path):
    with pytest.raises(InputError, match=r"missing config.json"):
        load_checkpoint(tmp_path)


def test_bad_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match=r"config.json: cannot read JSON"):
        load_checkpoint(tmp_path)


def test_missing_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_hf_dict()))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(InputError, match=r"no \*.safetensors weights.*pytorch_model.bin"):
        load_checkpoint(tmp_path)


def test_unsupported_architecture(tmp_path):
    d = TINY.to_hf_dict() | {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"config.json: model_type: unsupported architecture"):
        load_checkpoint(tmp_path)


def test_bad_config_field_is_named(tmp_path):
    d = TINY.to_hf_dict() | {"num_key_value_heads": 3}
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"config.json: num_key_value_heads: .*multiple"):
        load_checkpoint(tmp_path)
    d = TINY.to_hf_dict()
    del d["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"hidden_size: missing required field"):
        load_checkpoint(tmp_path)


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    save_checkpoint(random_model(TINY, seed=0), tmp_path)
    d = TINY.to_hf_dict() | {"intermediate_size": 40}
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(InputError) as err:
        load_checkpoint(tmp_path)
    msg = str(err.value)
    assert "model.safetensors" in msg
    assert "model.layers.0.mlp.gate_proj.weight" in msg
    assert "[48, 32]" in msg and "[40, 32]" in msg


def test_layer_count_mismatch(tmp_path):
    save_checkpoint(random_model(TINY, seed=0), tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_hf_dict() | {"num_hidden_layers": 1}))
    with pytest.raises(InputError, match=r"unexpected tensors model\.layers\.1"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_hf_dict() | {"num_hidden_layers": 3}))
    with pytest.raises(InputError, match=r"missing tensors model\.layers\.2"):
        load_checkpoint(tmp_path)


def test_corrupt_weights_file(tmp_path):
    save_checkpoint(random_model(TINY, seed=0), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"model.safetensors: cannot read safetensors"):
        load_checkpoint(tmp_path)
