"""TensorRT-LLM's ``llm_args`` schema for ``speculative_config``, re-stated to check the
YAML spectune emits for ``trtllm-serve --config`` (TensorRT-LLM has no CPU wheel: its
PyPI package only downloads the real one from NVIDIA's index).

Written for spectune from TensorRT-LLM's versioned API reference (``llm-api/reference/
<Type>DecodingConfig.html`` for 1.3.0rc27 and 1.4.0rc4) and the validators of
``tensorrt_llm/llmapi/llm_args.py``: every model is strict (unknown keys are errors);
``decoding_type`` picks the class; the field sets differ by release (``eagle_choices``
exists up to 1.3.0rc27, ``num_eagle_layers`` up to 1.4.0rc1; 1.4 adds ``moe_backend``,
``moe_tactic``, ``spec_dec_variant``). Only the top-level keys spectune writes are known
here (the real ``TorchLlmArgs`` has many more): any other is reported, so a new key cannot
slip through unchecked.
"""

from __future__ import annotations

from typing import Any

VERSIONS = ("1.3.0rc27", "1.4.0rc4")

_BASE = {
    "decoding_type": str,
    "max_draft_len": int,
    "max_total_draft_tokens": int,
    "speculative_model": str,
    "speculative_model_dir": str,  # alias of speculative_model
    "max_concurrency": int,
    "draft_len_schedule": dict,
    "load_format": str,
    "acceptance_rate_window_size": int,
    "acceptance_rate_threshold": float,
    "use_rejection_sampling": bool,
    "allow_advanced_sampling": bool,
    "advanced_sampling_mode": str,
    "enable_penalty": bool,
}
_BASE_14 = {"moe_backend": str, "moe_tactic": str, "spec_dec_variant": int}
_EAGLE = {
    "eagle_choices": list,
    "use_dynamic_tree": bool,
    "dynamic_tree_max_topK": int,
    "num_eagle_layers": int,
    "max_non_leaves_per_layer": int,
    "eagle3_layers_to_capture": list,
    "eagle3_model_arch": str,
}
_MTP = {
    "use_relaxed_acceptance_for_thinking": bool,
    "relaxed_topk": int,
    "relaxed_delta": float,
    "use_mtp_vanilla": bool,
    "use_dynamic_tree": bool,
    "dynamic_tree_max_topK": int,
    "sa_config": dict,
    "num_nextn_predict_layers": int,
    "begin_thinking_phase_token": int,
    "end_thinking_phase_token": int,
}
_TYPES = {
    "Draft_Target": {},
    "Eagle": _EAGLE,
    "Eagle3": {**_EAGLE, "sa_config": dict},
    "MTP": _MTP,
    "NGram": {
        "max_matching_ngram_size": int,
        "is_keep_all": bool,
        "is_use_oldest": bool,
        "is_public_pool": bool,
    },
    "SA": {"max_matching_ngram_size": int, "enable_global_pool": bool, "global_pool_size": int},
}
_GONE = {  # per version: fields of a type that release no longer has
    "1.3.0rc27": {},
    "1.4.0rc4": {"Eagle": {"eagle_choices", "num_eagle_layers"}},
}
_TOP = {"max_batch_size": int, "max_num_tokens": int, "speculative_config": dict}


def fields(decoding_type: str, version: str) -> dict[str, type]:
    """The fields ``decoding_type`` accepts in ``version``."""
    out = {**_BASE, **(_BASE_14 if version == "1.4.0rc4" else {}), **_TYPES[decoding_type]}
    gone = _GONE[version].get("Eagle", set()) if decoding_type in ("Eagle", "Eagle3") else set()
    extra = {"draft_lm_head_dtype": str, "draft_moe_dtype": str} if version == "1.4.0rc4" else {}
    if decoding_type == "MTP":
        out.update(extra)
    return {k: v for k, v in out.items() if k not in gone}


def _typed(name: str, value: Any, kind: type) -> str | None:
    if value is None:
        return None
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{name}: expected an integer, got {value!r}"
    if kind is float and not isinstance(value, int | float):
        return f"{name}: expected a number, got {value!r}"
    if kind is not int and kind is not float and not isinstance(value, kind):
        return f"{name}: expected {kind.__name__}, got {value!r}"
    return None


def check(doc: dict[str, Any], version: str) -> list[str]:
    """Errors TensorRT-LLM ``version`` would raise loading ``doc`` (empty = accepted)."""
    if version not in VERSIONS:
        return [f"version {version} not re-stated here"]
    errors = []
    for key, value in doc.items():
        if key not in _TOP:
            errors.append(f"{key}: not a field spectune checks at the top level")
        elif (e := _typed(key, value, _TOP[key])) is not None:
            errors.append(e)
    sc = doc.get("speculative_config")
    if isinstance(sc, dict):
        errors += check_spec(sc, version)
    return errors


def check_spec(sc: dict[str, Any], version: str) -> list[str]:
    """Errors of one ``speculative_config`` (see :func:`check`)."""
    dt = sc.get("decoding_type")
    if dt not in _TYPES:
        return [f"decoding_type {dt!r}: not one of {sorted(_TYPES)}"]
    allowed = fields(dt, version)
    errors = [f"{k}: extra inputs are not permitted ({dt})" for k in sc if k not in allowed]
    errors += [e for k, v in sc.items() if k in allowed and (e := _typed(k, v, allowed[k]))]
    if errors:
        return errors
    mdl = sc.get("max_draft_len")
    model = sc.get("speculative_model", sc.get("speculative_model_dir"))
    if mdl is not None and mdl < 0:
        errors.append("max_draft_len must be >= 0")
    if dt in ("Draft_Target", "Eagle", "Eagle3", "NGram", "SA") and not mdl:
        errors.append(f"max_draft_len must be > 0 for {dt}")
    if dt in ("Draft_Target", "Eagle", "Eagle3") and model is None:
        errors.append(f"{dt} needs speculative_model")
    if sc.get("max_concurrency") is not None:
        if sc["max_concurrency"] <= 0:
            errors.append("max_concurrency must be > 0")
        if sc.get("draft_len_schedule") is not None:
            errors.append("max_concurrency and draft_len_schedule are mutually exclusive")
    sched = sc.get("draft_len_schedule")
    if sched is not None:
        s = {int(k): int(v) for k, v in sched.items()}
        if not s:
            errors.append("draft_len_schedule is empty")
        if any(b < 1 for b in s):
            errors.append("draft_len_schedule: batch-size keys must be >= 1")
        if any(v < 0 for v in s.values()):
            errors.append("draft_len_schedule: draft lengths must be >= 0")
        if s and mdl is not None:
            if s[min(s)] != mdl:
                errors.append(
                    f"draft_len_schedule[{min(s)}] must equal max_draft_len ({mdl}): the "
                    "smallest batch-size key"
                )
            if any(v > mdl for v in s.values()):
                errors.append("draft_len_schedule: every draft length must be <= max_draft_len")
    thr = sc.get("acceptance_rate_threshold")
    if thr is not None and not 0.0 <= thr <= 1.0:
        errors.append("acceptance_rate_threshold must be in [0, 1]")
    choices = sc.get("eagle_choices")
    if choices is not None:
        if sc.get("use_dynamic_tree"):
            errors.append("eagle_choices and use_dynamic_tree are mutually exclusive")
        paths = {tuple(c) for c in choices}
        for p in paths:
            if len(p) > 1 and p[:-1] not in paths:
                errors.append(f"eagle_choices: {list(p)} is not connected")
        depth = max((len(p) for p in paths), default=0)
        if mdl is not None and depth != mdl:
            errors.append(f"eagle_choices depth {depth} resets max_draft_len {mdl}")
    return errors
