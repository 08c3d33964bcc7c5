"""FastAPI dependencies shared by the routes: the service parts and who is asking."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

from mpi.audit import AuditAction, AuditEvent

__all__ = ["ContainerDep", "StaffUser", "USER_HEADER", "audit"]

# The identity of the person acting, as set by the authenticating reverse proxy in front of
# the service. Writes are refused without it: no anonymous decision.
USER_HEADER = "X-Remote-User"


def _container(request: Request) -> Any:
    return request.app.state.container


def _staff_user(x_remote_user: Annotated[str | None, Header()] = None) -> str:
    if not x_remote_user or not x_remote_user.strip():
        raise HTTPException(status_code=401, detail=f"the {USER_HEADER} header names nobody")
    return x_remote_user.strip()


def audit(request: Request, *, channel: str, action: AuditAction, actor: str,
          persons: Iterable[int] = (), outcome: str = "success", authority: str | None = None,
          detail: dict[str, Any] | None = None) -> None:
    """Trace one access to patient data made through this request (mpi.audit)."""
    container = request.app.state.container
    subject = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    container.audit.record(AuditEvent(
        occurred_at=container.clock.now(), channel=channel, action=action, actor=actor,
        subject=subject, outcome=outcome, authority=authority,
        source=request.client.host if request.client else None,
        persons=tuple(persons), detail=detail or {},
    ))


ContainerDep = Annotated[Any, Depends(_container)]
StaffUser = Annotated[str, Depends(_staff_user)]
