"""Architecture of a Llama-family decoder, read from and written to Hugging Face config.json.

One frozen dataclass, :class:`ModelConfig`, describes Llama, Qwen2 and Mistral checkpoints:
they share RMSNorm, rotary position embeddings (RoPE), grouped-query attention and a SwiGLU
MLP, and differ only in biases (Qwen2: q/k/v biases) and an optional sliding attention
window (Mistral). Sizes are counts (tokens, units, heads); ``rope_theta`` is the RoPE base.
The module does not import torch, so configs can be validated anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from spectune.simulator.errors import InputError

# model_type -> the class name transformers uses in "architectures".
ARCHITECTURES: dict[str, str] = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mistral": "MistralForCausalLM",
}
_ARCH_BY_CLASS = {v: k for k, v in ARCHITECTURES.items()}
# RoPE scaling types whose frequencies this runtime reproduces (see layers.rope_inv_freq).
SUPPORTED_ROPE_SCALING = ("default", "linear", "llama3")
_DTYPE_NAMES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a Llama-family decoder.

    ``attention_bias`` means biases on the q/k/v projections (Qwen2 always has them); for
    ``architecture == "llama"`` it also adds an o_proj bias, as transformers does.
    ``rope_scaling`` is kept as sorted ``(key, value)`` pairs so the config stays hashable.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    head_dim: int | None = None
    attention_bias: bool = False
    architecture: str = "llama"
    mlp_bias: bool = False
    sliding_window: int | None = None
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    torch_dtype: str = "float32"
    bos_token_id: int | None = None
    eos_token_id: int | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.rope_scaling, dict):  # accept a dict, store hashable pairs
            object.__setattr__(self, "rope_scaling", tuple(sorted(self.rope_scaling.items())))
        self.validate()

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def head_size(self) -> int:
        """Per-head dimension: ``head_dim`` if given, else hidden_size / heads."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias

    @property
    def o_bias(self) -> bool:
        return self.attention_bias and self.architecture == "llama"

    @property
    def rope_scaling_dict(self) -> dict[str, Any] | None:
        return dict(self.rope_scaling) if self.rope_scaling is not None else None

    def num_params(self) -> int:
        """Parameter count (embeddings included; a tied lm_head counted once)."""
        h, d = self.hidden_size, self.head_size
        q, kv = self.num_attention_heads * d, self.num_key_value_heads * d
        attn = h * q + 2 * h * kv + q * h
        attn += (q + 2 * kv) if self.qkv_bias else 0
        attn += h if self.o_bias else 0
        mlp = 3 * h * self.intermediate_size
        mlp += (2 * self.intermediate_size + h) if self.mlp_bias else 0
        layer = attn + mlp + 2 * h
        emb = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * layer + emb + h

    # ---- validation ----------------------------------------------------------------------
    def validate(self, source: str | None = None) -> None:
        """Raise InputError naming the first field that cannot describe a decoder.

        Args:
            source: the file the config came from, used in the message.
        Raises:
            InputError: a non-positive size, heads not divisible, an unknown architecture.
        """
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"must be a positive integer, got {value!r}", source, name)
        if self.num_attention_heads % self.num_key_value_heads:
            raise InputError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})",
                source,
                "num_key_value_heads",
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise InputError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads}) when head_dim is not given",
                source,
                "hidden_size",
            )
        if self.head_size % 2:
            raise InputError(
                f"head dimension must be even for RoPE, got {self.head_size}", source, "head_dim"
            )
        if self.architecture not in ARCHITECTURES:
            raise InputError(
                f"unsupported architecture {self.architecture!r}; supported: "
                f"{', '.join(ARCHITECTURES)}",
                source,
                "model_type",
            )
        if not self.rms_norm_eps > 0 or not self.rope_theta > 0:
            raise InputError("rms_norm_eps and rope_theta must be > 0", source, "rms_norm_eps")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise InputError(f"must be > 0, got {self.sliding_window}", source, "sliding_window")
        if self.rope_scaling is not None:
            kind = dict(self.rope_scaling).get("rope_type", dict(self.rope_scaling).get("type"))
            if kind not in SUPPORTED_ROPE_SCALING:
                raise InputError(
                    f"unsupported rope scaling {kind!r}; supported: "
                    f"{', '.join(SUPPORTED_ROPE_SCALING)}",
                    source,
                    "rope_scaling",
                )
        if self.torch_dtype not in _DTYPE_NAMES:
            raise InputError(
                f"unsupported dtype {self.torch_dtype!r}; supported: {', '.join(_DTYPE_NAMES)}",
                source,
                "torch_dtype",
            )

    # ---- Hugging Face config.json ----------------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str | None = None) -> ModelConfig:
        """Build from a parsed Hugging Face config.json.

        Args:
            d: the parsed JSON object.
            source: the file it came from, used in error messages.
        Returns:
            The validated config.
        Raises:
            InputError: a missing field, an unsupported architecture or activation.
        """
        if not isinstance(d, dict):
            raise InputError("config must be a JSON object", source)
        arch = d.get("model_type")
        if arch is None:
            classes = d.get("architectures") or []
            arch = next((_ARCH_BY_CLASS[c] for c in classes if c in _ARCH_BY_CLASS), None)
        if arch not in ARCHITECTURES:
            found = arch or d.get("architectures")
            raise InputError(
                f"unsupported architecture {found!r}; supported model_type: "
                f"{', '.join(ARCHITECTURES)}",
                source,
                "model_type",
            )
        act = d.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise InputError(
                f"unsupported hidden_act {act!r}; only silu (SwiGLU)", source, "hidden_act"
            )
        required = (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
        )
        for name in required:
            if name not in d:
                raise InputError("missing required field", source, name)
        kwargs: dict[str, Any] = {name: d[name] for name in required}
        kwargs["num_key_value_heads"] = d.get("num_key_value_heads") or d["num_attention_heads"]
        known = {f.name for f in fields(cls)} - set(kwargs) - {"architecture"}
        for name in known:
            if d.get(name) is not None:
                kwargs[name] = d[name]
        if arch == "qwen2":
            if d.get("use_sliding_window", False):
                raise InputError(
                    "Qwen2 sliding windows are not supported", source, "use_sliding_window"
                )
            kwargs.pop("sliding_window", None)  # Qwen2 lists a window but keeps it off
            kwargs["attention_bias"] = True  # Qwen2 always has q/k/v biases
        elif arch == "mistral":
            kwargs["attention_bias"] = kwargs["mlp_bias"] = False  # no biases in Mistral
        if isinstance(kwargs.get("eos_token_id"), list):
            kwargs["eos_token_id"] = kwargs["eos_token_id"][0]
        dtype = kwargs.get("torch_dtype", d.get("dtype", "float32"))
        kwargs["torch_dtype"] = str(dtype).removeprefix("torch.")
        try:
            cfg = cls(architecture=arch, **kwargs)
        except InputError as exc:  # re-raise with the file named
            raise InputError(exc.message, source, exc.field) from None
        except TypeError as exc:
            raise InputError(f"bad config value: {exc}", source) from None
        return cfg

    def to_hf_dict(self) -> dict[str, Any]:
        """The config.json object transformers reads for this architecture."""
        d: dict[str, Any] = {
            "architectures": [ARCHITECTURES[self.architecture]],
            "model_type": self.architecture,
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling_dict,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": self.torch_dtype,
            "initializer_range": 0.02,
            "use_cache": True,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        }
        if self.head_dim is not None:  # else transformers derives hidden / heads too
            d["head_dim"] = self.head_dim
        if self.architecture == "llama":
            d["attention_bias"] = self.attention_bias
            d["mlp_bias"] = self.mlp_bias
        elif self.architecture == "mistral":
            d["sliding_window"] = self.sliding_window
        elif self.architecture == "qwen2":
            d["use_sliding_window"] = self.sliding_window is not None
            d["sliding_window"] = self.sliding_window
            d["max_window_layers"] = self.num_hidden_layers
        return d
