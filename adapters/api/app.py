"""The HTTP application (FastAPI). Routes receive what they need through dependencies."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adapters.api.dicomweb import router as dicomweb_router
from adapters.api.review import router as review_router

__all__ = ["create_app"]


def _version() -> str:
    try:
        return version("nancy-mpi")
    except PackageNotFoundError:
        return "0+unknown"


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
    return app
