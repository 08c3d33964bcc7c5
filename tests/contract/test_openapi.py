"""openapi.yaml describes exactly the HTTP routes the application serves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml
from fastapi.routing import APIRoute

from adapters.api.app import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTATION_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def served_operations() -> set[tuple[str, str]]:
    app = create_app(SimpleNamespace(database_ok=lambda: True))
    operations = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in DOCUMENTATION_ROUTES:
            for method in route.methods:
                if method != "HEAD":
                    operations.add((route.path, method.lower()))
    return operations


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
