"""Public measurements (hwprofiles/calibration/forward_points.yaml) turned into things the
cost model can predict — or excluded, with the reason.

Every transcribed point keeps its source, setup and engine version in the data file; this
module states how each kind of point is read (the *interpretation*) and which are left out.
Categories of :class:`Observation`:

- ``decode``: inter-token latency in ms. A static batch of B (LMDeploy) or batch 1 is one
  decode forward at ``batch = B`` and the median context ``ISL + OSL/2`` (the forward cost
  is linear in context, so the median step is the step at the median context). A *median*
  ITL at client concurrency c (vLLM, silybench) is a pure decode step at ``batch = c``:
  with fixed lengths and 5c prompts per run the requests run in waves, and prefill chunks
  touch only the first steps of each wave (kept only while ``c·(ISL+OSL)`` fits the
  run's KV cache; above it the running batch is unknown). A *mean* ITL at concurrency c
  (NIM) also pays, amortised over OSL steps, the prefills of the c−1 other requests:
  ``decode(c) + (c−1)/OSL · (prefill(ISL) − decode(1))`` (kept below the server's batch
  cap, c < 100).
- ``prefill``: time to first token of a lone request, ms: one forward of ISL tokens plus a
  fixed engine/client overhead (HTTP, tokenisation, scheduling, the first sampling) fitted
  as one shared constant that is not part of the forward cost.
- ``static``: output tokens/s of a static batch on one GPU (TensorRT-LLM's offline
  tables): ``B·OSL / (prefill(B × ISL) + (OSL−1)·decode(B, ISL + OSL/2))`` — decode steps
  and a prefill at a stated batch, so fitted like the others. ``static_tp``: the same on
  several GPUs, a check only: these tables normalise throughput per GPU inconsistently
  (some headers say per GPU, some do not; TRANSCRIPTION.md). LMDeploy's throughput rows
  are left out: the same runs' token latencies are used, and the throughput adds session
  set-up the forward does not see.
- ``weight_only``, ``eager`` and ``kernel_loop``: checks, not fitted — int8/int4
  weight-only kernels (their dequantisation cost is kernel-specific), engines run without
  CUDA graphs, and a hand-written decode loop that is not a serving engine (a lower bound:
  it removes the per-kernel bubbles every engine pays).

A static batch (or a concurrency) whose KV cache, ``B·(ISL+OSL)`` tokens, cannot fit in
the memory left after the weights is left out: the engine cannot have run it as stated.
FP8 rows of NVIDIA's TensorRT-LLM-based engines use an FP8 KV cache (stated in the build
flags of TensorRT-LLM's v0.6.1 H100 table; with a bf16 cache the NIM and TensorRT-LLM
batches would not fit the memory they ran in).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).resolve().parents[2] / "hwprofiles" / "calibration"
CATEGORIES = ("decode", "prefill", "static", "static_tp", "weight_only", "eager", "kernel_loop")
FITTED = ("decode", "prefill", "static")
GIB = 1024**3

# KV-cache capacity (tokens) the silybench vLLM runs report, by weight dtype
_SILYBENCH_KV = {"bf16": 377_024, "fp8": 430_272}
_MODELS = (
    ("llama-2-7b", "llama-2-7b"),
    ("llama-2-13b", "llama-2-13b"),
    ("llama-2-70b", "llama-2-70b"),
    ("llama-3-8b", "llama-3.1-8b"),
    ("llama-3.1-8b", "llama-3.1-8b"),
    ("llama-3.1-70b", "llama-3.1-70b"),
    ("llama-3.3-70b", "llama-3.1-70b"),
    ("llama-3.2-1b", "llama-3.2-1b"),
    ("qwen3-8b", "qwen3-8b"),
    ("qwen3-4b", "qwen3-4b"),
    ("qwen3-30b-a3b", "qwen3-30b-a3b"),
    ("mixtral-8x7b", "mixtral-8x7b"),
)
# Sources left out whole, with the reason.
_EXCLUDED_SOURCES = {
    "nemo_llama2_infer": "internally inconsistent (13B faster than 7B; NeMo discussion #8455)",
    "mlx_pr3077": "young MLX CUDA backend, 1.7x slower than other engines at batch 1",
    "qserve_readme": "W4A8KV4 / SmoothQuant not modelled; fp16 baselines have no batch",
    "sglang_large_ep": "DeepSeek-V3 with expert parallelism, DP attention, multi-node",
    "sglang_mtp_blog": "DeepSeek-V3 per-rank rate with undefined rank",
    "eagle_readme": "GPU of the table not stated; 13B at 30 ms/token is 1.7x LMDeploy's A100",
    "johnmusgrave_vllm_a100_40g": "A100-40GB is not a modelled device; printed as 'about 75'",
    "trtllm_xqa_blog": "batch not stated",
    "torchao_bench_results": "compiled rows duplicate the torchao README runs (eager rows kept)",
}


@dataclass(frozen=True)
class Observation:
    """One public measurement with the setup the model prices it at (module docstring)."""

    point_id: str
    source_id: str
    group: str  # independence group: leave-one-source-out holds out a whole group
    category: str
    device: str
    model: str
    tp: int
    dtype: str
    kv_dtype: str
    measured: float  # ms (decode, prefill, weight_only, eager) or tokens/s (static)
    batch: int
    input_len: int
    output_len: int
    context: float
    others_prefill: float = 0.0  # mean ITL: other requests' prefills per step (c−1)/OSL
    per_gpu: bool = False
    eager: bool = False
    how: str = ""


@dataclass(frozen=True)
class Exclusion:
    point_id: str
    source_id: str
    reason: str


def load_points(path: Path | None = None) -> list[dict[str, Any]]:
    with open(path or DATA_DIR / "forward_points.yaml") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_sources(path: Path | None = None) -> dict[str, dict[str, Any]]:
    with open(path or DATA_DIR / "sources.yaml") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _device(gpu: str) -> str | None:
    g = gpu.upper()
    if "40GB" in g:
        return None
    for key, slug in (
        ("A100", "a100-80gb"),
        ("H100", "h100-sxm"),
        ("H200", "h200"),
        ("L40S", "l40s"),
        ("B200", "b200"),
    ):
        if g.startswith(key):
            return slug
    return None


def _model(name: str) -> str | None:
    n = name.lower().replace("-instruct", "").replace("-chat", "")
    return next((slug for key, slug in _MODELS if n.startswith(key)), None)


def _dtype(text: str) -> str | None:
    t = str(text).lower()
    if "weight-only" in t or "weight only" in t:
        return "int4-weight" if "int4" in t else "int8-weight"
    if t.startswith(("bf16", "fp16")):
        return "bf16"
    if t.startswith("fp8"):
        return "fp8"
    return None


def _kv_overflow(device: str, model: str, tp: int, dtype: str, kv: str, tokens: int) -> str:
    """Why ``tokens`` of KV cache cannot fit beside the weights ('' if they fit)."""
    from ..hardware import DEVICES
    from .catalog import get_model
    from .dtypes import KV_DTYPE_BYTES, WEIGHT_DTYPES

    shape, dev = get_model(model), DEVICES[device]
    free = dev.memory_gib * GIB * tp * 0.95 - shape.params() * WEIGHT_DTYPES[dtype].weight_bytes
    need = tokens * shape.kv_bytes_per_token(KV_DTYPE_BYTES[kv], tp)
    if need <= free:
        return ""
    return (
        f"KV cache of {tokens} tokens ({need / GIB:.0f} GiB) exceeds the {free / GIB:.0f} GiB free"
    )


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) else None


def interpret(p: dict[str, Any], groups: dict[str, str]) -> Observation | Exclusion:
    """One raw point -> an observation, or the reason it is left out."""
    sid, pid, kind = p["source_id"], p["id"], p["kind"]

    def out(reason: str) -> Exclusion:
        return Exclusion(pid, sid, reason)

    if sid in _EXCLUDED_SOURCES and not (
        sid == "torchao_bench_results" and "no" in str(p.get("cuda_graphs"))
    ):
        return out(_EXCLUDED_SOURCES[sid])
    device, model, dtype = _device(p["gpu"]), _model(p["model"]), _dtype(p["dtype"])
    if device is None or model is None or dtype is None:
        return out(f"device/model/dtype not modelled ({p['gpu']}; {p['model']}; {p['dtype']})")
    if str(p.get("reliability")) == "low":
        return out("marked low reliability (TP>1 rows ambiguous: total or per GPU)")
    group = groups.get(sid, sid)
    kv = "fp8" if dtype == "fp8" and group == "nvidia" else "bf16"
    base = dict(
        point_id=pid,
        source_id=sid,
        group=group,
        device=device,
        model=model,
        tp=int(p.get("tp") or 1),
        dtype=dtype,
        kv_dtype=kv,
    )
    isl, osl = _int(p.get("input_len")), _int(p.get("output_len"))
    derived = p.get("derived") or {}
    value = float(p["value"])
    graphs = str(p.get("cuda_graphs", ""))
    category = "weight_only" if dtype.endswith("-weight") else "decode"
    if kind == "batch1_decode":
        if "megakernel" in graphs:
            return out("single persistent megakernel, not an engine configuration")
        if sid == "megakernels_vs_graphs":
            category = "kernel_loop"
        ms = derived.get("ms_per_token") or derived.get("ms_per_step")
        if ms is None:
            return out("no per-token time")
        isl = isl or (128 if sid == "sglang_pr1401" else 5)
        osl = osl or (8 if sid == "sglang_pr1401" else 200)
        ctx = isl + osl / 2
        how = f"batch 1, context {ctx:g} (prompt {isl} + half of {osl} generated)"
        if sid == "sglang_sd_doc":
            ctx, how = 256.0, "batch 1 on MT-bench, context taken as 256 (not printed)"
        eager = graphs.startswith("no")
        if eager and category == "decode":
            category = "eager"
        return Observation(
            **base,
            category=category,
            measured=float(ms),
            batch=1,
            input_len=isl,
            output_len=osl,
            context=ctx,
            eager=eager,
            how=how,
        )
    if kind in ("decode_itl_vs_batch", "offline_throughput_known_batch"):
        b = p.get("batch")
        if isinstance(b, int) and isl is not None and osl is not None:
            full = _kv_overflow(device, model, base["tp"], dtype, kv, b * (isl + osl))
            if full:
                return out(full)
    if kind == "decode_itl_vs_batch" and sid == "lmdeploy_a100_fp16":
        b = int(p["batch"])
        ctx = isl + osl / 2
        return Observation(
            **base,
            category=category,
            measured=value * 1e3,
            batch=b,
            input_len=isl,
            output_len=osl,
            context=ctx,
            how=f"static batch {b}, p50 token latency at context {ctx:g}",
        )
    if kind == "decode_itl_vs_concurrency":
        c = int(p["concurrency"])
        if sid == "silybench_qwen3_8b_h100":
            cap = _SILYBENCH_KV[dtype]
            if c * (isl + osl) > cap:
                return out(f"c x (ISL+OSL) = {c * (isl + osl)} exceeds the {cap}-token KV cache")
            return Observation(
                **base,
                category="decode",
                measured=value,
                batch=c,
                input_len=isl,
                output_len=osl,
                context=isl + osl / 2,
                how=f"median ITL at concurrency {c}: decode batch {c}",
            )
        if sid == "nim_bench":
            if c >= 100:
                return out("concurrency at or above the server's batch cap (ITL flat at 93 ms)")
            return Observation(
                **base,
                category="decode",
                measured=value,
                batch=c,
                input_len=isl,
                output_len=osl,
                context=isl + osl / 2,
                others_prefill=(c - 1) / osl,
                how=f"mean ITL at concurrency {c}: decode batch {c} + "
                f"{c - 1}/{osl} prefills of {isl} per step",
            )
    if kind == "prefill_ttft_batch1":
        if isl is None:
            return out("prompt length not stated")
        ms = derived.get("ms") or derived.get("prefill_ms_for_1024_tokens")
        ms = float(ms) if ms is not None else (value * 1e3 if p["unit"] == "s" else value)
        return Observation(
            **base,
            category="prefill",
            measured=ms,
            batch=1,
            input_len=isl,
            output_len=1,
            context=0.0,
            how=f"one forward of {isl} tokens",
        )
    if kind == "offline_throughput_known_batch":
        if sid == "lmdeploy_a100_fp16":
            return out("same runs as LMDeploy's token latencies (used); adds session set-up")
        b = p.get("batch")
        if not isinstance(b, int) or isl is None or osl is None:
            return out("batch or lengths not stated")
        per_gpu = "per_gpu" in p["metric"]
        return Observation(
            **base,
            category="static" if base["tp"] == 1 else "static_tp",
            measured=value,
            batch=b,
            input_len=isl,
            output_len=osl,
            context=isl + osl / 2,
            per_gpu=per_gpu,
            how=f"static batch {b}: prefill {b}x{isl} + {osl - 1} decode steps"
            + (" (per GPU)" if per_gpu else ""),
        )
    if kind == "offline_throughput_unknown_batch":
        return out("max-load throughput without the batch it ran at")
    return out(f"kind {kind!r} not modelled")


def observations(
    points: list[dict[str, Any]] | None = None, sources: dict[str, dict[str, Any]] | None = None
) -> tuple[list[Observation], list[Exclusion]]:
    """All points of the data file, interpreted (module docstring)."""
    points = load_points() if points is None else points
    sources = load_sources() if sources is None else sources
    groups = {sid: str(s.get("independence_group", sid)) for sid, s in sources.items()}
    obs: list[Observation] = []
    excl: list[Exclusion] = []
    for p in points:
        r = interpret(p, groups)
        (obs if isinstance(r, Observation) else excl).append(r)  # type: ignore[arg-type]
    return obs, excl
