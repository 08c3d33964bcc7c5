"""FastAPI dependencies shared by every router: the service parts, who is asking, and the
access trail of a request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from adapters.container import Container
from mpi.audit import AuditAction, AuditEvent

__all__ = ["ContainerDep", "Caller", "CallerDep", "StaffUser", "USER_HEADER",
           "ESTABLISHMENT_HEADER", "AUTHORITY_HEADER", "ANONYMOUS", "identify_caller",
           "audit"]

# Set by the authenticating reverse proxy in front of the service: the person or system
# acting, and the establishment it speaks for (FHIR writes) or the domain it asks in
# (DICOMweb). Writes are refused without them: no anonymous change.
USER_HEADER = "X-Remote-User"
ESTABLISHMENT_HEADER = "X-Establishment"
AUTHORITY_HEADER = "X-Authority"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """Who asks: the user the proxy authenticated (None: anonymous), the establishment it
    says it speaks for, the domain it asks in (authority codes, not yet checked), and the
    client address."""

    user: str | None
    establishment: str | None
    authority: str | None
    address: str | None

    @property
    def actor_name(self) -> str:
        return f"user:{self.user}" if self.user else ANONYMOUS


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name, "").strip()
    return value or None


def identify_caller(request: Request) -> Caller:
    """The caller of this request (computed once per request)."""
    known = getattr(request.state, "caller", None)
    if isinstance(known, Caller):
        return known
    caller = Caller(_header(request, USER_HEADER), _header(request, ESTABLISHMENT_HEADER),
                    _header(request, AUTHORITY_HEADER),
                    request.client.host if request.client else None)
    request.state.caller = caller
    return caller


def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def _staff_user(caller: Annotated[Caller, Depends(identify_caller)]) -> str:
    if caller.user is None:
        raise HTTPException(status_code=401, detail=f"the {USER_HEADER} header names nobody")
    return caller.user


def audit(request: Request, *, channel: str, action: AuditAction, actor: str,
          persons: Iterable[int] = (), outcome: str = "success", authority: str | None = None,
          detail: dict[str, Any] | None = None) -> None:
    """Trace one access to patient data made through this request (mpi.audit)."""
    container = _container(request)
    subject = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    container.audit.record(AuditEvent(
        occurred_at=container.clock.now(), channel=channel, action=action, actor=actor,
        subject=subject, outcome=outcome, authority=authority,
        source=request.client.host if request.client else None,
        persons=tuple(persons), detail=detail or {},
    ))


ContainerDep = Annotated[Container, Depends(_container)]
CallerDep = Annotated[Caller, Depends(identify_caller)]
StaffUser = Annotated[str, Depends(_staff_user)]
