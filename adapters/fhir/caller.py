"""Who is asking, and the access trail of every FHIR request.

The authenticating reverse proxy in front of the service names the user in ``X-Remote-User``
and, for a system writing patient identities, the establishment it speaks for in
``X-Establishment`` (an authority code of ``authorities.toml``, e.g. ``CHRU``). Reads are
allowed without them and traced with the client address; writes need both.

:func:`adapters.http.deps.identify_caller` runs once per request for the whole FHIR tree (a
dependency of the root router), as for every other router: authentication, when it comes,
replaces that one function.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request

from adapters.fhir.wire import FhirError
from adapters.http.deps import (
    ESTABLISHMENT_HEADER,
    USER_HEADER,
    Caller,
    CallerDep,
    audit,
    identify_caller,
)
from mpi.audit import AuditAction
from mpi.identity import Actor
from mpi.model import AuthorityKind

__all__ = ["Caller", "identify_caller", "CallerDep", "WriterDep", "expect_access",
           "trace_access", "trace_failure"]


def _writer(request: Request, caller: CallerDep) -> Actor:
    """The actor of a write. Raises FhirError 401 without a user or an establishment, 403
    when the establishment is not one declared."""
    if caller.user is None or caller.establishment is None:
        raise FhirError(
            401, "login",
            f"writing needs the user ({USER_HEADER}) and the establishment it speaks for "
            f"({ESTABLISHMENT_HEADER}), set by the authenticating proxy",
            headers={"WWW-Authenticate": "Proxy"},
        )
    registry = request.app.state.container.registry
    authority = next((a for a in registry.all if a.code == caller.establishment), None)
    if authority is None or authority.kind is not AuthorityKind.ESTABLISHMENT:
        raise FhirError(403, "forbidden",
                        f"{ESTABLISHMENT_HEADER} {caller.establishment!r} is not a declared "
                        "establishment")
    return Actor(caller.actor_name, authority.code)


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
    caller = identify_caller(request)
    audit(request, channel="fhir", action=action, actor=caller.actor_name,
          persons={p for p in persons if p is not None}, outcome=outcome,
          authority=caller.establishment, detail=detail)


def trace_failure(request: Request, status: int) -> None:
    trace_access(request, outcome=str(status))
