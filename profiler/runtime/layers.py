"""Building blocks of a Llama-family decoder layer: RMSNorm, RoPE, GQA attention, SwiGLU.

State-dict names follow Hugging Face transformers (``self_attn.q_proj``, ``mlp.gate_proj``,
``input_layernorm``...), so a HF checkpoint loads without renaming. Inside, q/k/v and
gate/up are fused into one ``qkv_proj`` / ``gate_up_proj`` matrix each (one matmul instead
of three or two: ~15-20% less time per forward for small models, where per-op overhead
dominates on CPU); :func:`fuse_in_state_dict` splits them in ``state_dict()`` and joins
them in ``load_state_dict()``. Numerics follow transformers (RoPE frequencies in float32;
RMSNorm in float32 via ``F.rms_norm``, which rounds bf16 once where transformers rounds
twice: <= 1 ulp apart), so fp32 logits match ``LlamaForCausalLM`` to float rounding.

Attention reads keys/values as ``[batch, kv_heads, kv_len, head_dim]`` and takes one
boolean mask ``[batch, 1, rep * q, kv_len]`` (True = may attend) built once per forward by
:func:`attention_mask` and :func:`fold_mask`, so ragged per-sequence lengths and tree
masks cost no Python loops.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .config import ModelConfig


class RMSNorm(nn.Module):
    """Root-mean-square norm (the fused ``F.rms_norm`` kernel: one op instead of six)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def fuse_in_state_dict(module: nn.Module, fused: str, parts: list[tuple[str, int]]) -> None:
    """Show ``module.<fused>`` (a Linear) as separate Linears in state dicts.

    ``state_dict()`` yields ``<part>.weight`` / ``<part>.bias`` (row slices of the fused
    tensors, views sharing its memory), in part order, before the module's other entries;
    ``load_state_dict()`` accepts the parts and concatenates them.

    Args:
        module: the module owning the fused Linear.
        fused: its attribute name, e.g. ``qkv_proj``.
        parts: ``(name, rows)`` of each part in fused order, e.g. ``[("q_proj", 512), ...]``.
    """
    names = [name for name, _ in parts]
    sizes = [rows for _, rows in parts]

    def split(mod, state, prefix, local_metadata):
        own = [k for k in state if k.startswith(prefix)]
        entries = {k: state.pop(k) for k in own}
        for suffix in ("weight", "bias"):
            tensor = entries.pop(f"{prefix}{fused}.{suffix}", None)
            if tensor is not None:
                for name, piece in zip(names, tensor.split(sizes), strict=True):
                    entries[f"{prefix}{name}.{suffix}"] = piece
        order = [f"{prefix}{n}.{s}" for n in names for s in ("weight", "bias")]
        for key in order:  # transformers' order: q.weight, q.bias, k.weight, ...
            if key in entries:
                state[key] = entries.pop(key)
        state.update(entries)

    def join(mod, state, prefix, local_metadata, strict, missing, unexpected, errors):
        for suffix in ("weight", "bias"):
            keys = [f"{prefix}{name}.{suffix}" for name in names]
            if all(k in state for k in keys):
                state[f"{prefix}{fused}.{suffix}"] = torch.cat([state.pop(k) for k in keys])

    module.register_state_dict_post_hook(split)
    module.register_load_state_dict_pre_hook(join)


def rope_inv_freq(config: ModelConfig) -> torch.Tensor:
    """RoPE inverse frequencies [head_dim / 2] (float32), with linear or llama3 scaling.

    Args:
        config: the model config (rope_theta, head size, rope_scaling).
    Returns:
        The inverse frequencies, as transformers computes them.
    """
    dim = config.head_size
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = config.rope_scaling_dict
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return inv / float(scaling["factor"])
    if kind == "llama3":
        # Llama 3.1: long wavelengths slowed by `factor`, short ones kept, smooth in between.
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old_len / low, inv / factor, inv)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return torch.where(medium, smoothed, scaled)
    return inv  # "default"


def rope_cos_sin(
    inv_freq: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [batch, 1, q, head_dim] for the given positions [batch, q]."""
    freqs = positions.unsqueeze(-1).float() * inv_freq  # [B, q, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, heads, q, D] by the rotate-half convention of transformers."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def attention_mask(
    lengths: torch.Tensor,
    new_start: torch.Tensor,
    kv_len: int,
    tree_mask: torch.Tensor | None,
    q: int,
    positions: torch.Tensor | None = None,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """Boolean attention mask [B, 1, q, kv_len] (True = may attend).

    Key slot j of sequence b is a committed token if ``j < lengths[b]``; it is new token
    ``j - new_start[b]`` if that offset is in ``[0, q)``; otherwise it is empty. New tokens
    see each other through ``tree_mask`` (causal when None).

    Args:
        lengths: committed tokens per sequence [B].
        new_start: key slot of the first new token per sequence [B].
        kv_len: number of key slots attended over.
        tree_mask: [q, q] or [B, q, q], True where query i may attend new token j; None = causal.
        q: number of new (query) tokens.
        positions: positions of the new tokens [B, q]; needed only for a sliding window.
        sliding_window: attend only to keys whose position is > query position - window.
    Returns:
        The mask, on the device of ``lengths``.
    """
    device = lengths.device
    bsz = lengths.shape[0]
    slots = torch.arange(kv_len, device=device)  # [L]
    past = slots[None, :] < lengths[:, None]  # [B, L]
    off = slots[None, :] - new_start[:, None]  # [B, L]
    is_new = (off >= 0) & (off < q)
    off_c = off.clamp(0, q - 1)
    if tree_mask is None:
        qi = torch.arange(q, device=device)
        new = off_c[:, None, :] <= qi[None, :, None]  # [B, q, L]
    else:
        tm = tree_mask.to(device=device, dtype=torch.bool)
        tm = tm.expand(bsz, q, q) if tm.dim() == 2 else tm
        new = torch.gather(tm, 2, off_c[:, None, :].expand(bsz, q, kv_len))
    mask = past[:, None, :] | (new & is_new[:, None, :])  # [B, q, L]
    if sliding_window is not None:
        assert positions is not None
        key_pos = torch.where(is_new, torch.gather(positions, 1, off_c), slots[None, :])
        mask &= key_pos[:, None, :] > positions[:, :, None] - sliding_window
    return mask.unsqueeze(1)


def fold_mask(mask: torch.Tensor, rep: int) -> torch.Tensor:
    """Repeat a mask [B, 1, q, L] to [B, 1, rep * q, L] for query heads folded by Attention."""
    if rep == 1:
        return mask
    bsz, _, q, kv_len = mask.shape
    return mask[:, :, None].expand(bsz, 1, rep, q, kv_len).reshape(bsz, 1, rep * q, kv_len)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE; the KV cache is passed in per call."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        h, d = config.hidden_size, config.head_size
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = d
        self.q_size, self.kv_size = self.num_heads * d, self.num_kv_heads * d
        self.qkv_proj = nn.Linear(h, self.q_size + 2 * self.kv_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.q_size, h, bias=config.o_bias)
        fuse_in_state_dict(
            self,
            "qkv_proj",
            [("q_proj", self.q_size), ("k_proj", self.kv_size), ("v_proj", self.kv_size)],
        )

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        kv: KVAccess | None,
    ) -> torch.Tensor:
        bsz, q, _ = x.shape
        heads, kv_heads, dim = self.num_heads, self.num_kv_heads, self.head_dim
        qkv = self.qkv_proj(x)  # [B, q, (heads + 2 kv_heads) * D]
        split = self.q_size + self.kv_size
        # RoPE on queries and keys at once: [B, heads + kv_heads, q, D].
        qk = apply_rope(
            qkv[..., :split].view(bsz, q, heads + kv_heads, dim).transpose(1, 2), cos, sin
        )
        qs, ks = qk[:, :heads], qk[:, heads:]
        vs = qkv[..., split:].view(bsz, q, kv_heads, dim).transpose(1, 2)
        if kv is not None:
            ks, vs = kv.keys_values(ks, vs)
        rep = heads // kv_heads
        if mask is None:  # training / plain causal forward
            out = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=rep > 1)
        else:
            # Fold the query heads sharing a KV head into the query axis, [B, kv_heads,
            # rep * q, D]: K/V are read once, without repeat_interleave copies; measured
            # 1-8x faster than enable_gqa or repeated K/V on CPU for decode shapes. The mask
            # arrives folded the same way (see fold_mask).
            qf = qs.reshape(bsz, kv_heads, rep * q, dim)
            out = F.scaled_dot_product_attention(qf, ks, vs, attn_mask=mask)
            out = out.view(bsz, heads, q, dim)
        return self.o_proj(out.transpose(1, 2).reshape(bsz, q, heads * dim))


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        h, i = config.hidden_size, config.intermediate_size
        self.intermediate_size = i
        self.gate_up_proj = nn.Linear(h, 2 * i, bias=config.mlp_bias)
        self.down_proj = nn.Linear(i, h, bias=config.mlp_bias)
        fuse_in_state_dict(self, "gate_up_proj", [("gate_proj", i), ("up_proj", i)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask, kv: KVAccess | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv)
        return x + self.mlp(self.post_attention_layernorm(x))


class KVAccess:
    """One layer's view of a KV cache for one forward: stores new K/V, returns all K/V.

    With ``write=True`` new K/V go into the cache at slots ``lengths[b] + i`` (one indexed write,
    no loop over the batch) and attention reads the cache prefix ``[:kv_len]`` in place.
    With ``write=False`` the cache is left untouched and the new K/V are appended after the
    longest committed prefix instead (a copy; used for what-if forwards).
    """

    __slots__ = ("index", "k", "kv_len", "past_len", "v", "write")

    def __init__(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        index: torch.Tensor | None,
        kv_len: int,
        past_len: int,
        write: bool,
    ):
        self.k, self.v = k, v  # [B, kv_heads, max_len, D], one layer of the cache
        self.index = index  # (rows [B, 1], slots [B, q]): where the new K/V go
        self.kv_len, self.past_len, self.write = kv_len, past_len, write

    def keys_values(self, ks: torch.Tensor, vs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.write:
            # index_put, not scatter_: scatter_ measured ~1000x slower for bfloat16 on CPU.
            rows, slots = self.index
            self.k[rows, :, slots] = ks.transpose(1, 2)
            self.v[rows, :, slots] = vs.transpose(1, 2)
            return self.k[:, :, : self.kv_len], self.v[:, :, : self.kv_len]
        k_all = torch.cat((self.k[:, :, : self.past_len], ks), dim=2)
        v_all = torch.cat((self.v[:, :, : self.past_len], vs), dim=2)
        return k_all, v_all
