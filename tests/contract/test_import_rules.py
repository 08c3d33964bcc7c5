"""The dependency rules of the layout: the core is pure, adapters meet only in the
composition root."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the core may import besides the standard library and itself.
CORE_ALLOWED = {"mpi", "recordlinkage", "pandas", "numpy", "jellyfish"}
ADAPTER_PACKAGES = {"sql", "hl7v2", "api", "fhir", "dicom", "web"}
# HTTP is one application: its packages share the dependencies of adapters.api.deps (the
# container, the user, the access trail), and adapters/api/app.py composes their routers.
SHARED_HTTP_MODULE = "adapters.api.deps"
HTTP_COMPOSITION = Path("adapters/api/app.py")
HTTP_PACKAGES = {"fhir", "dicom", "web"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_the_core_imports_only_the_standard_library_and_its_allowed_libraries() -> None:
    offences = []
    for path in sorted((ROOT / "mpi").rglob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if top not in CORE_ALLOWED and top not in sys.stdlib_module_names:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offences == []


def test_adapter_packages_do_not_import_each_other() -> None:
    offences = []
    for package in sorted(ADAPTER_PACKAGES):
        folder = ROOT / "adapters" / package
        for path in sorted(folder.rglob("*.py")) if folder.exists() else []:
            for line, module in imported_modules(path):
                parts = module.split(".")
                if parts[0] != "adapters" or len(parts) < 2:
                    continue
                if parts[1] not in ADAPTER_PACKAGES or parts[1] == package:
                    continue
                if package in HTTP_PACKAGES and module == SHARED_HTTP_MODULE:
                    continue
                if path.relative_to(ROOT) == HTTP_COMPOSITION and parts[1] in HTTP_PACKAGES:
                    continue
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offences == []


def test_nothing_is_built_at_import_time_in_the_composition_root() -> None:
    tree = ast.parse((ROOT / "adapters" / "bootstrap.py").read_text(encoding="utf-8"))
    calls_at_module_level = [
        node for node in tree.body
        if isinstance(node, ast.Expr | ast.Assign) and isinstance(getattr(node, "value", None), ast.Call)
    ]
    assert calls_at_module_level == []
