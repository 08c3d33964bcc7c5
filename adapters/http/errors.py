"""The one table from core errors to the JSON API's answers (``/api``; FHIR has its own in
``adapters/fhir/errors.py``)."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from adapters.errors import DatabaseUnavailableError
from mpi.errors import (
    ConcurrencyError,
    DuplicateIdentifierError,
    ForbiddenError,
    IdentityConflictError,
    InvalidInputError,
    LifecycleStateError,
    MPIError,
    UnknownAuthorityError,
    UnknownIdentifierError,
)

__all__ = ["http_error", "unavailable", "RETRY_AFTER_SECONDS"]

# What a client is told to wait before it asks again when the service cannot serve it now
# (the database or the archive volume out of reach).
RETRY_AFTER_SECONDS = 5

# Walked in order: the first class the error is an instance of decides. A request that is
# well formed but that the current state refuses (a task decided already, an identity rule)
# is a conflict.
_CORE_ERRORS: tuple[tuple[type[MPIError], int], ...] = (
    (UnknownAuthorityError, 400),
    (UnknownIdentifierError, 404),
    (ForbiddenError, 403),
    (DuplicateIdentifierError, 409),
    (IdentityConflictError, 409),
    (LifecycleStateError, 409),
    (ConcurrencyError, 409),
    (InvalidInputError, 409),
    (MPIError, 422),
)


def http_error(exc: MPIError) -> HTTPException:
    """The HTTP answer to an error of the core, its message as the detail."""
    status = next(status for kind, status in _CORE_ERRORS if isinstance(exc, kind))
    return HTTPException(status_code=status, detail=exc.message)


async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Every route's answer when the database is out of reach: 503 with Retry-After, for a
    client (or a load balancer) to come back; never a 500."""
    assert isinstance(exc, DatabaseUnavailableError)
    return JSONResponse(
        {"detail": "the database is unavailable; try again later"}, status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
