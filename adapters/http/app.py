"""The HTTP application (FastAPI): ``/health``, the curated OpenAPI description and its docs
page (served by the service itself: hospital networks have no CDN), one access-log line per
request, and whatever routers the composition root mounts. Every route needs an authenticated
caller unless its endpoint is marked public (see :mod:`adapters.http.deps`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.errors import DatabaseUnavailableError
from adapters.http.deps import deny_anonymous, public, route_template
from adapters.http.errors import RETRY_AFTER_SECONDS, unavailable
from adapters.logs import log_event, new_request_id, request_scope
from adapters.metrics import metrics

__all__ = ["create_app", "service_version", "Mount", "OPENAPI_DOCUMENT", "AccessLog",
           "ConcurrencyLimit"]

log = logging.getLogger("mpi.http")

# Adds routes (and their error handlers) to the application.
Mount = Callable[[FastAPI], None]

# The curated description of the HTTP API, beside the packages in the source tree (an
# installation without it serves FastAPI's own description instead).
OPENAPI_DOCUMENT = Path(__file__).resolve().parents[2] / "openapi.yaml"
# Swagger UI's assets, from a Python package (never a CDN).
DOCS_ASSETS = "/docs/assets"


def service_version() -> str:
    try:
        return version("nancy-mpi")
    except PackageNotFoundError:
        return "0+unknown"


def _openapi_text() -> str | None:
    if OPENAPI_DOCUMENT.is_file():
        return OPENAPI_DOCUMENT.read_text(encoding="utf-8")
    return None


def _documented_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            text = _openapi_text()
            app.openapi_schema = yaml.safe_load(text) if text else generated()
        return app.openapi_schema

    return openapi


class AccessLog:
    """One log line per HTTP request once its answer is sent: method, route template (never
    the path itself, which may hold a patient's identifier), status, duration, caller; the
    request counted in the metrics; the whole answer under one request id (``X-Request-ID``,
    the caller's when it gives a harmless one), sent back in that header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"")
        identifier = new_request_id(given.decode("latin-1"))

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", identifier.encode())]}
            await send(message)

        with request_scope(identifier):
            try:
                await self.app(scope, receive, sent)
            finally:
                caller = scope.get("state", {}).get("caller")
                route, seconds = route_template(scope), time.perf_counter() - started
                metrics().http_request(scope["method"], route, status, seconds)
                log_event(log, logging.INFO if status < 500 else logging.ERROR,
                          "http request", method=scope["method"], route=route, status=status,
                          ms=seconds * 1000, caller=getattr(caller, "actor_name", None))


# Paths answered whatever the load: a supervisor's and a load balancer's checks, the scrape.
_UNLIMITED = ("/health", "/metrics")


class ConcurrencyLimit:
    """At most ``limit`` HTTP requests answered at once; beyond it, 503 with ``Retry-After``
    at once (an OperationOutcome under /fhir), logged and counted, rather than a queue that
    grows with the flood. The health checks and /metrics are never refused."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(_UNLIMITED):
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await self._refuse(scope, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        metrics().http_overloaded.inc()
        log_event(log, logging.WARNING, "refused HTTP request: too many at once",
                  method=scope.get("method"), limit=self.limit)
        reason = (f"the server answers {self.limit} requests at once and is busy; "
                  "send the request again in a moment")
        if str(scope.get("path", "")).startswith("/fhir"):
            body: dict[str, Any] = {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "transient", "diagnostics": reason}]}
            media = "application/fhir+json"
        else:
            body, media = {"detail": reason}, "application/json"
        response = JSONResponse(body, status_code=503, media_type=media,
                                headers={"Retry-After": "1"})
        await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def create_app(container: Any, mounts: Sequence[Mount]) -> FastAPI:
    """The HTTP application around a bootstrapped container, with the routes of ``mounts``
    (each adds its routers). ``container`` is read by the routes' dependencies."""
    app = FastAPI(title="Nancy MPI", version=service_version(), docs_url=None, redoc_url=None,
                  dependencies=[Depends(deny_anonymous)])
    app.state.container = container

    @app.get("/health", tags=["service"],
             summary="Liveness, database reachability and the background jobs")
    @public
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

    @app.get("/health/live", tags=["service"],
             summary="Liveness: the process answers (for a supervisor's restart decision)")
    @public
    def live() -> JSONResponse:
        return JSONResponse({"status": "live", "version": service_version()})

    @app.get("/health/ready", tags=["service"],
             summary="Readiness: the database answers (for a load balancer's routing)")
    @public
    def ready(request: Request) -> JSONResponse:
        database_ok = request.app.state.container.database_ok()
        return JSONResponse({"status": "ready" if database_ok else "not-ready",
                             "database": database_ok},
                            status_code=200 if database_ok else 503,
                            headers={} if database_ok else {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.get("/openapi.yaml", include_in_schema=False)
    @public
    def openapi_yaml() -> PlainTextResponse:
        text = _openapi_text() or yaml.safe_dump(app.openapi(), sort_keys=False)
        return PlainTextResponse(text, media_type="application/yaml")

    @app.get("/docs", include_in_schema=False)
    @public
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.yaml", title="Nancy MPI: the HTTP API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")

    # Before the mounts: a protocol with its own error format (FHIR) answers its own paths
    # and falls back on this one.
    app.add_exception_handler(DatabaseUnavailableError, unavailable)
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")),
              name="docs-assets")
    for mount in mounts:
        mount(app)
    app.openapi = _documented_openapi(app)  # type: ignore[method-assign]
    settings = getattr(container, "settings", None)
    limit = getattr(settings, "http_max_concurrency", None)
    if isinstance(limit, int) and limit > 0:
        app.add_middleware(ConcurrencyLimit, limit=limit)
    app.add_middleware(AccessLog)  # outermost: refusals are logged and counted too
    return app
