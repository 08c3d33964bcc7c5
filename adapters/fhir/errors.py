"""FHIR errors: every failure under the FHIR base is answered with an OperationOutcome.

Routes raise :class:`FhirError` (or let the core's errors reach :func:`from_core_error`);
Starlette's own errors (unknown route, wrong method) and request validation errors are
translated by the handlers that :func:`install_error_handlers` puts on the application, for the
FHIR subtree only: the other routes keep FastAPI's JSON errors.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.errors import AdapterError, DatabaseUnavailableError
from adapters.fhir.wire import FhirError, FhirResponse, operation_outcome
from adapters.http.deps import route_template
from adapters.http.errors import RETRY_AFTER_SECONDS
from adapters.http.errors import unavailable as other_unavailable
from mpi.errors import (
    ConcurrencyError,
    DuplicateIdentifierError,
    ForbiddenError,
    IdentityConflictError,
    InvalidInputError,
    MPIError,
    UnknownAuthorityError,
    UnknownIdentifierError,
)

__all__ = ["from_core_error", "error_response", "install_error_handlers"]

log = logging.getLogger("mpi.http")

# The issue type (http://hl7.org/fhir/issue-type) that goes with an HTTP status by default.
_ISSUE_CODES = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
    406: "not-supported", 409: "conflict", 412: "conflict", 415: "not-supported",
    422: "processing", 500: "exception", 503: "transient",
}


# From core errors (and the adapters' "try again") to FHIR answers, walked in order: the
# first class the error is an instance of decides (HTTP status, issue type of
# http://hl7.org/fhir/issue-type).
_CORE_ERRORS: tuple[tuple[type[MPIError | AdapterError], int, str], ...] = (
    (DatabaseUnavailableError, 503, "transient"),
    (UnknownAuthorityError, 400, "code-invalid"),
    (InvalidInputError, 400, "invalid"),
    (UnknownIdentifierError, 404, "not-found"),
    (ForbiddenError, 403, "forbidden"),
    (DuplicateIdentifierError, 409, "duplicate"),
    (IdentityConflictError, 409, "business-rule"),
    (ConcurrencyError, 409, "conflict"),
    (MPIError, 422, "processing"),
)


def from_core_error(exc: MPIError | DatabaseUnavailableError,
                    expression: str | None = None) -> FhirError:
    """The FHIR answer to an error of the core, or to a database out of reach (503 with
    Retry-After: nothing was applied, the same request may succeed later)."""
    status, code = next((status, code) for kind, status, code in _CORE_ERRORS
                        if isinstance(exc, kind))
    message = exc.message
    headers = None
    if isinstance(exc, ConcurrencyError):
        message += "; send the request again"
    elif isinstance(exc, DatabaseUnavailableError):
        message = "the database is unavailable; send the request again later"
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return FhirError(status, code, message, expression=expression or exc.location,
                     headers=headers)


def error_response(error: FhirError) -> FhirResponse:
    body = operation_outcome(error.code, error.diagnostics, expression=error.expression)
    return FhirResponse(body, status_code=error.status, headers=error.headers)


def install_error_handlers(app: FastAPI, base: str, on_error: Any) -> None:
    """Answer every error under ``base`` with an OperationOutcome. ``on_error(request,
    status)`` is called for each error answered there (the access trail of a failed read),
    but for a database out of reach, which cannot keep a trail: that refusal is logged. Other
    paths keep the handler of DatabaseUnavailableError installed before."""
    previous_unavailable = app.exception_handlers.get(DatabaseUnavailableError,
                                                      other_unavailable)

    def in_fhir(request: Request) -> bool:
        path = request.url.path
        return path == base or path.startswith(base + "/")

    def answer(request: Request, error: FhirError) -> Response:
        on_error(request, error.status)
        return error_response(error)

    async def fhir_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FhirError)
        return answer(request, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not in_fhir(request):
            return await http_exception_handler(request, exc)
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if status == 404:
            detail = f"no such FHIR interaction: {request.method} {request.url.path}"
        elif status == 405:
            detail = f"{request.method} is not supported on {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        return answer(request, FhirError(status, _ISSUE_CODES.get(status, "processing"),
                                         detail, headers=headers))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not in_fhir(request):
            return await request_validation_exception_handler(request, exc)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', '')}"
            for error in exc.errors()
        )
        return answer(request, FhirError(400, "invalid", problems or "invalid request"))

    async def unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DatabaseUnavailableError)
        if not in_fhir(request):
            answer = previous_unavailable(request, exc)
            response: Response = await answer if inspect.isawaitable(answer) else answer
            return response
        log.warning("database unavailable on %s %s: answered 503", request.method,
                    route_template(request.scope))
        return error_response(from_core_error(exc))

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        if not in_fhir(request):
            return PlainTextResponse("Internal Server Error", status_code=500)
        return answer(request, FhirError(500, "exception", "internal error; it was logged"))

    app.add_exception_handler(FhirError, fhir_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DatabaseUnavailableError, unavailable)
    app.add_exception_handler(Exception, unexpected_error)
