"""The scenario reference (docs/scenario-reference.md), generated from the pydantic schema.

Every field of :class:`~spectune.simulator.schema.Scenario` and the models under it, with
its type, default, bounds and description (the field's docstring in the schema). A test
regenerates the page and compares it with the file, so the page cannot go stale::

    python -m spectune.simulator.reference > docs/scenario-reference.md
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .schema import Scenario

HEADER = """\
# Scenario reference (`spectune/scenario/v1`)

Generated from the schema (`simulator/schema.py`, `simulator/workload_schema.py`) by
`python -m spectune.simulator.reference`; `tests/simulator/test_reference.py` fails when
this page and the schema differ. Every float must be finite. Relative paths resolve against
the scenario file's folder first, then the working directory. Any field can be overridden
on the command line with `--set dotted.key=value`, validated like the file. Workload file
formats: [workloads.md](workloads.md).
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
        return {"str": "string", "int": "integer", "float": "number", "PosixPath": "path",
                "Path": "path"}.get(annotation.__name__, annotation.__name__)  # fmt: skip
    return str(annotation)


def _bounds(annotation: Any, info: FieldInfo) -> str:
    found: list[str] = []

    def walk(a: Any, meta: list[Any]) -> None:
        for m in meta:
            if isinstance(m, FieldInfo):  # Annotated[..., Field(...)] inside a union
                walk(None, m.metadata)
                continue
            for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="),
                             ("min_length", "length >="), ("max_length", "length <=")):  # fmt: skip
                v = getattr(m, attr, None)
                if v is not None:
                    found.append(f"{op} {v:,}" if isinstance(v, int) else f"{op} {v:g}")
        origin = typing.get_origin(a)
        if origin is typing.Annotated:
            inner, *more = typing.get_args(a)
            walk(inner, more)
        elif origin in (typing.Union, types.UnionType, list):
            for arg in typing.get_args(a):
                walk(arg, [])

    walk(annotation, list(info.metadata))
    return ", ".join(dict.fromkeys(found))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    factory = info.default_factory
    value = factory() if factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(defaults)"
    return f"`{value}`" if value is not None else "-"


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model inside an annotation (each member of a union, list and dict
    items), in order."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _submodels(args[0])
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        return [m for a in args for m in _submodels(a)]
    return []


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    order: list[type[BaseModel]] = []

    def visit(m: type[BaseModel]) -> None:
        if m in order:
            return
        order.append(m)
        for f in m.model_fields.values():
            for sub in _submodels(f.annotation):
                visit(sub)

    visit(root)
    return order


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def scenario_reference() -> str:
    """The reference page's Markdown."""
    out = [HEADER]
    paths = {Scenario: ""}
    for m in _models(Scenario):
        for name, f in m.model_fields.items():
            for sub in _submodels(f.annotation):
                if sub not in paths:
                    key = f.alias or name
                    paths[sub] = f"{paths[m]}.{key}" if paths[m] else key
    for m in _models(Scenario):
        where = paths.get(m, "")
        title = f"{m.__name__}" + (f" (`{where}`)" if where else " (top level)")
        out += [f"## {title}", "", _one_line(m.__doc__), ""]
        out += ["| field | type | default | bounds | description |", "|---|---|---|---|---|"]
        for name, f in m.model_fields.items():
            out.append(
                f"| `{f.alias or name}` | {_type_name(f.annotation)} | {_default(f)} | "
                f"{_bounds(f.annotation, f)} | {_one_line(f.description)} |"
            )
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(scenario_reference(), end="")
