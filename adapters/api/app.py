"""The HTTP application (FastAPI). Routes receive what they need through dependencies."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adapters.api.dicomweb import router as dicomweb_router
from adapters.api.review import router as review_router
from adapters.fhir import mount as mount_fhir

__all__ = ["create_app"]


def _version() -> str:
    try:
        return version("nancy-mpi")
    except PackageNotFoundError:
        return "0+unknown"


# The curated description of the HTTP API, shown at /docs when the service runs from its
# source tree (where it lives beside the packages); else FastAPI's own description.
OPENAPI_DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.yaml"


def _documented_openapi(app: FastAPI) -> Any:
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            if OPENAPI_DOCUMENT.is_file():
                app.openapi_schema = yaml.safe_load(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
            else:
                app.openapi_schema = generated()
        return app.openapi_schema

    return openapi


def create_app(container: Any) -> FastAPI:
    """Build the HTTP application around a bootstrapped container."""
    app = FastAPI(title="Nancy MPI", version=_version())
    app.state.container = container

    @app.get("/health", tags=["service"], summary="Liveness and database reachability")
    def health(request: Request) -> JSONResponse:
        database_ok = request.app.state.container.database_ok()
        body = {"status": "ok" if database_ok else "degraded", "database": database_ok,
                "version": _version()}
        return JSONResponse(body, status_code=200 if database_ok else 503)

    app.include_router(review_router)
    app.include_router(dicomweb_router)
    mount_fhir(app, _version())
    app.openapi = _documented_openapi(app)  # type: ignore[method-assign]
    return app
