"""Reading and validating spectune's YAML files: one-line errors, ``--set`` overrides, paths.

Every failure becomes one :class:`~spectune.simulator.errors.InputError` line naming the
file (or ``--set``), the dotted field and what is wrong, e.g.
``scenario.yaml: serving.max_num_seqs: must be > 0, got -3``. The data models themselves
live in :mod:`.schema`.
"""

from __future__ import annotations

import difflib
import os
import stat
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import InputError

# Input files larger than this are refused before they are read (a YAML profile is a few
# hundred KiB; the Azure traces are ~1 MiB): memory stays sane whatever a path points at.
MAX_YAML_BYTES = 64 * 1024**2
MAX_DATA_BYTES = 1024**3


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


def validation_error_line(
    err: ValidationError, data: Any = None, model: type[BaseModel] | None = None
) -> tuple[str, str]:
    """The first error of a pydantic ValidationError as (dotted field, message).

    Model validators that check one field among several name it by starting their message
    with ``@field.path: `` (relative to the model being validated). An unknown field, when
    ``model`` is given, lists the valid ones with the nearest name first.
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
        if model is not None:
            msg += _field_hint(model, loc)
    elif "input" in first and first.get("type") not in ("value_error",):
        for a, b in _PHRASES:
            msg = msg.replace(a, b)
        bad = first["input"]
        if not isinstance(bad, dict | list):
            msg = f"{msg}, got {bad!r}"
    return loc, msg


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _os_error(e: OSError, where: str, src: str | Path, field: str | None) -> InputError:
    """One line for a failed stat or read."""
    if isinstance(e, FileNotFoundError):
        what = "file not found"
    elif isinstance(e, PermissionError):
        what = "permission denied"
    else:
        what = f"cannot read ({e.strerror})"
    return InputError(f"{where}{what}", source=src, field=field)


def check_input_file(
    path: str | Path,
    source: str | Path | None = None,
    field: str | None = None,
    max_bytes: int = MAX_DATA_BYTES,
) -> Path:
    """A path that names a readable regular file of at most ``max_bytes``, or an InputError.

    Special files are refused before anything opens them (a FIFO would block the read
    forever; a device has no end), and so are folders and files past the size bound.

    Args:
        path: the file.
        source: what to name in the error (default: the path itself).
        field: the dotted field or flag that named the file, if any.
        max_bytes: the size bound.

    Raises:
        InputError: one line naming the file, the field and what is wrong.
    """
    p = Path(path)
    src = source if source is not None else p
    where = f"{p}: " if source is not None else ""
    try:
        st = p.stat()
    except OSError as e:
        raise _os_error(e, where, src, field) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{where}is a folder, not a file", source=src, field=field)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"{where}is {_kind_of(st.st_mode)}; give a regular file", source=src, field=field
        )
    if st.st_size > max_bytes:
        raise InputError(
            f"{where}is {st.st_size / 1024**2:,.0f} MiB; at most {max_bytes / 1024**2:,.0f} MiB "
            "is read",
            source=src,
            field=field,
        )
    if not os.access(p, os.R_OK):
        raise InputError(f"{where}permission denied", source=src, field=field)
    return p


def read_text_file(
    path: str | Path,
    source: str | Path | None = None,
    field: str | None = None,
    max_bytes: int = MAX_DATA_BYTES,
) -> str:
    """The UTF-8 text of a regular file (:func:`check_input_file`), or an InputError."""
    p = check_input_file(path, source, field, max_bytes)
    src = source if source is not None else p
    where = f"{p}: " if source is not None else ""
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise _os_error(e, where, src, field) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{where}not a UTF-8 text file (byte {e.start})", source=src, field=field
        ) from None


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe YAML (libyaml's parser when present: ~7x faster on large latency profiles)
    that refuses a key given twice in one mapping: plain YAML keeps the last one silently."""


def _no_duplicates(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor names it
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {first + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    lambda loader, node: _no_duplicates(loader, node, deep=True),
)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _submodel(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            found = _submodel(arg)
            if found is not None:
                return found
    return None


def field_names(model: type[BaseModel]) -> list[str]:
    """A model's field names as they are written in a file (aliases: ``schema``)."""
    return [f.alias or name for name, f in model.model_fields.items()]


def _field_hint(model: type[BaseModel], loc: str) -> str:
    """``; did you mean 'workload.arrival.rate_per_s'? valid fields of workload: ...``.

    The nearest name is searched among the fields of the model the unknown key sits in and
    one level below them (``workload.rate`` -> ``workload.arrival.rate_per_s``).
    """
    parts = [p for p in loc.split(".") if not p.isdigit()]
    if not parts:
        return ""
    parent: type[BaseModel] | None = model
    for name in parts[:-1]:
        field = parent.model_fields.get(name) if parent is not None else None
        if field is None:
            field = next(
                (f for f in (parent.model_fields.values() if parent else ()) if f.alias == name),
                None,
            )
        parent = _submodel(field.annotation) if field is not None else None
        if parent is None:
            return ""
    bad = parts[-1]
    prefix = ".".join(loc.split(".")[:-1])
    names = field_names(parent)
    candidates = {n: n for n in names}
    for name, f in parent.model_fields.items():
        sub = _submodel(f.annotation)
        for child in field_names(sub) if sub is not None else ():
            candidates[f"{f.alias or name}.{child}"] = child

    def score(full: str) -> float:
        leaf = candidates[full]
        s = difflib.SequenceMatcher(None, bad.lower(), leaf.lower()).ratio()
        return max(s, 0.8) if bad.lower() in leaf.lower() or leaf.lower() in bad.lower() else s

    best = max(candidates, key=score)
    hint = ""
    if score(best) >= 0.6:
        hint = f"; did you mean '{prefix + '.' if prefix else ''}{best}'?"
    where = f" of {prefix}" if prefix else ""
    return f"{hint} (valid fields{where}: {', '.join(names)})"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, failing with one line if the file is missing, not a regular
    file, too large, not text, not YAML, has a key twice or is not a mapping."""
    p = Path(path)
    text = read_text_file(p, max_bytes=MAX_YAML_BYTES)
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        what = problem if problem.startswith("duplicate key") else f"not valid YAML ({problem})"
        raise InputError(f"{where}{what}", source=p) from None
    except RecursionError:
        raise InputError("YAML nested too deeply", source=p) from None
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
        field, msg = validation_error_line(e, data, cls)
        raise InputError(msg, source=source, field=field) from None


class _Dumper(yaml.SafeDumper):
    """Lists of scalars in flow style (``[3, 0, 8]``): an acceptance trajectory holds
    thousands of small integers, one per line in block style."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, dict | list) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump_yaml(model: BaseModel, path: str | Path) -> None:
    """Write a model as YAML (by alias, so ``schema`` comes first), creating parent dirs."""
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100))
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
