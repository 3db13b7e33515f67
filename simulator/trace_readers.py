"""Workload files: the Azure CSV, lengths-only CSV, JSONL, JSON records and ShareGPT
conversations, read into one :class:`TraceArrays` (docs/workloads.md shows each format).

- **CSV** (``.csv``): a header row; lengths from ``ContextTokens`` / ``GeneratedTokens``
  (the Azure LLM trace) or ``prompt_tokens`` / ``output_tokens`` (also ``input_tokens``,
  ``completion_tokens``); an optional timestamp column (``TIMESTAMP``, ``timestamp``,
  ``time``, ``arrival_time``, each optionally with a unit suffix ``_s``/``_ms``/``_us``/
  ``_ns``). Without one the trace is lengths-only and arrivals come from the scenario.
- **JSONL** (``.jsonl``): one object per line with ``prompt_tokens``, ``output_tokens`` and
  optionally ``timestamp``; or text in ``prompt`` and ``output`` (``completion``,
  ``response``), counted with the workload's tokenizer; or a ShareGPT record.
- **JSON** (``.json``): an array of such objects, e.g. a ShareGPT dump: ``conversations``
  of ``{"from": "human"|"gpt", "value": text}`` (or ``messages`` of ``{"role", "content"}``);
  the first user turn is the prompt and the reply after it the output, as vLLM's
  benchmark reads ShareGPT. Records without such a pair are skipped and counted.

Timestamps (:func:`timestamps_s`): ISO 8601 text, or numbers in a unit that is declared
(``workload.timestamp_unit``, or the column name's suffix) or detected: numbers >= 1e8 are
Unix epoch times whose magnitude gives the unit, smaller ones seconds. Every number must be
finite; token counts are rounded to whole tokens. Times come back in seconds relative to
the first row, lengths in tokens.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .loading import check_input_file, read_text_file
from .schema_base import MAX_REQUESTS, MAX_TOKENS

MAX_ROWS = 10 * MAX_REQUESTS  # rows parsed from one file (num_requests takes the first N)
TIME_NAMES = ("timestamp", "time", "arrival_time", "arrival")
PROMPT_NAMES = ("contexttokens", "prompt_tokens", "input_tokens", "prompt_len", "input_len")
OUTPUT_NAMES = (
    "generatedtokens",
    "output_tokens",
    "completion_tokens",
    "output_len",
    "generated_tokens",
)
PROMPT_TEXT = ("prompt", "input")
OUTPUT_TEXT = ("output", "completion", "response")
USER_ROLES = ("human", "user")
REPLY_ROLES = ("gpt", "assistant", "chatgpt", "bard", "model", "bing")
UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
APPROX_CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class TraceOptions:
    """How to read a workload file (the scenario's ``workload`` fields of the same names)."""

    format: str = "auto"  # auto | csv | jsonl | json
    timestamp_unit: str = "auto"  # auto | s | ms | us | ns | datetime
    tokenizer: str | Path | None = None  # bytes | approx | a tokenizer.json path


@dataclass(frozen=True)
class TraceArrays:
    """One parsed trace file (all rows, file order)."""

    time_s: np.ndarray | None  # float64 [rows], seconds since the first row; None: no times
    prompt_tokens: np.ndarray  # int64 [rows]
    output_tokens: np.ndarray  # int64 [rows]
    warnings: tuple[str, ...] = ()


def read_trace_file(path: Path, opts: TraceOptions) -> TraceArrays:
    """Parse one workload file (module docstring).

    Raises:
        InputError: one line naming the file, the row and the field.
    """
    text = read_text_file(path)
    if text.count("\n") > MAX_ROWS:
        raise InputError(f"more than {MAX_ROWS:,} rows; at most that many are read", source=path)
    fmt = opts.format if opts.format != "auto" else _detect(path, text)
    if fmt == "csv":
        return _from_csv(text, path, opts)
    records = _jsonl_records(text, path) if fmt == "jsonl" else _json_records(text, path)
    return _from_records(records, path, opts)


def _detect(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    head = text.lstrip()[:1]
    return {"[": "json", "{": "jsonl"}.get(head, "csv")


# --------------------------------------------------------------------------- CSV


def _column(header: Sequence[str], names: Sequence[str]) -> int | None:
    low = [h.strip().lower() for h in header]
    for n in names:
        if n in low:
            return low.index(n)
    return None


def _time_column(header: Sequence[str]) -> tuple[int, str | None] | None:
    """The timestamp column and the unit its name declares (``arrival_ms`` -> ms)."""
    for i, h in enumerate(header):
        name = h.strip().lower()
        m = re.fullmatch(r"(.+?)_(s|ms|us|ns)", name)
        if m and m.group(1) in TIME_NAMES:
            return i, m.group(2)
        if name in TIME_NAMES:
            return i, None
    return None


def _from_csv(text: str, path: Path, opts: TraceOptions) -> TraceArrays:
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise InputError("trace is empty", source=path)
    header = [h.strip() for h in rows[0]]
    cp, co = _column(header, PROMPT_NAMES), _column(header, OUTPUT_NAMES)
    if cp is None or co is None:
        missing = " and ".join(
            n for n, c in (("ContextTokens", cp), ("GeneratedTokens", co)) if c is None
        )
        raise InputError(
            f"trace needs a prompt-length and an output-length column; missing {missing} (or "
            f"prompt_tokens / output_tokens); header has {', '.join(header)}",
            source=path,
        )
    body = rows[1:]
    if not body:
        raise InputError("trace has a header but no rows", source=path)
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise InputError(
                f"line {i + 2}: expected {len(header)} fields, got {len(r)}", source=path
            )
    prompt = _tokens([r[cp] for r in body], header[cp], path, lambda i: f"line {i + 2}")
    output = _tokens([r[co] for r in body], header[co], path, lambda i: f"line {i + 2}")
    tc = _time_column(header)
    times, warns = None, []
    if tc is not None:
        col, named_unit = tc
        unit = opts.timestamp_unit if opts.timestamp_unit != "auto" else (named_unit or "auto")
        times, warns = timestamps_s(
            [r[col].strip() for r in body], unit, path, header[col], lambda i: f"line {i + 2}"
        )
    return TraceArrays(times, prompt, output, tuple(warns))


def _tokens(
    values: Sequence[Any], name: str, path: Path, where: Callable[[int], str]
) -> np.ndarray:
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        x = _number(v)
        if x is None or not math.isfinite(x):
            raise InputError(
                f"{where(i)}: {name} must be a number (finite, in tokens), got {v!r}", source=path
            )
        if x > MAX_TOKENS:
            raise InputError(
                f"{where(i)}: {name} must be <= {MAX_TOKENS:,} tokens, got {v!r}", source=path
            )
        out[i] = round(x)
    return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- timestamps


def timestamps_s(
    values: Sequence[Any],
    unit: str,
    path: Path,
    name: str,
    where: Callable[[int], str],
) -> tuple[np.ndarray, list[str]]:
    """Timestamps as seconds since the first row, and any warning about the unit.

    Args:
        values: raw values (numbers, numeric text or ISO 8601 date-times).
        unit: ``auto``, ``s``, ``ms``, ``us``, ``ns`` or ``datetime``.
        path: the file (for errors).
        name: the column or key (for errors).
        where: row index -> ``line N`` / ``item N``.

    Raises:
        InputError: a value that does not parse in the unit, or is not finite.
    """
    nums = [_number(v) for v in values]
    numeric = all(x is not None for x in nums)
    if unit == "datetime" or (unit == "auto" and not numeric):
        return _datetimes(values, path, name, where), []
    bad = next((i for i, x in enumerate(nums) if x is None or not math.isfinite(x)), None)
    if bad is not None:
        raise InputError(
            f"{where(bad)}: {name} must be a finite number ({unit if unit != 'auto' else 'a'} "
            f"timestamp) or an ISO 8601 date-time, got {values[bad]!r}",
            source=path,
        )
    t = np.array(nums, dtype=np.float64)
    warns: list[str] = []
    if unit == "auto":
        top = float(np.max(np.abs(t))) if t.size else 0.0
        if top >= 1e17:
            unit = "ns"
        elif top >= 1e14:
            unit = "us"
        elif top >= 1e11:
            unit = "ms"
        else:
            unit = "s"
            gaps = np.diff(np.sort(t))
            gaps = gaps[gaps > 0]
            if top < 1e8 and gaps.size and np.all(t == np.rint(t)) and np.median(gaps) >= 10:
                warns.append(
                    f"{name}: whole-number timestamps read as seconds (median gap "
                    f"{np.median(gaps):g} s); if they are milliseconds, set "
                    "workload.timestamp_unit: ms"
                )
    rel = (t - t[0]) * UNIT_S[unit] if t.size else t
    return rel, warns


def _datetimes(
    values: Sequence[Any], path: Path, name: str, where: Callable[[int], str]
) -> np.ndarray:
    text = [str(v).strip() for v in values]
    for i, s in enumerate(text):
        if _number(s) is not None:  # numpy would read "1700000000" as that year
            raise InputError(
                f"{where(i)}: {name} is a number, {s!r}, but timestamp_unit is datetime",
                source=path,
            )
    try:
        with warnings.catch_warnings():
            # numpy warns on (and drops) a time-zone offset: fromisoformat below keeps it
            warnings.simplefilter("error")
            stamps = np.array(text, dtype="datetime64[ns]")
        if not np.isnat(stamps).any():
            return (stamps - stamps[0]).astype(np.int64).astype(np.float64) * 1e-9
    except (ValueError, OverflowError, UserWarning, DeprecationWarning):
        pass
    secs = np.empty(len(text))
    for i, s in enumerate(text):
        try:
            d = datetime.fromisoformat(s)
        except ValueError:
            raise InputError(
                f"{where(i)}: {name} does not parse as an ISO 8601 date-time or a number: {s!r}",
                source=path,
            ) from None
        secs[i] = (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()
    return secs - secs[0]


# --------------------------------------------------------------------------- JSON


def _jsonl_records(text: str, path: Path) -> list[tuple[str, Any]]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_constant=_no_constant)
        except ValueError as e:
            raise InputError(f"line {n}: not valid JSON ({e})", source=path) from None
        out.append((f"line {n}", obj))
    return out


def _json_records(text: str, path: Path) -> list[tuple[str, Any]]:
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        raise InputError(f"not valid JSON ({e})", source=path) from None
    except RecursionError:
        raise InputError("JSON nested too deeply", source=path) from None
    if not isinstance(data, list):
        raise InputError("a JSON workload must be an array of records", source=path)
    return [(f"item {i}", obj) for i, obj in enumerate(data)]


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _from_records(records: list[tuple[str, Any]], path: Path, opts: TraceOptions) -> TraceArrays:
    if not records:
        raise InputError("trace has no records", source=path)
    prompt_n: list[Any] = []  # an int count, or text to tokenize
    output_n: list[Any] = []
    stamps: list[Any] = []
    where: list[str] = []
    skipped = 0
    time_key: str | None = None
    for label, obj in records:
        if not isinstance(obj, dict):
            raise InputError(f"{label}: must be a JSON object", source=path)
        pair = _conversation(obj, label, path)
        if pair is False:
            skipped += 1
            continue
        if pair is not None:
            p, o = pair
        else:
            p = _length_or_text(obj, "prompt_tokens", PROMPT_TEXT, label, path)
            o = _length_or_text(obj, "output_tokens", OUTPUT_TEXT, label, path)
        key = next((k for k in obj if _is_time_key(k)), None)
        if where and (key is None) != (time_key is None):
            raise InputError(
                f"{label}: {'no timestamp' if key is None else 'a timestamp'}, unlike "
                f"{where[0]}: give every record one or none",
                source=path,
            )
        time_key = key
        prompt_n.append(p)
        output_n.append(o)
        stamps.append(obj.get(key) if key else None)
        where.append(label)
    if not where:
        raise InputError(
            f"no usable record ({skipped} conversations without a user turn and a reply)",
            source=path,
        )
    warns: list[str] = []
    counter = _counter(opts, [*prompt_n, *output_n], warns)
    prompt = _tokens([counter(x) for x in prompt_n], "prompt_tokens", path, lambda i: where[i])
    output = _tokens([counter(x) for x in output_n], "output_tokens", path, lambda i: where[i])
    times = None
    if time_key is not None:
        m = re.fullmatch(r".+?_(s|ms|us|ns)", time_key.lower())
        unit = (
            opts.timestamp_unit if opts.timestamp_unit != "auto" else (m.group(1) if m else "auto")
        )
        times, tw = timestamps_s(stamps, unit, path, time_key, lambda i: where[i])
        warns += tw
    if skipped:
        warns.append(f"{skipped} conversation(s) without a user turn and a reply skipped")
    return TraceArrays(times, prompt, output, tuple(warns))


def _is_time_key(key: str) -> bool:
    k = key.lower()
    m = re.fullmatch(r"(.+?)_(s|ms|us|ns)", k)
    return k in TIME_NAMES or (m is not None and m.group(1) in TIME_NAMES)


def _length_or_text(
    obj: dict[str, Any], count_key: str, text_keys: Sequence[str], label: str, path: Path
) -> Any:
    if count_key in obj:
        return obj[count_key]
    for k in text_keys:
        if isinstance(obj.get(k), str):
            return _Text(obj[k])
    raise InputError(
        f"{label}: needs {count_key} (a number) or text in {' / '.join(text_keys)}; has "
        f"{', '.join(obj) or 'no keys'}",
        source=path,
    )


class _Text(str):
    """Text whose length in tokens is counted by the workload's tokenizer."""


def _conversation(obj: dict[str, Any], label: str, path: Path) -> tuple[_Text, _Text] | bool | None:
    """(prompt, reply) of a ShareGPT record, False if it has no such pair, None if the
    record is not a conversation."""
    turns = obj.get("conversations", obj.get("messages"))
    if turns is None:
        return None
    if not isinstance(turns, list):
        raise InputError(f"{label}: conversations must be a list of turns", source=path)
    prompt = None
    for turn in turns:
        if not isinstance(turn, dict):
            raise InputError(f"{label}: each turn must be an object", source=path)
        role = str(turn.get("from", turn.get("role", ""))).lower()
        text = turn.get("value", turn.get("content"))
        if not isinstance(text, str):
            continue
        if prompt is None and role in USER_ROLES:
            prompt = text
        elif prompt is not None and role in REPLY_ROLES:
            return _Text(prompt), _Text(text)
    return False


# --------------------------------------------------------------------------- tokenizers


def _counter(opts: TraceOptions, values: list[Any], warns: list[str]) -> Callable[[Any], Any]:
    """A function from a count or a text to a token count, for the workload's tokenizer."""
    texts = [v for v in values if isinstance(v, _Text)]
    if not texts:
        return lambda v: v
    tok = opts.tokenizer
    if tok == "bytes":
        return lambda v: len(v.encode("utf-8")) if isinstance(v, _Text) else v
    if tok is None or tok == "approx":
        if tok is None:
            warns.append(
                f"token counts of the trace's text approximated as ceil(characters / "
                f"{APPROX_CHARS_PER_TOKEN}) (no workload.tokenizer; give a tokenizer.json "
                "for exact counts)"
            )
        return lambda v: (
            max(1, math.ceil(len(v) / APPROX_CHARS_PER_TOKEN)) if isinstance(v, _Text) else v
        )
    counts = dict(zip(texts, hf_token_counts(Path(tok), texts), strict=True))
    return lambda v: counts[v] if isinstance(v, _Text) else v


def hf_token_counts(path: Path, texts: list[str]) -> list[int]:
    """Token counts of ``texts`` with a Hugging Face ``tokenizer.json`` (no special tokens).

    Raises:
        InputError: the ``tokenizers`` package is missing or the file is not a tokenizer.
    """
    check_input_file(path, source=path, field="workload.tokenizer")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise InputError(
            "reading a tokenizer.json needs the 'tokenizers' package: pip install "
            "'spectune[text]' (or use tokenizer: bytes / approx)",
            source=path,
            field="workload.tokenizer",
        ) from None
    try:
        tk = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust library raises plain Exceptions for any bad file
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise InputError(
            f"not a Hugging Face tokenizer.json ({reason})", source=path, field="workload.tokenizer"
        ) from None
    unique = list(dict.fromkeys(texts))
    enc = tk.encode_batch(unique, add_special_tokens=False)
    by_text = {t: len(e.ids) for t, e in zip(unique, enc, strict=True)}
    return [by_text[t] for t in texts]
