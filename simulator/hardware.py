"""Spec-sheet numbers of GPUs and architecture numbers of the models we ship profiles for.

This module is data: the roofline model (:mod:`spectune.simulator.roofline`) turns a
:class:`DeviceSpec` and an :class:`ArchSpec` into forward latencies. Every device number is
the vendor's spec sheet value (dense, i.e. without 2:4 sparsity); memory is the total that
``nvidia-smi`` reports for the card (what vLLM sizes its KV cache from), in GiB.

Units: bandwidths in GB/s (10^9 bytes per second), compute in TFLOP/s (10^12), memory in
GiB (2^30 bytes), latencies in µs.

Parameter counts are derived from the architecture (see :meth:`ArchSpec.params`) and match
the published counts (Llama-3.1-8B 8,030,261,248; Llama-3.2-1B 1,235,814,400;
Llama-3.1-70B 70,553,706,496; Llama-2-7B 6,738,415,616), which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator, from its spec sheet.

    Attributes:
        slug: short name used on the command line and as the hwprofiles/ folder.
        name: marketing name.
        memory_bw_gb_s: peak device-memory bandwidth, GB/s.
        bf16_tflops: peak dense bf16 tensor-core throughput, TFLOP/s.
        memory_gib: total device memory as nvidia-smi reports it, GiB.
        link: interconnect used for tensor-parallel all-reduce (``nvlink`` or ``pcie``).
        link_bw_gb_s: per-GPU, per-direction interconnect bandwidth, GB/s.
        link_latency_us: fixed cost of one small all-reduce over that link, µs.
        source: where the numbers come from.
    """

    slug: str
    name: str
    memory_bw_gb_s: float
    bf16_tflops: float
    memory_gib: float
    link: str
    link_bw_gb_s: float
    link_latency_us: float
    source: str


# All-reduce latency: NCCL's small-message all-reduce within one NVLink node takes roughly
# 10 µs (vLLM's custom all-reduce is a few µs faster); over PCIe without NVLink, through
# host bridges, small all-reduces take ~25 µs. These are our estimates, stated in the README.
DEVICES: dict[str, DeviceSpec] = {
    d.slug: d
    for d in (
        DeviceSpec(
            slug="h100-sxm",
            name="NVIDIA H100 SXM5 80GB",
            memory_bw_gb_s=3350.0,
            bf16_tflops=989.4,
            memory_gib=79.65,  # 81559 MiB
            link="nvlink",
            link_bw_gb_s=450.0,  # NVLink 4: 900 GB/s bidirectional per GPU
            link_latency_us=10.0,
            source="NVIDIA H100 Tensor Core GPU datasheet (SXM5 column)",
        ),
        DeviceSpec(
            slug="h200",
            name="NVIDIA H200 SXM 141GB",
            memory_bw_gb_s=4800.0,
            bf16_tflops=989.4,
            memory_gib=140.4,  # 143771 MiB
            link="nvlink",
            link_bw_gb_s=450.0,
            link_latency_us=10.0,
            source="NVIDIA H200 Tensor Core GPU datasheet (SXM column)",
        ),
        DeviceSpec(
            slug="a100-80gb",
            name="NVIDIA A100 SXM4 80GB",
            memory_bw_gb_s=2039.0,
            bf16_tflops=312.0,
            memory_gib=80.0,  # 81920 MiB
            link="nvlink",
            link_bw_gb_s=300.0,  # NVLink 3: 600 GB/s bidirectional per GPU
            link_latency_us=10.0,
            source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM column)",
        ),
        DeviceSpec(
            slug="l40s",
            name="NVIDIA L40S 48GB",
            memory_bw_gb_s=864.0,
            bf16_tflops=362.05,
            memory_gib=44.99,  # 46068 MiB
            link="pcie",
            link_bw_gb_s=32.0,  # no NVLink: PCIe Gen4 x16, 64 GB/s bidirectional
            link_latency_us=25.0,
            source="NVIDIA L40S datasheet",
        ),
    )
}


@dataclass(frozen=True)
class ArchSpec:
    """A Llama-family decoder (or an EAGLE-style head on top of one).

    Attributes:
        slug: short name used on the command line.
        name: display name.
        hidden, layers, heads, kv_heads, head_dim, intermediate, vocab: architecture.
        tied_embeddings: lm_head shares the embedding matrix (one copy in memory).
        fc_inputs: EAGLE-style heads fuse ``fc_inputs`` hidden-size vectors (the target's
            feature and the token embedding) through an fc layer of ``fc_inputs*hidden ->
            hidden``; 0 for ordinary models.
        shared_lm_head: the lm_head (and embedding) belong to the target: read on every
            forward but not counted in ``params`` (no extra memory).
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
    fc_inputs: int = 0
    shared_lm_head: bool = False

    def layer_params(self) -> int:
        """Weights of one decoder layer (attention, gated MLP, two RMSNorms)."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return q + kv + o + mlp + 2 * self.hidden

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def fc_params(self) -> int:
        return self.fc_inputs * self.hidden * self.hidden + (self.hidden if self.fc_inputs else 0)

    def params(self) -> int:
        """Parameters this model holds in memory (excludes a target's shared lm_head)."""
        body = self.layers * self.layer_params() + self.fc_params()
        if self.shared_lm_head:
            return body
        embeddings = self.embedding_params() * (1 if self.tied_embeddings else 2)
        return body + embeddings + self.hidden  # + final norm

    def weights_read_params(self) -> int:
        """Parameters read from memory by one forward.

        The embedding lookup touches only the rows of the input tokens, so an untied
        embedding matrix is not read; the lm_head is read in full (also when shared).
        """
        final_norm = 0 if self.shared_lm_head else self.hidden
        return (
            self.layers * self.layer_params()
            + self.fc_params()
            + self.embedding_params()
            + final_norm
        )

    def kv_bytes_per_token(self, dtype_bytes: float) -> float:
        """KV-cache bytes per token across all layers and heads (whole replica)."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


_LLAMA3_8B = dict(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336)

ARCHS: dict[str, ArchSpec] = {
    a.slug: a
    for a in (
        ArchSpec(slug="llama-3.1-8b", name="Llama-3.1-8B", vocab=128256, **_LLAMA3_8B),
        ArchSpec(
            slug="llama-3.2-1b",
            name="Llama-3.2-1B",
            hidden=2048,
            layers=16,
            heads=32,
            kv_heads=8,
            head_dim=64,
            intermediate=8192,
            vocab=128256,
            tied_embeddings=True,
        ),
        ArchSpec(
            slug="llama-3.1-70b",
            name="Llama-3.1-70B",
            hidden=8192,
            layers=80,
            heads=64,
            kv_heads=8,
            head_dim=128,
            intermediate=28672,
            vocab=128256,
        ),
        ArchSpec(
            slug="llama-2-7b",
            name="Llama-2-7B",
            hidden=4096,
            layers=32,
            heads=32,
            kv_heads=32,
            head_dim=128,
            intermediate=11008,
            vocab=32000,
        ),
        # EAGLE(-1/2)-style draft head for Llama-3.1-8B: fc(concat(feature, embedding))
        # -> one decoder layer -> the target's own lm_head.
        ArchSpec(
            slug="eagle-llama-3.1-8b",
            name="EAGLE head for Llama-3.1-8B",
            vocab=128256,
            fc_inputs=2,
            shared_lm_head=True,
            **{**_LLAMA3_8B, "layers": 1},
        ),
    )
}


def get_device(slug: str) -> DeviceSpec:
    """Look up a device by slug (case-insensitive).

    Raises:
        InputError: unknown slug; the message lists the known ones.
    """
    d = DEVICES.get(slug.lower())
    if d is None:
        raise InputError(f"unknown device {slug!r} (known: {', '.join(DEVICES)})", field="--device")
    return d


def get_arch(slug: str) -> ArchSpec:
    """Look up a model architecture by slug (case-insensitive).

    Raises:
        InputError: unknown slug; the message lists the known ones.
    """
    a = ARCHS.get(slug.lower())
    if a is None:
        raise InputError(f"unknown model {slug!r} (known: {', '.join(ARCHS)})", field="--model")
    return a
