"""The dependency rules of the layout: the core is pure, adapters meet only in the
composition root and the shared HTTP base, and no import cycle exists anywhere.

Every import statement counts, wherever it is (module level, inside a function, under
``TYPE_CHECKING``): a lazy import still ties two modules together.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the core may import besides the standard library and itself.
CORE_ALLOWED = {"mpi", "jellyfish"}
# Adapter packages; each may import only itself and the shared modules below.
ADAPTER_PACKAGES = {"sql", "hl7v2", "api", "fhir", "dicom", "dicomweb", "http", "auth", "viewer",
                    "console"}
HTTP_PACKAGES = {"api", "fhir", "dicomweb", "console", "viewer"}
# The shared HTTP base, the container its dependencies hand to every route, and the
# authentication that turns a request's credentials into a principal.
SHARED_WITH_HTTP = {"adapters.http", "adapters.container", "adapters.auth"}
# What the HTTP base itself may import of the other adapters.
SHARED_WITH_HTTP_BASE = {"adapters.container", "adapters.auth"}


def python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement of the file names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def import_graph(*folders: str) -> dict[str, set[str]]:
    """Module → the project modules it imports (a name is resolved to its longest module)."""
    modules = {module_name(path): path for path in python_files(*folders)}

    def resolve(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, imported in imported_modules(path):
            target = resolve(imported)
            # A module importing its own package's __init__ is not a cycle.
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def collapsed(graph: dict[str, set[str]], level: int) -> dict[str, set[str]]:
    """The graph between packages of ``level`` name components (adapters.fhir, mpi.archive)."""
    out: dict[str, set[str]] = {}
    for source, targets in graph.items():
        a = ".".join(source.split(".")[:level])
        out.setdefault(a, set())
        for target in targets:
            b = ".".join(target.split(".")[:level])
            if b != a:
                out[a].add(b)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph("mpi", "adapters")) == []


def test_no_import_cycle_between_packages() -> None:
    graph = import_graph("mpi", "adapters")
    assert cycles(collapsed(graph, 2)) == []
    assert cycles(collapsed(graph, 3)) == []


def test_the_cycle_detector_finds_a_cycle_through_packages() -> None:
    graph = {"mpi.a.x": {"mpi.b"}, "mpi.b": {"mpi.a.y"}, "mpi.a.y": set()}
    assert cycles(graph) == []
    assert cycles(collapsed(graph, 2)) == [["mpi.a", "mpi.b"]]


def test_the_core_imports_only_the_standard_library_and_its_allowed_libraries() -> None:
    offences = []
    for path in python_files("mpi"):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top not in CORE_ALLOWED and top not in sys.stdlib_module_names:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offences == []


def test_adapter_packages_do_not_import_each_other() -> None:
    offences = []
    for package in sorted(ADAPTER_PACKAGES):
        for path in python_files(f"adapters/{package}"):
            for line, module in imported_modules(path):
                parts = module.split(".")
                if parts[0] != "adapters" or len(parts) < 2 or parts[1] == package:
                    continue
                top = ".".join(parts[:2])
                if package in HTTP_PACKAGES and top in SHARED_WITH_HTTP:
                    continue
                if package == "http" and top in SHARED_WITH_HTTP_BASE:
                    continue
                if parts[1] in ADAPTER_PACKAGES or top in SHARED_WITH_HTTP:
                    offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offences == []


def test_nothing_is_built_at_import_time_in_the_composition_root() -> None:
    tree = ast.parse((ROOT / "adapters" / "bootstrap.py").read_text(encoding="utf-8"))
    calls_at_module_level = [
        node for node in tree.body
        if isinstance(node, ast.Expr | ast.Assign) and isinstance(getattr(node, "value", None), ast.Call)
    ]
    assert calls_at_module_level == []
