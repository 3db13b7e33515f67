"""Per-request acceptance records from engines' files: vLLM's per-request detailed
spec-decode metrics (JSONL) and generic JSONL of per-request accepted lengths, read into
``steps`` trajectories (:mod:`.trajectory_schema`) and their pooled statistics. The
formats: :mod:`.acceptance_readers` (module docstring) and docs/acceptance.md."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from .analytic import conventions as cv
from .errors import InputError
from .loading import validation_error_line
from .profile_schema import AcceptanceCounts, AcceptanceProfile, AcceptanceSpec, Provenance
from .trajectory_schema import Trajectory


@dataclass
class Imported:
    """What a file says about acceptance, in spectune's conventions."""

    k: int
    per_position: list[float]  # conditional a_1..a_k
    num_drafts: int = 0  # verify steps that drafted
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    trajectories: list[Trajectory] = field(default_factory=list)
    per_request: list[float] = field(default_factory=list)  # per request a_1
    match_probability: float | None = None  # drafting steps / decode steps (when known)
    target: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def acceptance_length(self) -> float:
        """1 + accepted / drafts (bonus included)."""
        return 1.0 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else 1.0


def json_lines(text: str, source: str) -> Iterator[tuple[int, Any]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"not JSON ({e.msg})", source=source, field=f"line {n}") from None


def spec_metrics(obj: Any) -> dict | None:
    """The ``speculative_decoding`` object of a response line (or the line itself)."""
    if not isinstance(obj, dict):
        return None
    if "num_spec_tokens" in obj and ("acceptance_histogram" in obj or "per_step_accepted" in obj):
        return obj
    for path in (("metrics", "speculative_decoding"), ("speculative_decoding",)):
        node: Any = obj
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return node
    return None


def read_vllm_requests(text: str, source: str, k: int | None) -> Imported:
    trajectories: list[Trajectory] = []
    hist_total: np.ndarray | None = None
    kk = k
    for n, obj in json_lines(text, source):
        sd = spec_metrics(obj)
        if sd is None:
            raise InputError(
                "no speculative_decoding metrics on this line", source=source, field=f"line {n}"
            )
        where = f"line {n}"
        ks = sd.get("num_spec_tokens")
        if not isinstance(ks, int) or ks < 1:
            raise InputError(
                f"must be an integer >= 1, got {ks!r}",
                source=source,
                field=f"{where}.num_spec_tokens",
            )
        if kk is not None and ks != kk:
            raise InputError(
                f"{ks} but {'--k' if k else 'an earlier line'} says {kk}: a k mismatch",
                source=source,
                field=f"{where}.num_spec_tokens",
            )
        kk = ks
        acc = sd.get("per_step_accepted")
        if acc:
            drafted = sd.get("per_step_drafted")
            out_tok = _output_tokens(obj)
            trajectories.append(
                _steps(
                    acc,
                    drafted,
                    ks,
                    out_tok,
                    _prompt_tokens(obj),
                    source,
                    where,
                    "per_step_accepted",
                    "per_step_drafted",
                )
            )
        else:
            hist = sd.get("acceptance_histogram")
            if not isinstance(hist, list) or len(hist) != ks + 1:
                raise InputError(
                    f"needs per_step_accepted, or acceptance_histogram of k + 1 = {ks + 1} counts",
                    source=source,
                    field=f"{where}.acceptance_histogram",
                )
            h = np.asarray(_ints(hist, source, f"{where}.acceptance_histogram"), dtype=np.int64)
            hist_total = h if hist_total is None else hist_total + h
    if kk is None:
        raise InputError("holds no requests", source=source)
    return from_trajectories(trajectories, kk, hist_total, source)


def read_jsonl(text: str, source: str, k: int | None, bonus_included: bool) -> Imported:
    rows = []
    for n, obj in json_lines(text, source):
        where = f"line {n}"
        if isinstance(obj, list):
            seq, key, plus, meta = obj, "", bonus_included, {}
        elif isinstance(obj, dict) and ("accepted" in obj or "accept_lengths" in obj):
            key = "accepted" if "accepted" in obj else "accept_lengths"
            seq, plus, meta = obj[key], key == "accept_lengths", obj
        else:
            raise InputError(
                "needs a list, or an object with 'accepted' or 'accept_lengths'",
                source=source,
                field=where,
            )
        fld = f"{where}.{key}" if key else where
        vals = _ints(seq, source, fld)
        if plus:
            for j, v in enumerate(vals):
                if v < 1:
                    raise InputError(
                        f"a length with the bonus token is >= 1, got {v}",
                        source=source,
                        field=f"{fld}.{j}",
                    )
            vals = [v - 1 for v in vals]
        line_k = meta.get("k", k)
        if line_k is not None and (not isinstance(line_k, int) or line_k < 1):
            raise InputError(
                f"must be an integer >= 1, got {line_k!r}", source=source, field=f"{where}.k"
            )
        if k is not None and line_k != k:
            raise InputError(
                f"{line_k} but --k is {k}: a k mismatch", source=source, field=f"{where}.k"
            )
        rows.append((vals, meta, where, key or "accepted", line_k))
    if not rows:
        raise InputError("holds no requests", source=source)
    inferred = max((max(r[0], default=0) for r in rows), default=0) or 1
    notes = []
    if any(r[4] is None for r in rows):
        notes.append(f"k not given: taken as the largest accepted count, {inferred} (use --k)")
    trajectories = [
        _steps(vals, meta.get("drafted"), line_k or inferred, _output_tokens(meta),
               _prompt_tokens(meta), source, where, name, "drafted")
        for vals, meta, where, name, line_k in rows
    ]  # fmt: skip
    top = max(t.k for t in trajectories)
    out = from_trajectories(trajectories, top, None, source)
    out.notes += notes
    return out


def _ints(seq: Any, source: str, fld: str) -> list[int]:
    if not isinstance(seq, list):
        raise InputError(
            f"must be a list of integers, got {type(seq).__name__}", source=source, field=fld
        )
    for j, v in enumerate(seq):
        if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
            raise InputError(f"must be an integer, got {v!r}", source=source, field=f"{fld}.{j}")
        if v < 0:
            raise InputError(f"must be >= 0, got {v}", source=source, field=f"{fld}.{j}")
    return [int(v) for v in seq]


def _int_at(obj: Any, *paths: tuple[str, ...]) -> int | None:
    """The first integer >= 0 found at one of the key paths of a JSON object."""
    for path in paths:
        node: Any = obj
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int) and not isinstance(node, bool) and node >= 0:
            return node
    return None


def _output_tokens(obj: Any) -> int | None:
    return _int_at(obj, ("usage", "completion_tokens"), ("output_tokens",), ("num_output_tokens",))


def _prompt_tokens(obj: Any) -> int | None:
    return _int_at(obj, ("usage", "prompt_tokens"), ("prompt_tokens",))


def _steps(
    accepted: Any,
    drafted: Any,
    k: int,
    output_tokens: int | None,
    prompt_tokens: int | None,
    source: str,
    where: str,
    acc_name: str,
    dft_name: str,
) -> Trajectory:
    """One steps trajectory; an engine that records drafting steps only (vLLM) leaves
    output_tokens − 1 − Σ(accepted + 1) one-token steps out: ``undrafted_steps``."""
    acc = _ints(accepted, source, f"{where}.{acc_name}")
    dft = _ints(drafted, source, f"{where}.{dft_name}") if drafted is not None else None
    if not acc:
        raise InputError("is empty", source=source, field=f"{where}.{acc_name}")
    covered = sum(a + 1 for a in acc)
    if output_tokens is None:
        output_tokens = 1 + covered  # the least the steps imply
    if output_tokens < 2:
        raise InputError(
            f"must be >= 2, got {output_tokens}", source=source, field=f"{where}.output_tokens"
        )
    missing = max(0, output_tokens - 1 - covered)
    data = {"k": k, "output_tokens": output_tokens, "accepted": acc, "drafted": dft}
    if prompt_tokens is not None:
        data["prompt_tokens"] = prompt_tokens
    if missing:
        data["undrafted_steps"] = missing
    try:
        return Trajectory(**data)
    except ValidationError as e:
        loc, msg = validation_error_line(e, data)
        names = {"accepted": acc_name, "drafted": dft_name}
        head, _, rest = loc.partition(".")
        loc = names.get(head, head) + (f".{rest}" if rest else "")
        raise InputError(msg, source=source or None, field=f"{where}.{loc}") from None


def from_trajectories(
    trajectories: list[Trajectory], k: int, hist: np.ndarray | None = None, source: str = ""
) -> Imported:
    """Pooled vectors and counters of steps records (and summary-level histograms of
    requests without per-step arrays)."""
    acc_pos = np.zeros(k, dtype=np.int64)
    dft_pos = np.zeros(k, dtype=np.int64)
    drafts = draft_tokens = accepted = undrafted = 0
    per_request = []
    for t in trajectories:
        a = np.asarray(t.accepted)
        d = np.asarray(t.drafted if t.drafted is not None else [t.k] * len(a))
        on = d > 0
        drafts += int(on.sum())
        draft_tokens += int(d.sum())
        accepted += int(a.sum())
        undrafted += t.undrafted_steps + int((~on).sum())
        for i in range(k):
            acc_pos[i] += int((a > i).sum())
            dft_pos[i] += int((d > i).sum())
        if on.any():
            per_request.append(round(float((a[on] >= 1).mean()), 4))
    if hist is not None:
        steps = int(hist.sum())
        drafts += steps
        draft_tokens += steps * k
        accepted += int((np.arange(k + 1) * hist).sum())
        for i in range(k):
            acc_pos[i] += int(hist[i + 1 :].sum())
            dft_pos[i] += steps
    if drafts == 0:
        raise InputError("no step drafted anything", source=source, field="accepted")
    per = cv.conditional_from_counts(acc_pos.tolist(), drafts, dft_pos.tolist())
    out = Imported(
        k=k,
        per_position=[round(x, 6) for x in per],
        num_drafts=drafts,
        num_draft_tokens=draft_tokens,
        num_accepted_tokens=accepted,
        trajectories=trajectories,
        per_request=per_request,
        match_probability=round(drafts / (drafts + undrafted), 6) if undrafted else None,
    )
    out.notes.append(
        f"{len(trajectories)} per-request trajectories; a_i pooled over the {drafts} drafting "
        "steps (a_i = accepted_i / min(accepted_(i-1), drafted_i))"
    )
    if undrafted:
        out.notes.append(
            f"{undrafted} decode steps drafted nothing (match probability "
            f"{out.match_probability:.3f})"
        )
    return out


def vllm_trajectory(
    spec_decode: dict[str, Any], output_tokens: int, prompt_tokens: int | None = None
) -> Trajectory:
    """One request's ``steps`` trajectory from vLLM's per-request spec-decode metrics
    (``RequestOutput.outputs[0].spec_decode_metrics.to_dict()`` offline, or the response's
    ``metrics.speculative_decoding``, with ``--per-request-spec-decode-metrics detailed``)
    and the tokens the request generated — for engine adapters.

    Raises:
        InputError: no per-step arrays, or a record that breaks the trajectory contract.
    """
    k = spec_decode.get("num_spec_tokens")
    if not isinstance(k, int) or k < 1 or not spec_decode.get("per_step_accepted"):
        raise InputError(
            "needs num_spec_tokens and per_step_accepted (--per-request-spec-decode-metrics "
            "detailed)",
            field="speculative_decoding",
        )
    return _steps(
        spec_decode["per_step_accepted"],
        spec_decode.get("per_step_drafted"),
        k,
        output_tokens,
        prompt_tokens,
        "",
        "speculative_decoding",
        "per_step_accepted",
        "per_step_drafted",
    )


def to_profile(
    got: Imported,
    *,
    target: str,
    drafter: str,
    drafter_kind: str,
    dataset: str,
    temperature: float,
    how: str,
) -> AcceptanceProfile:
    """An acceptance profile of what was read: the pooled vectors, the per-request spread,
    the match probability and the trajectories."""
    per_request = got.per_request or None
    spread = 0.0
    if per_request and len(per_request) > 1:
        spread = round(min(float(np.std(per_request, ddof=1)), 0.5), 4)
    return AcceptanceProfile(
        schema="spectune/acceptance/v1",
        target=target,
        drafter=drafter,
        drafter_kind=drafter_kind,
        dataset=dataset,
        temperature=temperature,
        acceptance=AcceptanceSpec(
            per_position=[round(x, 6) for x in got.per_position],
            spread=spread,
            per_request=per_request,
            match_probability=got.match_probability,
            trajectories=got.trajectories or None,
        ),
        counts=AcceptanceCounts(
            num_requests=len(got.trajectories),
            num_steps=got.num_drafts,
            num_draft_tokens=got.num_draft_tokens,
            num_accepted_tokens=got.num_accepted_tokens,
        ),
        provenance=Provenance(kind="measured", how=how),
    )
