"""The shape of a decoder-only transformer (dense, MoE, MLA, sliding window) or of a draft
head on top of one (EAGLE-1, EAGLE-3, MTP), as the cost model needs it.

A :class:`ModelShape` knows its parameter count, its linear layers (:class:`Linear`: the
weight matrices one forward multiplies by, how tensor parallelism splits each, and which
belong to routed experts), its attention layout and its KV-cache bytes per token. It is
built from a Hugging Face ``config.json`` by :mod:`.hfconfig`; the shipped models are in
:mod:`.catalog`.

Units: parameters and features are counts; bytes are bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

HeadKind = Literal["decoder", "eagle", "eagle3", "mtp"]
Split = Literal["col", "row", "vocab", "none"]


@dataclass(frozen=True)
class Linear:
    """One weight matrix ``k -> n`` applied ``count`` times per forward (once per layer that
    has it). ``split`` says how tensor parallelism divides it: ``col`` splits the outputs,
    ``row`` the inputs, ``vocab`` the vocabulary rows of an lm_head, ``none`` replicates it.
    ``expert`` marks one routed expert's matrix: each MoE layer holds ``moe.experts`` of
    them and a forward reads only those its tokens are routed to."""

    name: str
    k: int
    n: int
    count: int
    split: Split
    expert: bool = False

    def params(self) -> int:
        return self.k * self.n * self.count


@dataclass(frozen=True)
class MoESpec:
    """Routed experts of the MoE layers.

    Attributes:
        experts: routed experts per MoE layer.
        experts_per_token: experts each token is routed to (top-k).
        expert_intermediate: FFN width of one routed expert.
        shared_intermediate: total FFN width of the shared expert(s) every token passes
            through (0 = none).
        layers: how many decoder layers are MoE layers (the others have a dense MLP of
            the model's ``intermediate`` width).
    """

    experts: int
    experts_per_token: int
    expert_intermediate: int
    shared_intermediate: int
    layers: int


@dataclass(frozen=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V2/V3): low-rank query and KV projections;
    the KV cache holds one ``kv_lora_rank + qk_rope_head_dim`` latent per token and layer,
    shared by all heads (and replicated on every tensor-parallel rank)."""

    q_lora_rank: int  # 0 = a full-rank q projection
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class ModelShape:
    """A decoder (or a draft head) as the cost model sees it.

    Attributes:
        slug: short name (command line, file names).
        name: display name.
        hidden, layers, heads, kv_heads, head_dim, intermediate, vocab: the decoder's
            numbers (``intermediate`` is the dense MLP width; unused when every layer is
            MoE).
        tied_embeddings: the lm_head is the embedding matrix (one copy in memory).
        qkv_bias: q/k/v projections carry biases (Qwen2, GLM-4.5).
        qk_norm: per-head RMSNorm of q and k (Qwen3).
        norms_per_layer: RMSNorms per layer (Gemma-2/3 normalise before and after both
            attention and MLP: 4).
        sliding_window: window of the sliding-window attention layers (0 = none).
        sliding_layers: how many layers attend within ``sliding_window`` only.
        moe: routed experts, or None for a dense model.
        mla: latent attention, or None for (grouped-query) multi-head attention.
        head_kind: ``decoder`` for a model; ``eagle`` (fc over [feature, embedding] + decoder
            layer(s), the target's lm_head), ``eagle3`` (fc over three target features, a
            layer whose attention reads [embedding, hidden], its own draft-vocabulary
            lm_head), ``mtp`` (DeepSeek-style next-token module: norms + fc over
            [embedding, feature] + the target's decoder layer type + the target's head).
        fc_in: input width of a head's fc layer (0 for a decoder).
        attn_in: input width of the attention projections of a head's first layer
            (EAGLE-3: 2·hidden; 0 = hidden).
        draft_vocab: rows of a head's own lm_head (EAGLE-3's reduced vocabulary; 0 = the
            head uses the target's lm_head, read every forward but not held twice).
        target_layers: decoder layers of the target a head belongs to (0 for a decoder).
        published_params: the parameter count the model's authors publish, if known (a
            check on the derivation, see tests).
    """

    slug: str
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    sliding_window: int = 0
    sliding_layers: int = 0
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    head_kind: HeadKind = "decoder"
    fc_in: int = 0
    attn_in: int = 0
    draft_vocab: int = 0
    target_layers: int = 0
    published_params: int | None = field(default=None, compare=False)

    # ------------------------------------------------------------------ structure

    @property
    def is_head(self) -> bool:
        return self.head_kind != "decoder"

    @property
    def shares_lm_head(self) -> bool:
        """The head reads the target's lm_head (and embedding) without holding them."""
        return self.is_head and self.draft_vocab == 0

    @property
    def dense_layers(self) -> int:
        return self.layers - (self.moe.layers if self.moe else 0)

    @property
    def lm_head_rows(self) -> int:
        return self.draft_vocab or self.vocab

    def attention_linears(self) -> list[Linear]:
        """Projections of the attention block of every layer."""
        h, n = self.hidden, self.layers
        a_in = self.attn_in or h
        if self.mla is None:
            q = Linear("q_proj", a_in, self.heads * self.head_dim, n, "col")
            kv = Linear("kv_proj", a_in, 2 * self.kv_heads * self.head_dim, n, "col")
            o = Linear("o_proj", self.heads * self.head_dim, h, n, "row")
            return [q, kv, o]
        m = self.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        out = []
        if m.q_lora_rank:
            out.append(Linear("q_a_proj", a_in, m.q_lora_rank, n, "none"))
            out.append(Linear("q_b_proj", m.q_lora_rank, self.heads * qk, n, "col"))
        else:
            out.append(Linear("q_proj", a_in, self.heads * qk, n, "col"))
        out.append(Linear("kv_a_proj", a_in, m.kv_lora_rank + m.qk_rope_head_dim, n, "none"))
        out.append(
            Linear(
                "kv_b_proj",
                m.kv_lora_rank,
                self.heads * (m.qk_nope_head_dim + m.v_head_dim),
                n,
                "col",
            )
        )
        out.append(Linear("o_proj", self.heads * m.v_head_dim, h, n, "row"))
        return out

    def mlp_linears(self) -> list[Linear]:
        """Dense MLPs, shared experts, routers and one routed expert's matrices."""
        h = self.hidden
        out = []
        if self.dense_layers:
            out.append(Linear("gate_up", h, 2 * self.intermediate, self.dense_layers, "col"))
            out.append(Linear("down", self.intermediate, h, self.dense_layers, "row"))
        m = self.moe
        if m is not None:
            out.append(Linear("router", h, m.experts, m.layers, "none"))
            if m.shared_intermediate:
                out.append(Linear("shared_gate_up", h, 2 * m.shared_intermediate, m.layers, "col"))
                out.append(Linear("shared_down", m.shared_intermediate, h, m.layers, "row"))
            ei = m.expert_intermediate
            out.append(Linear("expert_gate_up", h, 2 * ei, m.layers, "col", expert=True))
            out.append(Linear("expert_down", ei, h, m.layers, "row", expert=True))
        return out

    def head_linears(self) -> list[Linear]:
        """The fc of a draft head and the lm_head (the target's, when shared)."""
        out = []
        if self.fc_in:
            modules = self.layers if self.head_kind == "mtp" else 1
            out.append(Linear("fc", self.fc_in, self.hidden, modules, "none"))
        out.append(Linear("lm_head", self.hidden, self.lm_head_rows, 1, "vocab"))
        return out

    def linears(self) -> list[Linear]:
        """Every weight matrix one forward multiplies by (the embedding is only gathered)."""
        return self.attention_linears() + self.mlp_linears() + self.head_linears()

    # ------------------------------------------------------------------ counts

    def _small_params(self) -> int:
        """Norms and biases: the norms of each layer (+ q/k norms, + MTP's two input norms),
        q/k/v biases, the final norm."""
        per_layer = self.norms_per_layer * self.hidden
        if self.qk_norm:
            per_layer += 2 * self.head_dim
        if self.qkv_bias and self.mla is None:
            per_layer += (self.heads + 2 * self.kv_heads) * self.head_dim
        if self.mla is not None:
            per_layer += self.mla.kv_lora_rank + self.mla.q_lora_rank
        if self.head_kind == "mtp":
            per_layer += 2 * self.hidden  # enorm + hnorm
        # the final norm before the lm_head; an EAGLE-1 head has none but a biased fc
        final = self.hidden
        if self.head_kind == "mtp":
            final *= self.layers  # each MTP module normalises before the shared head
        return self.layers * per_layer + final

    def params(self) -> int:
        """Parameters held in memory (a head excludes the target's embedding and lm_head)."""
        total = self._small_params()
        for lin in self.linears():
            if lin.name == "lm_head" and (self.shares_lm_head or self.tied_embeddings):
                continue
            total += lin.params() * (self.moe.experts if lin.expert and self.moe else 1)
        if not self.is_head:
            total += self.vocab * self.hidden  # the embedding (also the lm_head when tied)
        return total

    def active_params(self) -> int:
        """Parameters one token passes through (routed experts: ``experts_per_token``)."""
        total = self._small_params()
        for lin in self.linears():
            k = self.moe.experts_per_token if lin.expert and self.moe else 1
            total += lin.params() * k
        return total

    def kv_bytes_per_token(self, dtype_bytes: float, tp: int = 1) -> float:
        """KV-cache bytes one token occupies per GPU of a ``tp``-way replica summed over the
        replica (K and V of every layer; MLA: one latent per layer on every rank)."""
        if self.mla is not None:
            per_layer = (self.mla.kv_lora_rank + self.mla.qk_rope_head_dim) * tp
        else:
            per_layer = 2 * max(self.kv_heads, tp) * self.head_dim
        return float(self.layers * per_layer * dtype_bytes)
