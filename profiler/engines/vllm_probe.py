"""Per-step timings from inside vLLM's worker process (this module runs *in* vLLM).

vLLM imports this module in its worker process when the engine is started with
``worker_extension_cls="spectune.profiler.engines.vllm_probe.StepProbe"`` (offline ``LLM``)
or ``--worker-extension-cls ...`` (``vllm serve``). When the environment variable
:data:`ENV_LOG` names a file, the import wraps four methods of vLLM's model runner
(``execute_model``, ``_model_forward``, ``sample_tokens``, ``propose_draft_token_ids``) and,
on first use, the drafter model's ``__call__``, and appends one line per engine step to
that file. Nothing else changes: the wrapped methods run as before (the probe adds a few
microseconds per step, measured in docs/engines.md).

One line per step, whitespace-separated numbers (``FIELDS``; times from
``time.monotonic()``, which on Linux is one clock for every process, so the client can
match steps to its runs):

- ``t0``, ``t1``: entry of ``execute_model`` and exit of the step's last worker call;
- ``fwd_ms``: the target's forward (``_model_forward``, the transformer layers);
- ``draft_ms``: ``propose_draft_token_ids`` (the drafter: lookups or model passes);
- ``dec``, ``dec_tokens``, ``dec_width_max``: decoding requests, their scheduled tokens
  (1 + drafts each) and the widest; ``dec_ctx``, ``dec_ctx_max``: the sum and the largest
  of their contexts (tokens already in the KV cache);
- ``pf``, ``pf_tokens``, ``pf_ctx``: prefill chunks, their tokens and cached prefixes;
- ``drafts``: draft tokens scheduled for verification;
- ``fwd_cpu_ms``: the target's forward in the worker thread's CPU time (vLLM's CPU worker
  runs its forward on that one thread): below ``fwd_ms`` when another process took the
  worker's core mid-forward;
- then one ``tokens:ms`` pair per drafter model call (first pass first).

On a GPU the probe synchronises the device around the target's forward (CUDA launches
return before the work is done), which also serialises what vLLM would overlap: the
profile is then of a synchronous engine (docs/engines.md, "On a GPU").

Private API: the wrapped names are vLLM 0.32's (``docs/engines.md`` lists the versions);
:func:`install` raises if one is missing, so a vLLM that moved them fails at start-up
instead of measuring nothing.
"""

from __future__ import annotations

import os
import time
from typing import Any

ENV_LOG = "SPECTUNE_VLLM_STEPLOG"
FIELDS = (
    "t0",
    "t1",
    "fwd_ms",
    "draft_ms",
    "dec",
    "dec_tokens",
    "dec_width_max",
    "dec_ctx",
    "dec_ctx_max",
    "pf",
    "pf_tokens",
    "pf_ctx",
    "drafts",
    "fwd_cpu_ms",
)
WRAPPED = ("execute_model", "_model_forward", "sample_tokens", "propose_draft_token_ids")


class StepProbe:
    """The worker extension vLLM mixes into its worker class (an importable name is all
    vLLM needs; the work happens when this module is imported)."""

    def spectune_probe_path(self) -> str | None:
        """The step-log file this worker writes (for ``collective_rpc``)."""
        return _STATE.get("path")


_STATE: dict[str, Any] = {}


def composition(so: Any) -> list[int]:
    """``dec, dec_tokens, dec_width_max, dec_ctx, dec_ctx_max, pf, pf_tokens, pf_ctx,
    drafts`` of a vLLM ``SchedulerOutput``: new requests and cached ones without output
    tokens are prefill chunks; the others decode (1 + drafts tokens each)."""
    sched = so.num_scheduled_tokens
    spec = so.scheduled_spec_decode_tokens
    dec = dec_tokens = width_max = dec_ctx = ctx_max = pf = pf_tokens = pf_ctx = drafts = 0
    for nr in so.scheduled_new_reqs:
        pf += 1
        pf_tokens += int(sched.get(nr.req_id, 0))
        pf_ctx += int(nr.num_computed_tokens)
    cr = so.scheduled_cached_reqs
    for i, rid in enumerate(cr.req_ids):
        n = int(sched.get(rid, 0))
        computed = int(cr.num_computed_tokens[i])
        if int(cr.num_output_tokens[i]) == 0:
            pf += 1
            pf_tokens += n
            pf_ctx += computed
            continue
        dec += 1
        dec_tokens += n
        width_max = max(width_max, n)
        dec_ctx += computed
        ctx_max = max(ctx_max, computed)
        drafts += len(spec.get(rid, ()))
    return [dec, dec_tokens, width_max, dec_ctx, ctx_max, pf, pf_tokens, pf_ctx, drafts]


class _TimedModel:
    """Delegates to a drafter model and records each call's tokens and milliseconds."""

    def __init__(self, inner: Any, calls: list[tuple[int, float]]):
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_calls", calls)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        tokens = int(ids.shape[0]) if ids is not None else -1
        t = time.monotonic()
        out = self._inner(*args, **kwargs)
        self._calls.append((tokens, (time.monotonic() - t) * 1e3))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def _device_sync() -> Any:
    """A function that waits for the GPU (CUDA launches are asynchronous: without it a
    forward's time would be its launch time), or does nothing on a CPU."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.synchronize
    except ImportError:
        pass
    return lambda: None


def install(path: str) -> None:
    """Wrap the model runner's methods (module docstring) to log steps to ``path``.

    Raises:
        RuntimeError: vLLM's model runner lacks one of the wrapped methods.
    """
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    missing = [m for m in WRAPPED if not hasattr(GPUModelRunner, m)]
    if missing:
        raise RuntimeError(
            f"spectune's step probe does not know this vLLM: GPUModelRunner has no "
            f"{', '.join(missing)} (see docs/engines.md for the supported versions)"
        )
    if _STATE.get("path") == path:
        return
    fh = open(path, "a", buffering=1)  # noqa: SIM115 (held for the process's life)
    step: dict[str, Any] = {"calls": []}
    _STATE.update(path=path, fh=fh, step=step)
    orig = {m: getattr(GPUModelRunner, m) for m in WRAPPED}

    def flush() -> None:
        s = _STATE["step"]
        if "t0" not in s:
            return
        nums = [s["t0"], time.monotonic(), s["fwd_ms"], s["draft_ms"], *s["comp"], s["fwd_cpu_ms"]]
        text = " ".join(f"{x:.6f}" if isinstance(x, float) else str(x) for x in nums)
        calls = " ".join(f"{n}:{ms:.4f}" for n, ms in s["calls"])
        fh.write(f"{text} {calls}\n" if calls else text + "\n")
        _STATE["step"] = {"calls": []}

    def execute_model(self: Any, scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
        flush()  # a step that ended without sample_tokens
        s = _STATE["step"]
        s.update(t0=time.monotonic(), fwd_ms=0.0, draft_ms=0.0, fwd_cpu_ms=0.0)
        s["comp"] = composition(scheduler_output)
        out = orig["execute_model"](self, scheduler_output, *args, **kwargs)
        if out is not None:
            flush()
        return out

    sync = _device_sync()

    def _model_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        sync()
        c, t = time.thread_time(), time.monotonic()
        out = orig["_model_forward"](self, *args, **kwargs)
        sync()
        step = _STATE["step"]
        step["fwd_ms"] = step.get("fwd_ms", 0.0) + (time.monotonic() - t) * 1e3
        step["fwd_cpu_ms"] = step.get("fwd_cpu_ms", 0.0) + (time.thread_time() - c) * 1e3
        return out

    def sample_tokens(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = orig["sample_tokens"](self, *args, **kwargs)
        flush()
        return out

    def propose_draft_token_ids(self: Any, *args: Any, **kwargs: Any) -> Any:
        drafter = getattr(self, "drafter", None)
        inner = getattr(drafter, "model", None)
        if inner is not None and not isinstance(inner, _TimedModel) and callable(inner):
            drafter.model = _TimedModel(inner, _STATE["step"]["calls"])
        if isinstance(getattr(drafter, "model", None), _TimedModel):
            object.__setattr__(drafter.model, "_calls", _STATE["step"]["calls"])
        t = time.monotonic()
        out = orig["propose_draft_token_ids"](self, *args, **kwargs)
        _STATE["step"]["draft_ms"] = (time.monotonic() - t) * 1e3
        return out

    for name, fn in (
        ("execute_model", execute_model),
        ("_model_forward", _model_forward),
        ("sample_tokens", sample_tokens),
        ("propose_draft_token_ids", propose_draft_token_ids),
    ):
        fn.__wrapped__ = orig[name]  # type: ignore[attr-defined]
        setattr(GPUModelRunner, name, fn)


if os.environ.get(ENV_LOG):
    install(os.environ[ENV_LOG])
