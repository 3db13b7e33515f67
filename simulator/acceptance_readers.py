"""Engines' and benchmarks' acceptance numbers, read into spectune's acceptance contract
(``spectune acceptance import``; docs/acceptance.md shows each format).

Formats (:data:`FORMATS`), field names as vLLM 0.32 writes them:

- ``prometheus``: a ``/metrics`` text dump: the counters
  ``vllm:spec_decode_num_drafts_total``, ``..._num_draft_tokens_total``,
  ``..._num_accepted_tokens_total`` and ``..._num_accepted_tokens_per_pos_total{position="i"}``
  (0-based), summed over label sets (engines). Per-position counters / drafts are
  *unconditional* rates u_i; a_i = u_i / u_{i−1}.
- ``vllm-bench``: ``vllm bench serve --save-result`` JSON: ``spec_decode_acceptance_length``,
  ``spec_decode_acceptance_rate`` (percent), ``spec_decode_num_drafts``,
  ``spec_decode_draft_tokens``, ``spec_decode_accepted_tokens``,
  ``spec_decode_per_position_acceptance_rates`` (unconditional).
- ``vllm-requests``: JSONL, one finished request per line, with
  ``--per-request-spec-decode-metrics detailed``: the response (``metrics.speculative_decoding``
  and ``usage.completion_tokens``), or the ``speculative_decoding`` object itself
  (``num_spec_tokens``, ``per_step_accepted``, ``per_step_drafted``, ``acceptance_histogram``;
  ``output_tokens`` when the line has it). Each line with per-step arrays becomes a
  ``steps`` trajectory; ``summary``-level lines add their histogram to the pooled vector.
- ``jsonl``: a generic JSONL of per-request sequences: ``{"accepted": [...]}`` (drafts
  accepted per step, bonus excluded) or ``{"accept_lengths": [...]}`` (tokens per step,
  bonus included, 1..k+1), with optional ``k``, ``drafted``, ``output_tokens``,
  ``prompt_tokens``; or a bare list per line (``bonus_included`` says which).

Every reader returns a :class:`Imported`; errors are one line naming the file and the
field (``line 3.per_step_accepted.5``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .acceptance_records import (
    Imported,
    json_lines,
    read_jsonl,
    read_vllm_requests,
    spec_metrics,
)
from .analytic import conventions as cv
from .errors import InputError
from .loading import read_text_file
from .schema_base import MAX_SPEC_TOKENS

FORMATS = ("prometheus", "vllm-bench", "vllm-requests", "jsonl")
_PROM = re.compile(
    r"^(?P<name>vllm:spec_decode_[a-z_]+?)(?:_total)?(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)"
)


def detect_format(text: str, source: str) -> str:
    """The format of a file's text (module docstring), or InputError naming ``--format``."""
    head = text.lstrip()[:4096]
    if "vllm:spec_decode" in head or head.startswith("# HELP") or head.startswith("# TYPE"):
        return "prometheus"
    if head.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and any(k.startswith("spec_decode_") for k in doc):
            return "vllm-bench"
    try:
        first = next(iter(json_lines(text, source)), None)
    except InputError:  # not JSON lines either
        first = None
    if first is not None:
        _, obj = first
        if spec_metrics(obj) is not None:
            return "vllm-requests"
        if isinstance(obj, list) or (
            isinstance(obj, dict) and ("accepted" in obj or "accept_lengths" in obj)
        ):
            return "jsonl"
    raise InputError(
        "unknown acceptance metrics format: expected a vLLM /metrics dump, a `vllm bench "
        "serve` result JSON, vLLM per-request metrics JSONL or a JSONL of per-request "
        "accepted lengths (give --format to say which)",
        source=source,
        field="--format",
    )


def read(text: str, fmt: str, source: str, k: int | None, bonus_included: bool = False) -> Imported:
    """Read ``text`` in format ``fmt`` (module docstring); ``k`` checks (or, where the file
    does not say, gives) the draft length."""
    if fmt == "prometheus":
        return read_prometheus(text, source, k)
    if fmt == "vllm-bench":
        return read_vllm_bench(text, source, k)
    if fmt == "vllm-requests":
        return read_vllm_requests(text, source, k)
    if fmt == "jsonl":
        return read_jsonl(text, source, k, bonus_included)
    raise InputError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})", field="--format")


# --------------------------------------------------------------------------- aggregate


def read_prometheus(text: str, source: str, k: int | None) -> Imported:
    totals: dict[str, float] = {}
    per_pos: dict[int, float] = {}
    model = None
    for n, line in enumerate(text.splitlines(), 1):
        m = _PROM.match(line.strip())
        if m is None or m.group("name").endswith("_created"):
            continue
        name, labels = m.group("name"), m.group("labels") or ""
        try:
            value = float(m.group("value"))
        except ValueError:
            raise InputError(
                f"value {m.group('value')!r} is not a number", source=source, field=f"line {n}"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise InputError(
                f"must be a finite count >= 0, got {value:g}", source=source, field=f"line {n}"
            )
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        model = model or lab.get("model_name")
        if name == "vllm:spec_decode_num_accepted_tokens_per_pos":
            if "position" not in lab or not lab["position"].isdigit():
                raise InputError("needs a position label", source=source, field=f"line {n}")
            pos = int(lab["position"])
            per_pos[pos] = per_pos.get(pos, 0.0) + value
        else:
            totals[name] = totals.get(name, 0.0) + value
    need = ("vllm:spec_decode_num_drafts", "vllm:spec_decode_num_accepted_tokens")
    if not all(n in totals for n in need):
        raise InputError(
            "no vllm:spec_decode_num_drafts / _num_accepted_tokens counters: not a vLLM "
            "(V1) metrics dump with speculative decoding on",
            source=source,
            field="--format",
        )
    drafts = int(totals[need[0]])
    if not per_pos:
        raise InputError(
            "no vllm:spec_decode_num_accepted_tokens_per_pos counters",
            source=source,
            field="--format",
        )
    kk = max(per_pos) + 1
    _check_k(k, kk, source, "position labels")
    counts = [int(per_pos.get(i, 0)) for i in range(kk)]
    if drafts <= 0:
        raise InputError(
            "is 0: nothing was drafted", source=source, field="vllm:spec_decode_num_drafts"
        )
    u = [c / drafts for c in counts]
    out = Imported(
        k=kk,
        per_position=cv.conditional_from_unconditional(
            u, "vllm:spec_decode_num_accepted_tokens_per_pos"
        ),
        num_drafts=drafts,
        num_draft_tokens=int(totals.get("vllm:spec_decode_num_draft_tokens", drafts * kk)),
        num_accepted_tokens=int(totals[need[1]]),
        target=model,
    )
    out.notes.append(
        "vLLM's per-position counters / drafts are unconditional rates u_i; converted to "
        "conditional a_i = u_i / u_(i-1)"
    )
    return out


def read_vllm_bench(text: str, source: str, k: int | None) -> Imported:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON ({e.msg}, line {e.lineno})", source=source) from None
    if not isinstance(doc, dict):
        raise InputError("must be a JSON object (a `vllm bench serve` result)", source=source)
    al = _number(doc, "spec_decode_acceptance_length", source)
    rates = doc.get("spec_decode_per_position_acceptance_rates") or []
    if not isinstance(rates, list) or not all(isinstance(x, int | float) for x in rates):
        raise InputError(
            "must be a list of numbers",
            source=source,
            field="spec_decode_per_position_acceptance_rates",
        )
    if rates:
        kk = len(rates)
        _check_k(k, kk, source, "spec_decode_per_position_acceptance_rates")
        per = cv.conditional_from_unconditional(rates, "spec_decode_per_position_acceptance_rates")
        if abs(1.0 + sum(rates) - al) > 1e-3 * al:
            raise InputError(
                f"1 + the per-position rates = {1 + sum(rates):.4f} but the acceptance length "
                f"is {al:.4f}: they must agree (AL = 1 + sum u_i)",
                source=source,
                field="spec_decode_acceptance_length",
            )
        note = "per-position rates are unconditional u_i; converted to a_i = u_i / u_(i-1)"
    else:
        if k is None:
            raise InputError(
                "no per-position rates: give --k (the run's num_speculative_tokens)",
                source=source,
                field="--k",
            )
        kk = k
        per = [cv.fit_iid_from_length(al, kk)]
        note = f"no per-position rates: one iid a = {per[0]:.4f} fitted to the acceptance length"
    rate = doc.get("spec_decode_acceptance_rate")
    if isinstance(rate, int | float) and abs(rate / 100.0 - (al - 1.0) / kk) > 2e-3:
        raise InputError(
            f"{rate:g}% does not match (acceptance length - 1) / k = {(al - 1) / kk:.4f} with "
            f"k = {kk}: a k mismatch",
            source=source,
            field="spec_decode_acceptance_rate",
        )
    drafts = int(doc.get("spec_decode_num_drafts") or 0)
    out = Imported(
        k=kk,
        per_position=per,
        num_drafts=drafts,
        num_draft_tokens=int(doc.get("spec_decode_draft_tokens") or 0),
        num_accepted_tokens=int(doc.get("spec_decode_accepted_tokens") or 0),
        target=doc.get("model_id") if isinstance(doc.get("model_id"), str) else None,
    )
    out.notes.append(note + "; spec_decode_acceptance_rate is in percent = 100 (AL - 1) / k")
    return out


def _number(doc: dict, key: str, source: str) -> float:
    x = doc.get(key)
    if not isinstance(x, int | float) or not math.isfinite(x):
        raise InputError(f"is required (a number), got {x!r}", source=source, field=key)
    return float(x)


def _check_k(k: int | None, found: int, source: str, where: str) -> None:
    if found > MAX_SPEC_TOKENS:
        raise InputError(
            f"{found} positions: more than {MAX_SPEC_TOKENS}", source=source, field=where
        )
    if k is not None and k != found:
        raise InputError(
            f"the file has {found} draft positions but --k is {k}: a k mismatch",
            source=source,
            field=where,
        )


def read_file_text(path: str | Path) -> str:
    """A metrics file's text (one-line errors for missing or unreadable files)."""
    return read_text_file(path)
