"""The layout's promises, checked on the source (ast only: no package is imported).

- Imports flow one way: simulator <- tuner <- application; simulator <- profiler <-
  validation <- application; tuner <- validation. Inside the profiler: runtime <- native <-
  measure, runtime <- demo, live <- engines <- measure, and ``live`` (the requests, results
  and engine contract every live engine shares) needs only the simulator.
- simulator/ and tuner/ import no torch and no engine package.
- No import cycle anywhere (every import counts, also those inside functions).
- pyproject.toml lists every package folder, so a wheel ships them all.

``python tests/test_layout.py`` prints the import graph's depth (longest chain of module
imports) and its largest cycle.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Source folder -> the import package it is mapped to (pyproject.toml's package-dir).
FOLDERS = {
    "simulator": "spectune.simulator",
    "tuner": "spectune.tuner",
    "profiler": "spectune.profiler",
    "validation": "spectune.validation",
    "spectune": "spectune",
}
# Who may import whom, by layer (a module's layer is the longest prefix listed here).
ALLOWED = {
    "spectune.simulator": {"spectune.simulator"},
    "spectune.tuner": {"spectune.simulator", "spectune.tuner"},
    "spectune.profiler.live": {"spectune.simulator"},
    "spectune.profiler.runtime": {"spectune.simulator", "spectune.profiler.runtime"},
    "spectune.profiler.native": {
        "spectune.simulator",
        "spectune.profiler.runtime",
        "spectune.profiler.live",
        "spectune.profiler.native",
    },
    "spectune.profiler.engines": {
        "spectune.simulator",
        "spectune.profiler.runtime",
        "spectune.profiler.live",
        "spectune.profiler.engines",
    },
    # The engine-aware profilers (measure/engine_*) drive live engines with workloads.
    "spectune.profiler.measure": {
        "spectune.simulator",
        "spectune.profiler.runtime",
        "spectune.profiler.live",
        "spectune.profiler.native",
        "spectune.profiler.engines",
        "spectune.profiler.measure",
    },
    "spectune.profiler.demo": {
        "spectune.simulator",
        "spectune.profiler.runtime",
        "spectune.profiler.demo",
    },
    "spectune.profiler": {"spectune.simulator", "spectune.profiler"},
    "spectune.validation": {
        "spectune.simulator",
        "spectune.tuner",
        "spectune.profiler",
        "spectune.validation",
    },
    "spectune": {"spectune"},  # the application: everything
}
NO_TORCH = ("spectune.simulator", "spectune.tuner")
HEAVY = {"torch", "vllm", "sglang", "tensorrt_llm", "transformers", "safetensors"}


def modules(repo: Path = REPO, folders: dict[str, str] = FOLDERS) -> dict[str, Path]:
    """Every module's dotted name -> its file."""
    out = {}
    for folder, pkg in folders.items():
        for path in sorted((repo / folder).rglob("*.py")):
            parts = list(path.relative_to(repo / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([pkg, *parts])] = path
    return out


def _imported(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of every import in a module, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            yield base, node.lineno
            for alias in node.names:  # `from pkg import module`
                yield f"{base}.{alias.name}", node.lineno


def import_graph(mods: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported spectune module: line}; third-party imports under their top name."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        edges: dict[str, int] = {}
        for target, line in _imported(name, path):
            if target in mods:
                if target != name:
                    edges.setdefault(target, line)
            elif not target.startswith("spectune"):
                edges.setdefault(target.split(".")[0], line)
        graph[name] = edges
    return graph


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer(module: str) -> str:
    return max((k for k in ALLOWED if _within(module, k)), key=len)


def may_import(module: str, target: str) -> bool:
    """Whether ``module`` may import the spectune module ``target``. The root package
    (``spectune/__init__.py``: the version, nothing imported) is open to every layer."""
    if target == "spectune" or layer(module) == "spectune":
        return True
    return any(_within(target, p) for p in ALLOWED[layer(module)])


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def longest_chain(graph: dict[str, dict[str, int]]) -> list[str]:
    """The longest chain of imports between spectune modules (a module visited once)."""
    memo: dict[str, list[str]] = {}

    def chain(v: str, seen: frozenset[str]) -> list[str]:
        if v in memo:
            return memo[v]
        best: list[str] = []
        for w in graph[v]:
            if w in graph and w not in seen:
                sub = chain(w, seen | {w})
                best = sub if len(sub) > len(best) else best
        memo[v] = [v, *best]
        return memo[v]

    return max((chain(v, frozenset({v})) for v in graph), key=len, default=[])


GRAPH = import_graph(modules())


def test_imports_follow_the_layers():
    bad = [
        f"{GRAPH_FILES[mod]}:{line} imports {target}"
        for mod, edges in GRAPH.items()
        for target, line in edges.items()
        if target in GRAPH and not may_import(mod, target)
    ]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_simulator_and_tuner_import_no_torch_or_engine():
    bad = [
        f"{GRAPH_FILES[mod]}:{line} imports {target}"
        for mod, edges in GRAPH.items()
        if mod.startswith(NO_TORCH)
        for target, line in edges.items()
        if target in HEAVY
    ]
    assert not bad, "\n".join(bad)


def test_root_package_imports_nothing():
    assert [t for t in GRAPH["spectune"] if t.startswith("spectune")] == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_pyproject_lists_every_package():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {m for m, p in GRAPH_FILES.items() if p.name == "__init__.py"}
    assert listed == found


def test_checker_sees_a_cycle_and_a_wrong_way_import(tmp_path):
    # The checks above must be able to fail: a tiny tree with both faults.
    (tmp_path / "simulator").mkdir()
    (tmp_path / "simulator" / "__init__.py").write_text("")
    (tmp_path / "simulator" / "a.py").write_text("from . import b\nimport torch\n")
    (tmp_path / "simulator" / "b.py").write_text(
        "def f():\n    from .a import x\n    from spectune.tuner import space\n"
    )
    (tmp_path / "tuner").mkdir()
    (tmp_path / "tuner" / "__init__.py").write_text("")
    (tmp_path / "tuner" / "space.py").write_text("")
    mods = modules(tmp_path, {"simulator": "spectune.simulator", "tuner": "spectune.tuner"})
    graph = import_graph(mods)
    assert cycles(graph) == [["spectune.simulator.a", "spectune.simulator.b"]]
    assert "torch" in graph["spectune.simulator.a"]
    wrong = [t for t in graph["spectune.simulator.b"] if not may_import("spectune.simulator.b", t)]
    assert "spectune.tuner.space" in wrong


GRAPH_FILES = modules()

if __name__ == "__main__":
    print(f"modules: {len(GRAPH)}")
    chain = longest_chain(GRAPH)
    print(f"import depth (longest chain of spectune imports): {len(chain) - 1}")
    print("  " + " -> ".join(m.removeprefix("spectune.") for m in chain))
    print(f"cycles: {cycles(GRAPH) or 'none'}")
