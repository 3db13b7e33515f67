"""Reading and validating spectune's YAML files: one-line errors, ``--set`` overrides, paths.

Every failure becomes one :class:`~spectune.simulator.errors.InputError` line naming the
file (or ``--set``), the dotted field and what is wrong, e.g.
``scenario.yaml: serving.max_num_seqs: must be > 0, got -3``. The data models themselves
live in :mod:`.schema`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import InputError


def _fmt_loc(loc: tuple[Any, ...], data: Any) -> str:
    """Dotted path of an error location, without pydantic's union-member tags.

    A loc item is kept when it is a real key or index of the input at that depth (or the
    last item, e.g. a missing or unknown field); anything else is a union tag like
    ``constrained-int`` or ``literal['auto']``.
    """
    parts: list[str] = []
    node = data
    for i, item in enumerate(loc):
        in_dict = isinstance(node, dict) and item in node
        in_list = isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node)
        if in_dict or in_list:
            node = node[item]
        elif i == len(loc) - 1 and isinstance(node, dict) and isinstance(item, str):
            pass  # a missing field
        else:
            continue
        parts.append(str(item))
    return ".".join(parts).replace("schema_", "schema") or "(top level)"


_PHRASES = (
    ("Input should be ", "must be "),
    ("greater than or equal to", ">="),
    ("greater than", ">"),
    ("less than or equal to", "<="),
    ("less than", "<"),
    ("a valid number, unable to parse string as a number", "a number"),
    ("a valid integer, unable to parse string as an integer", "an integer"),
)


def validation_error_line(err: ValidationError, data: Any = None) -> tuple[str, str]:
    """The first error of a pydantic ValidationError as (dotted field, message).

    Model validators that check one field among several name it by starting their message
    with ``@field.path: `` (relative to the model being validated).
    """
    first = err.errors()[0]
    loc = _fmt_loc(tuple(first.get("loc", ())), data)
    msg = first.get("msg", "invalid").removeprefix("Value error, ")
    if msg.startswith("@") and ": " in msg:
        rel, msg = msg[1:].split(": ", 1)
        loc = rel if loc == "(top level)" else f"{loc}.{rel}"
    if first.get("type") == "missing":
        msg = "is required"
    elif first.get("type") == "extra_forbidden":
        msg = "is not a known field"
    elif "input" in first and first.get("type") not in ("value_error",):
        for a, b in _PHRASES:
            msg = msg.replace(a, b)
        bad = first["input"]
        if not isinstance(bad, dict | list):
            msg = f"{msg}, got {bad!r}"
    return loc, msg


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, failing with one line if the file is missing or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found" if not p.exists() else "not a file", source=p)
    try:
        # libyaml's loader when present: ~7x faster on large latency profiles
        data = yaml.load(p.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InputError(f"{where}not valid YAML ({getattr(e, 'problem', e)})", source=p) from None
    except UnicodeDecodeError:
        raise InputError("not a text file", source=p) from None
    if not isinstance(data, dict):
        raise InputError("must be a YAML mapping", source=p)
    return data


def validate_model(cls: type[BaseModel], data: dict[str, Any], source: str | Path) -> Any:
    """Build ``cls`` from ``data``; a failure becomes one InputError naming source and field."""
    expected = None
    if "schema_" in cls.model_fields:
        expected = cls.model_fields["schema_"].annotation.__args__[0]  # type: ignore[union-attr]
    if expected is not None:
        got = data.get("schema")
        if got is None:
            raise InputError(f"is required (expected '{expected}')", source=source, field="schema")
        if got != expected:
            raise InputError(f"expected '{expected}', got {got!r}", source=source, field="schema")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        field, msg = validation_error_line(e, data)
        raise InputError(msg, source=source, field=field) from None


def dump_yaml(model: BaseModel, path: str | Path) -> None:
    """Write a model as YAML (by alias, so ``schema`` comes first), creating parent dirs."""
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, width=100))
    tmp.replace(p)


# --------------------------------------------------------------------------- overrides


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set dotted.key=value`` overrides to raw scenario data (a deep copy).

    Values parse as YAML scalars/flow collections (``4``, ``0.5``, ``none``, ``[1, 2]``,
    ``{a: 1}``). Integer segments index lists (``drafters.0.kind``). Unknown keys are left
    to validation, which names them; a path through a scalar or past a list's end fails here.
    """
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise InputError(f"expected dotted.key=value, got {item!r}", source="--set")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and value.lower() == "none" and not key.endswith("drafter"):
            value = None
        parts = key.split(".")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise InputError(
                        f"no list item {part!r} (list has {len(node)} items)",
                        source="--set",
                        field=where,
                    )
                idx = int(part)
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise InputError(
                    f"cannot set inside a {type(node).__name__}", source="--set", field=where
                )
    return out


# --------------------------------------------------------------------------- paths


def resolve_path(path: Path, base_dir: Path, source: str | Path, field: str) -> Path:
    """Resolve a relative path against the file's folder, then the working directory."""
    candidates = [path] if path.is_absolute() else [base_dir / path, Path.cwd() / path]
    for c in candidates:
        if c.exists():
            return c.resolve()
    raise InputError(f"file not found: {path}", source=source, field=field)
