"""Spec-sheet numbers of the GPUs spectune prices forwards for.

This module is data: the cost models (:mod:`spectune.simulator.roofline`, the calibrated
:mod:`spectune.simulator.costmodel`) turn a :class:`DeviceSpec` and a model shape into
forward latencies. Every device number is the vendor's spec-sheet value (dense, i.e.
without 2:4 sparsity); memory is the total that ``nvidia-smi`` reports for the card (what
vLLM sizes its KV cache from), in GiB. Where a public microbenchmark measured the memory
bandwidth (STREAM-like copies, Azure's AI benchmarking guide, see
hwprofiles/calibration/gpu_specs.yaml) it is kept beside the peak for reference; the cost
model uses the peak times a fitted efficiency.

Units: bandwidths in GB/s (10^9 bytes per second), compute in TFLOP/s (10^12), memory in
GiB (2^30 bytes), latencies in µs.
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
        generation: architecture generation (``ampere``, ``ada``, ``hopper``,
            ``blackwell``): the calibrated model fits its efficiency parameters per
            generation.
        memory_bw_gb_s: peak device-memory bandwidth, GB/s.
        bf16_tflops: peak dense bf16 tensor-core throughput, TFLOP/s.
        fp8_tflops: peak dense fp8 throughput (None: no fp8 tensor cores).
        fp4_tflops: peak dense fp4 throughput (None: no fp4 tensor cores).
        sms: streaming multiprocessors (GEMM wave quantisation).
        memory_gib: total device memory as nvidia-smi reports it, GiB.
        link: interconnect used for tensor-parallel all-reduce (``nvlink`` or ``pcie``).
        link_bw_gb_s: per-GPU, per-direction interconnect bandwidth, GB/s.
        link_latency_us: fixed cost of one small all-reduce over that link, µs (the
            pure roofline's value; the calibrated model fits its own).
        measured_bw_gb_s: a public STREAM-like measurement of the memory bandwidth, or
            None (informational).
        source: where the numbers come from.
    """

    slug: str
    name: str
    generation: str
    memory_bw_gb_s: float
    bf16_tflops: float
    fp8_tflops: float | None
    fp4_tflops: float | None
    sms: int
    memory_gib: float
    link: str
    link_bw_gb_s: float
    link_latency_us: float
    measured_bw_gb_s: float | None
    source: str

    def peak_tflops(self, compute: str) -> float:
        """Dense peak of a compute type (``bf16``, ``fp8``, ``fp4``).

        Raises:
            InputError: the device has no tensor cores for that type.
        """
        value = {"bf16": self.bf16_tflops, "fp8": self.fp8_tflops, "fp4": self.fp4_tflops}[compute]
        if value is None:
            raise InputError(
                f"{self.name} has no {compute} tensor cores (it runs "
                f"{', '.join(self.compute_types())})",
                field="--dtype",
            )
        return value

    def compute_types(self) -> list[str]:
        return [
            c
            for c, v in (("bf16", 1.0), ("fp8", self.fp8_tflops), ("fp4", self.fp4_tflops))
            if v is not None
        ]


# All-reduce latency: NCCL's small-message all-reduce within one NVLink node takes roughly
# 10 µs (vLLM's custom all-reduce is a few µs faster); over PCIe without NVLink, through
# host bridges, small all-reduces take ~25 µs. These are the roofline's estimates, stated
# in the README; the calibrated model fits its own per-all-reduce cost.
DEVICES: dict[str, DeviceSpec] = {
    d.slug: d
    for d in (
        DeviceSpec(
            slug="h100-sxm",
            name="NVIDIA H100 SXM5 80GB",
            generation="hopper",
            memory_bw_gb_s=3350.0,
            bf16_tflops=989.4,
            fp8_tflops=1978.9,
            fp4_tflops=None,
            sms=132,
            memory_gib=79.65,  # 81559 MiB
            link="nvlink",
            link_bw_gb_s=450.0,  # NVLink 4: 900 GB/s bidirectional per GPU
            link_latency_us=10.0,
            measured_bw_gb_s=2970.0,  # Azure ND H100 v5, triad
            source="NVIDIA H100 Tensor Core GPU datasheet (SXM5 column)",
        ),
        DeviceSpec(
            slug="h200",
            name="NVIDIA H200 SXM 141GB",
            generation="hopper",
            memory_bw_gb_s=4800.0,
            bf16_tflops=989.4,
            fp8_tflops=1978.9,
            fp4_tflops=None,
            sms=132,
            memory_gib=140.4,  # 143771 MiB
            link="nvlink",
            link_bw_gb_s=450.0,
            link_latency_us=10.0,
            measured_bw_gb_s=4150.0,  # Azure ND H200 v5, triad
            source="NVIDIA H200 Tensor Core GPU datasheet (SXM column)",
        ),
        DeviceSpec(
            slug="a100-80gb",
            name="NVIDIA A100 SXM4 80GB",
            generation="ampere",
            memory_bw_gb_s=2039.0,
            bf16_tflops=312.0,
            fp8_tflops=None,
            fp4_tflops=None,
            sms=108,
            memory_gib=80.0,  # 81920 MiB
            link="nvlink",
            link_bw_gb_s=300.0,  # NVLink 3: 600 GB/s bidirectional per GPU
            link_latency_us=10.0,
            measured_bw_gb_s=1700.0,  # Azure ND A100 v4, triad
            source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM column)",
        ),
        DeviceSpec(
            slug="l40s",
            name="NVIDIA L40S 48GB",
            generation="ada",
            memory_bw_gb_s=864.0,
            bf16_tflops=362.05,
            fp8_tflops=733.0,
            fp4_tflops=None,
            sms=142,
            memory_gib=44.99,  # 46068 MiB
            link="pcie",
            link_bw_gb_s=32.0,  # no NVLink: PCIe Gen4 x16, 64 GB/s bidirectional
            link_latency_us=25.0,
            measured_bw_gb_s=None,
            source="NVIDIA L40S datasheet",
        ),
        DeviceSpec(
            slug="b200",
            name="NVIDIA B200 (HGX, 1000 W)",
            generation="blackwell",
            memory_bw_gb_s=8000.0,
            bf16_tflops=2250.0,
            fp8_tflops=4500.0,
            fp4_tflops=9000.0,
            sms=148,
            memory_gib=167.64,  # "B200 180GB" (TensorRT-LLM docs, DGX B200) as 180e9 bytes
            link="nvlink",
            link_bw_gb_s=900.0,  # NVLink 5: 1800 GB/s bidirectional per GPU
            link_latency_us=10.0,
            measured_bw_gb_s=None,
            source="NVIDIA HGX B200 spec (via glennklockwood.com/garden/processors/B200)",
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
