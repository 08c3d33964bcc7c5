"""The HTTP application (FastAPI): ``/health``, the curated OpenAPI description, and whatever
routers the composition root mounts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["create_app", "service_version", "Mount", "OPENAPI_DOCUMENT"]

# Adds routes (and their error handlers) to the application.
Mount = Callable[[FastAPI], None]

# The curated description of the HTTP API, shown at /docs when the service runs from its
# source tree (where it lives beside the packages); else FastAPI's own description.
OPENAPI_DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.yaml"


def service_version() -> str:
    try:
        return version("nancy-mpi")
    except PackageNotFoundError:
        return "0+unknown"


def _documented_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            if OPENAPI_DOCUMENT.is_file():
                app.openapi_schema = yaml.safe_load(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
            else:
                app.openapi_schema = generated()
        return app.openapi_schema

    return openapi


def create_app(container: Any, mounts: Sequence[Mount]) -> FastAPI:
    """The HTTP application around a bootstrapped container, with the routes of ``mounts``
    (each adds its routers). ``container`` is read by the routes' dependencies."""
    app = FastAPI(title="Nancy MPI", version=service_version())
    app.state.container = container

    @app.get("/health", tags=["service"],
             summary="Liveness, database reachability and the background jobs")
    def health(request: Request) -> JSONResponse:
        container = request.app.state.container
        database_ok = container.database_ok()
        body = {"status": "ok" if database_ok else "degraded", "database": database_ok,
                "version": service_version(), "jobs": container.jobs.snapshot()}
        archive_health = getattr(container, "archive_health", None)
        if database_ok and archive_health is not None:
            body["archive"] = archive_health()
            if body["archive"]["fixity_failures"]:
                body["status"] = "degraded"  # a stored file changed: restore it from a copy
        return JSONResponse(body, status_code=200 if database_ok else 503)

    for mount in mounts:
        mount(app)
    app.openapi = _documented_openapi(app)  # type: ignore[method-assign]
    return app
