"""openapi.yaml describes exactly the HTTP routes the application serves, and the FHIR search
parameters the CapabilityStatement declares."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from fastapi.openapi.utils import get_openapi

from adapters.bootstrap import http_app as create_app
from adapters.fhir import RESOURCES
from adapters.jobs import JobBoard

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "put", "post", "delete", "patch"}


def document() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))


def served_operations() -> set[tuple[str, str]]:
    """Every operation of the application, as FastAPI itself describes its routes (not the
    document the application shows at /docs, which is openapi.yaml)."""
    app = create_app(SimpleNamespace(database_ok=lambda: True, jobs=JobBoard([])))
    generated = get_openapi(title=app.title, version=app.version, routes=app.routes)
    return {(path, method) for path, item in generated["paths"].items() for method in item}


def documented_operations() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document()["paths"].items()
        for method in item
        if method in METHODS
    }


def test_openapi_yaml_lists_every_served_operation_and_nothing_else() -> None:
    assert documented_operations() == served_operations()


def test_openapi_yaml_is_a_valid_openapi_3_document() -> None:
    spec = document()
    assert spec["openapi"].startswith("3.")
    for item in spec["paths"].values():
        for operation in item.values():
            assert operation["responses"], operation


def test_the_documented_patient_search_parameters_are_those_the_server_declares() -> None:
    spec = document()
    patient = next(r for r in RESOURCES if r.type == "Patient")
    declared = {p.name for p in patient.search_parameters} | {"_count", "_offset", "_format"}
    parameters = spec["paths"]["/fhir/Patient"]["get"]["parameters"]
    names = {
        spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]["name"].split(":")[0]
        for p in parameters
    } - {"X-Remote-User"}
    assert names == declared
    form = spec["paths"]["/fhir/Patient/_search"]["post"]["requestBody"]["content"]
    form_names = set(form["application/x-www-form-urlencoded"]["schema"]["properties"])
    assert form_names == declared - {"_format"}


def test_every_fhir_error_is_documented_as_an_operation_outcome() -> None:
    spec = document()
    responses = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        if not path.startswith("/fhir"):
            continue
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                body = responses[response["$ref"].rsplit("/", 1)[1]]["content"]
                schema = body["application/fhir+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/OperationOutcome"}, (
                    path, method, status)


def test_the_swagger_ui_shows_openapi_yaml() -> None:
    app = create_app(SimpleNamespace(database_ok=lambda: True, jobs=JobBoard([])))
    assert app.openapi() == document()
