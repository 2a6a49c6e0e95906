"""The package's house plan, enforced: every module sits in one layer and imports only its own layer or
lower ones (module level and inside functions alike), packages form no cycle, only the CLI imports the
CLI, the metrics stay free of TensorFlow and Keras, and modules and functions stay short enough to read.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mammoseg"

LAYERS = ("core", "metrics", "dataset", "models", "runs", "training", "inference", "evaluation", "reporting",
          "workflows", "cli")
"""Low to high (docs/design.md, Code layout)."""

LAYER_OF = {
    "mammoseg": "core",  # the package itself holds only the version
    "mammoseg.core": "core",
    "mammoseg.metrics": "metrics",
    "mammoseg.dataset": "dataset",
    "mammoseg.models": "models",
    "mammoseg.runs": "runs",
    "mammoseg.training": "training",
    "mammoseg.inference": "inference",
    "mammoseg.evaluation": "evaluation",
    "mammoseg.reporting": "reporting",
    "mammoseg.workflows": "workflows",
    "mammoseg.cli": "cli",
    "mammoseg.__main__": "cli",  # `python -m mammoseg` is the command line
}
"""Module (or package prefix) -> layer; the longest matching prefix decides."""

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
BACKEND_MODULES = ("tensorflow", "keras", "tf_keras", "jax", "torch")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    for prefix in sorted(LAYER_OF, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYER_OF[prefix]
    raise AssertionError(f"{module} is in no layer: add its package to LAYER_OF (and to docs/design.md)")


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:  # `from pkg import module` imports the module
                yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base), node.lineno


def _internal_imports() -> list[tuple[str, str, int]]:
    return [(module, target, line) for module, path in MODULES.items() for target, line in _imports(module, path)
            if target == "mammoseg" or target.startswith("mammoseg.")]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        assert _layer(module) in LAYERS


def test_imports_point_down() -> None:
    upward = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: {m} ({_layer(m)}) imports {t} ({_layer(t)})"
              for m, t, line in _internal_imports()
              if LAYERS.index(_layer(t)) > LAYERS.index(_layer(m))]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for module, target, _ in _internal_imports():
        if _package(module) != _package(target):
            graph.setdefault(_package(module), set()).add(_package(target))
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle between packages: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_only_the_cli_imports_the_cli() -> None:
    outside = [f"{m} imports {t}" for m, t, _ in _internal_imports()
               if _layer(t) == "cli" and _layer(m) != "cli"]
    assert not outside, "\n".join(outside)


def test_metrics_import_no_backend() -> None:
    found = [f"{m} imports {t}" for m, path in MODULES.items() if _layer(m) == "metrics"
             for t, _ in _imports(m, path) if t.split(".")[0] in BACKEND_MODULES]
    assert not found, "mammoseg.metrics is numpy only:\n" + "\n".join(found)


def test_modules_and_functions_stay_short() -> None:
    long: list[str] = []
    for path in MODULES.values():
        name = path.relative_to(PACKAGE.parent).as_posix()
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.lineno}: {node.name} is {length} lines")
    assert not long, f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function:\n" + "\n".join(long)
