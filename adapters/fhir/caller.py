"""Who is asking, and the access trail of every FHIR request.

Every FHIR route but the CapabilityStatement and the SMART configuration needs an
authenticated principal (a bearer token from ``POST /oauth/token`` or an identity provider,
or a console session): :func:`adapters.http.deps.deny_anonymous` refuses the others with 401,
and each route states the scope it needs (``requires``: 403 when the principal's scopes or
roles do not cover it). A write is made by a system of an establishment, in that
establishment's identifier domain only; a regional system reads, never writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request

from adapters.fhir.wire import FhirError
from adapters.http.deps import audit, forbidden, identify_caller, requires
from mpi.audit import AuditAction
from mpi.identity import Actor
from mpi.security import Principal

__all__ = ["WriterDep", "expect_access", "trace_access", "trace_failure", "READS",
           "SEARCHES"]

# The scopes of the Patient resource's reads and searches ($ihe-pix and $match are searches).
READS = Depends(requires("Patient", "r"))
SEARCHES = Depends(requires("Patient", "s"))


def _writer(request: Request,
            principal: Annotated[Principal, Depends(requires("Patient", "u"))]) -> Actor:
    """The actor of a write (create, update, merge or delete: ``Patient.cud``). Raises
    FhirError 403 for a principal that speaks for no establishment."""
    if not principal.may("Patient", "c") or not principal.may("Patient", "d"):
        raise _forbidden(request, f"{principal.actor_name} may not write patients "
                                  "(needs Patient.cud)")
    if principal.establishment is None:
        raise _forbidden(request, f"{principal.actor_name} speaks for no establishment: a "
                                  "regional system reads, never writes")
    return Actor(principal.actor_name, principal.establishment)


def _forbidden(request: Request, reason: str) -> FhirError:
    forbidden(request, reason)  # logged and traced
    return FhirError(403, "forbidden", reason)


WriterDep = Annotated[Actor, Depends(_writer)]


def expect_access(request: Request, action: AuditAction) -> None:
    """Declare what this request does with patient data: if it fails, the failure is traced."""
    request.state.fhir_access = action


def trace_access(request: Request, persons: Iterable[int | None] = (), *,
                 outcome: str = "success", detail: dict[str, Any] | None = None) -> None:
    """Trace the access declared by :func:`expect_access` (once per request)."""
    action = getattr(request.state, "fhir_access", None)
    if not isinstance(action, AuditAction):
        return
    request.state.fhir_access = None
    identify_caller(request)
    audit(request, channel="fhir", action=action,
          persons={p for p in persons if p is not None}, outcome=outcome, detail=detail)


def trace_failure(request: Request, status: int) -> None:
    trace_access(request, outcome=str(status))
