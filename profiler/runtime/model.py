"""A Llama-family decoder in plain torch: the model runtime of the profiler and live engine.

``DecoderLM`` runs Llama, Qwen2 and Mistral checkpoints (RMSNorm, RoPE, grouped-query
attention, SwiGLU) with a preallocated :class:`KVCache`, ragged per-sequence lengths, tree
attention masks and early exit after the first N layers (a self drafter). Without a cache it
is a plain causal LM for training. Logits are float32 whatever the weight dtype.

Random-init models (``random_model``) use untied embeddings and a large initializer range
(0.2): a small init with tied embeddings decodes degenerately, repeating the last token,
which fakes high acceptance (DESIGN.md §5). ``controllable_pair`` builds a target whose
first layers are a drafter with acceptance set by one scale ``eps``.

Checkpoints load and save in :mod:`.checkpoint`; the cache is :mod:`.kvcache`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from spectune.simulator.errors import InputError

from .config import ModelConfig
from .kvcache import CacheError, KVCache
from .layers import (
    DecoderLayer,
    KVAccess,
    RMSNorm,
    attention_mask,
    fold_mask,
    rope_cos_sin,
    rope_inv_freq,
)

__all__ = ["DecoderLM", "controllable_pair", "random_model"]


class _Backbone(nn.Module):
    """transformers' ``model.`` prefix: embeddings, layers, final norm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class DecoderLM(nn.Module):
    """Decoder-only LM; parameter names match transformers' ``*ForCausalLM``.

    Args:
        config: the architecture.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = _Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._inv_freq = rope_inv_freq(config)  # float32, deliberately not a buffer:
        # module.to(bfloat16) would round a buffer; RoPE angles need full precision.
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share lm_head with the input embeddings if the config says so."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def forward(
        self,
        input_ids: torch.Tensor,
        cache: KVCache | None = None,
        *,
        positions: torch.Tensor | None = None,
        tree_mask: torch.Tensor | None = None,
        num_layers: int | None = None,
        write_cache: bool = True,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits of q new tokens per sequence.

        With a cache, token i of sequence b attends to the ``lengths[b]`` committed tokens
        and, among the new ones, to those ``tree_mask`` allows (causal by default). Its K/V
        are written at slot ``lengths[b] + i`` (when ``write_cache``); ``lengths`` does not
        advance until ``cache.commit``. Forwards with a cache never record gradients.
        Without a cache: a causal forward from position 0 (differentiable, for training).

        Args:
            input_ids: token ids [B, q] (right-pad ragged inputs; commit only the real ones).
            cache: the KV cache (batch B), or None.
            positions: RoPE positions [B, q]. Default ``lengths[b] + depth(i) - 1`` where
                depth(i) is the number of new tokens i attends to (itself included): that
                is ``lengths[b] + i`` for a causal mask and the tree depth for a tree mask.
            tree_mask: [q, q] or [B, q, q] bool, True where new token i may attend new
                token j (include the diagonal). None = causal.
            num_layers: run only the first N layers, then the final norm and lm_head.
            write_cache: False leaves the cache untouched (the new K/V are used, not kept).
            last_only: return logits of new token q-1 only ([B, 1, vocab]), skipping the
                lm_head for the others.
        Returns:
            Logits [B, q, vocab] (or [B, 1, vocab]), float32.
        Raises:
            CacheError: cache batch differs from B or the cache has no room for q tokens.
            InputError: num_layers outside [1, layers], empty input_ids, a tree_mask or
                positions of the wrong shape.
        """
        if cache is not None and torch.is_grad_enabled():
            # The cache is written in place: cached forwards are inference only (training
            # uses the cache-free path), so no autograd graph is built through the cache.
            with torch.no_grad():
                return self.forward(
                    input_ids,
                    cache,
                    positions=positions,
                    tree_mask=tree_mask,
                    num_layers=num_layers,
                    write_cache=write_cache,
                    last_only=last_only,
                )
        n_layers = self._check(input_ids, cache, positions, tree_mask, num_layers)
        if tree_mask is not None:
            tree_mask = tree_mask.to(device=input_ids.device, dtype=torch.bool)
        positions, mask, accesses = self._plan(
            input_ids, cache, positions, tree_mask, n_layers, write_cache
        )
        x = self.model.embed_tokens(input_ids)
        if self._inv_freq.device != input_ids.device:
            self._inv_freq = self._inv_freq.to(input_ids.device)
        cos, sin = rope_cos_sin(self._inv_freq, positions, x.dtype)
        for layer, kv in zip(self.model.layers[:n_layers], accesses, strict=True):
            x = layer(x, cos, sin, mask, kv)
        x = self.model.norm(x if not last_only else x[:, -1:])
        return self.lm_head(x).float()

    def _check(self, input_ids, cache, positions, tree_mask, num_layers) -> int:
        """Validate forward's arguments; return the number of layers to run."""
        cfg = self.config
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise InputError(
                f"input_ids must be [batch, q >= 1], got {list(input_ids.shape)}", field="input_ids"
            )
        bsz, q = input_ids.shape
        n_layers = cfg.num_hidden_layers if num_layers is None else num_layers
        if not 1 <= n_layers <= cfg.num_hidden_layers:
            raise InputError(
                f"num_layers must be in [1, {cfg.num_hidden_layers}], got {num_layers}",
                field="num_layers",
            )
        if cache is not None:
            if cache.batch != bsz:
                raise CacheError(f"cache batch is {cache.batch}, input batch is {bsz}")
            if cache.num_layers < n_layers:
                raise CacheError(f"cache has {cache.num_layers} layers, forward needs {n_layers}")
            if cache.k.dtype != self.dtype:
                raise CacheError(
                    f"cache dtype {cache.k.dtype} differs from the model's "
                    f"{self.dtype}: build KVCache(..., dtype=model.dtype)"
                )
        if tree_mask is not None and tree_mask.shape not in ((q, q), (bsz, q, q)):
            raise InputError(
                f"tree_mask must be [{q}, {q}] or [{bsz}, {q}, {q}], got {list(tree_mask.shape)}",
                field="tree_mask",
            )
        if positions is not None and positions.shape != (bsz, q):
            raise InputError(
                f"positions must be [{bsz}, {q}], got {list(positions.shape)}", field="positions"
            )
        return n_layers

    def _plan(self, input_ids, cache, positions, tree_mask, n_layers, write_cache):
        """Positions [B, q], the folded attention mask (or None) and per-layer KV access."""
        cfg = self.config
        bsz, q = input_ids.shape
        device = input_ids.device
        if positions is None:
            if tree_mask is None:
                rel = torch.arange(q, device=device).expand(bsz, q)
            else:
                rel = (tree_mask.sum(-1) - 1).expand(bsz, q)  # depth - 1 in the tree
            positions = rel + cache.lengths[:, None] if cache is not None else rel
        mask, accesses = None, [None] * n_layers
        if cache is None:
            # Plain causal attention needs no mask (SDPA's is_causal path).
            if tree_mask is not None or cfg.sliding_window is not None:
                zeros = torch.zeros(bsz, dtype=torch.long, device=device)
                mask = attention_mask(zeros, zeros, q, tree_mask, q, positions, cfg.sliding_window)
        else:
            lengths = cache.lengths
            past_len = int(lengths.max())
            kv_len = past_len + q
            if write_cache:
                if kv_len > cache.max_len:
                    raise CacheError(
                        f"KV cache full: {past_len} + {q} tokens > max_len {cache.max_len}"
                    )
                new_start = lengths
                slots = lengths[:, None] + torch.arange(q, device=device)  # [B, q]
                index = (torch.arange(bsz, device=device)[:, None], slots)
                cache.pending_tokens = q
            else:  # new K/V appended after the longest committed prefix, in a copy
                new_start = torch.full_like(lengths, past_len)
                index = None
            mask = attention_mask(
                lengths, new_start, kv_len, tree_mask, q, positions, cfg.sliding_window
            )
            accesses = [
                KVAccess(cache.k[i], cache.v[i], index, kv_len, past_len, write_cache)
                for i in range(n_layers)
            ]
        if mask is not None:
            mask = fold_mask(mask, cfg.num_attention_heads // cfg.num_key_value_heads)
        return positions, mask, accesses

    def first_layers(self, num_layers: int) -> DecoderLM:
        """A model made of the first ``num_layers`` layers (weights shared, not copied).

        Its logits equal ``self(..., num_layers=num_layers)``; save it to ship a self
        drafter as a separate draft-model checkpoint.
        """
        if not 1 <= num_layers <= self.config.num_hidden_layers:
            raise InputError(
                f"num_layers must be in [1, {self.config.num_hidden_layers}], got {num_layers}"
            )
        cfg = dataclasses.replace(self.config, num_hidden_layers=num_layers)
        with torch.device("meta"):
            sub = DecoderLM(cfg)
        sub.model.embed_tokens = self.model.embed_tokens
        sub.model.layers = nn.ModuleList(self.model.layers[:num_layers])
        sub.model.norm = self.model.norm
        sub.lm_head = self.lm_head
        sub._inv_freq = self._inv_freq
        return sub


def _dtype_of(config: ModelConfig, dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return getattr(torch, config.torch_dtype)
    if isinstance(dtype, str):
        if dtype not in ("float32", "float16", "bfloat16"):
            raise InputError(
                f"unsupported dtype {dtype!r}; use float32, float16 or bfloat16", field="dtype"
            )
        return getattr(torch, dtype)
    return dtype


def random_model(
    config: ModelConfig,
    seed: int,
    initializer_range: float = 0.2,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> DecoderLM:
    """A randomly initialised model, deterministic for a seed.

    Weights are N(0, initializer_range) (biases 0, norms 1), drawn in float32 on the CPU in
    state-dict order, so the same seed gives the same model on any device or dtype. Use a
    config with ``tie_word_embeddings=False`` (the default): see the module docstring.

    Args:
        config: the architecture.
        seed: torch generator seed.
        initializer_range: standard deviation of the weights.
        device: where the model lives.
        dtype: weight dtype; defaults to ``config.torch_dtype``. The returned model's
            ``config.torch_dtype`` names the dtype actually used.
    Returns:
        The model, in eval mode.
    """
    torch_dtype = _dtype_of(config, dtype)
    config = dataclasses.replace(config, torch_dtype=str(torch_dtype).removeprefix("torch."))
    with torch.device("meta"):
        model = DecoderLM(config)
    model = model.to_empty(device="cpu")
    model.tie_weights()
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    with torch.no_grad():
        # Draw in transformers' tensor order (state-dict views into the fused q/k/v and
        # gate/up matrices), so a seed's weights do not depend on how layers fuse them.
        for name, tensor in model.state_dict().items():
            if tensor.data_ptr() in seen:  # a tied lm_head: drawn with the embeddings
                continue
            seen.add(tensor.data_ptr())
            if name.endswith("norm.weight"):
                tensor.fill_(1.0)
            elif name.endswith(".bias"):
                tensor.zero_()
            else:
                tensor.normal_(0.0, initializer_range, generator=gen)
    model._inv_freq = rope_inv_freq(config)
    return model.to(device=device, dtype=torch_dtype).eval()


def controllable_pair(
    config: ModelConfig,
    eps: float,
    draft_layers: int,
    seed: int,
    initializer_range: float = 0.2,
) -> DecoderLM:
    """A random target whose first ``draft_layers`` layers are a drafter of tunable quality.

    Layers ``>= draft_layers`` have their o_proj and down_proj weights scaled by ``eps``, so
    they add ``O(eps)`` to the residual stream: ``eps = 0`` makes the target equal to its
    early exit ``model(..., num_layers=draft_layers)`` (acceptance 1.0), and larger ``eps``
    lowers greedy agreement smoothly (DESIGN.md §5; measured values in the test file).

    Args:
        config: target architecture (``num_hidden_layers > draft_layers``).
        eps: scale of the later layers' output projections, >= 0.
        draft_layers: layers the drafter keeps.
        seed: weight seed (the same seed gives the same pair for every eps).
        initializer_range: weight standard deviation before scaling.
    Returns:
        The target; the drafter is ``target.first_layers(draft_layers)`` or
        ``target(..., num_layers=draft_layers)``.
    Raises:
        InputError: eps < 0 or draft_layers outside [1, num_hidden_layers).
    """
    if eps < 0:
        raise InputError(f"eps must be >= 0, got {eps}", field="eps")
    if not 1 <= draft_layers < config.num_hidden_layers:
        raise InputError(
            f"draft_layers must be in [1, {config.num_hidden_layers}), got {draft_layers}",
            field="draft_layers",
        )
    model = random_model(config, seed, initializer_range)
    with torch.no_grad():
        for layer in model.model.layers[draft_layers:]:
            for lin in (layer.self_attn.o_proj, layer.mlp.down_proj):
                lin.weight.mul_(eps)
                if lin.bias is not None:
                    lin.bias.mul_(eps)
    return model
