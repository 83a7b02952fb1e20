"""The package's imports point one way: no cycle between modules or between packages."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "autoseg"
#: Layers from the top. A package may import the packages of the layers below its own, and, inside its
#: own layer, only the packages to its right (the declared direction).
LAYERS = (
    ("__main__", "cli"),
    ("commands",),  # hydra lives here (commands/config.py): only the commands compose the config
    ("sweep",),  # launchers and sweeps: above training, below the commands that compose the config
    ("training",),
    ("export",),  # shipping a model: archives, ONNX, the container, the model card
    ("inference",),
    ("evaluation", "report"),
    ("postprocessing",),  # what runs after the network at predict time
    ("planning", "data", "nets", "cascade", "preprocessing", "synthetic"),
    ("visualize",),
    ("io",),
    ("contracts",),
    ("utils", "__init__"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the autoseg modules it imports (module level, in functions and under TYPE_CHECKING)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name].update(t for t in targets if t in modules)
    return graph


def _package(module: str) -> str:
    """``autoseg.training.setup`` -> ``training``; ``autoseg`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_cycle_between_modules() -> None:
    assert _cycles(import_graph()) == []


def test_no_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in import_graph().items():
        packages[_package(module)].update(_package(t) for t in targets if _package(t) != _package(module))
    assert _cycles(packages) == []


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """``module -> target`` for every import against the layers (upwards, or leftwards inside a layer)."""
    rank = {name: (i, j) for i, names in enumerate(LAYERS) for j, name in enumerate(names)}
    wrong = []
    for module, targets in graph.items():
        source = _package(module)
        for target in targets:
            dest = _package(target)
            if source != dest and rank[dest] <= rank[source]:
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_dependencies_point_down_the_layers() -> None:
    wrong = layering_violations(import_graph())
    assert wrong == [], "imports against the layering (commands -> training -> ... -> utils)"


def test_layer_check_catches_a_wrong_direction_inside_a_layer() -> None:
    """A test of the test: ``preprocessing`` may not import ``planning`` (its left neighbour)."""
    graph = import_graph()
    assert layering_violations(graph) == []
    planted = {
        **graph,
        "autoseg.preprocessing.crop": {*graph["autoseg.preprocessing.crop"], "autoseg.planning.plans"},
    }
    assert layering_violations(planted) == ["autoseg.preprocessing.crop -> autoseg.planning.plans"]
    upward = {**graph, "autoseg.utils.files": {"autoseg.io.images"}}
    assert layering_violations(upward) == ["autoseg.utils.files -> autoseg.io.images"]


def private_imports() -> list[str]:
    """``module: name`` for every private name (``_x``) imported from another autoseg module."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autoseg"):
                found += [
                    f"{_module_name(path)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return sorted(found)


def test_no_private_name_is_imported_across_modules() -> None:
    assert private_imports() == []


def test_every_package_is_layered() -> None:
    layered = {name for names in LAYERS for name in names}
    assert {_package(m) for m in import_graph()} <= layered


def test_cycle_detector_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
