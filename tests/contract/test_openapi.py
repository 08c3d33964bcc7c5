"""openapi.yaml describes exactly the HTTP routes the application serves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

from adapters.api.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def served_operations() -> set[tuple[str, str]]:
    """Every operation of the application, as FastAPI itself describes its routes."""
    app = create_app(SimpleNamespace(database_ok=lambda: True))
    return {
        (path, method)
        for path, item in app.openapi()["paths"].items()
        for method in item
    }


def documented_operations() -> set[tuple[str, str]]:
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }


def test_openapi_yaml_lists_every_served_operation_and_nothing_else() -> None:
    assert documented_operations() == served_operations()


def test_openapi_yaml_is_a_valid_openapi_3_document() -> None:
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.")
    for item in document["paths"].values():
        for operation in item.values():
            assert operation["responses"], operation
