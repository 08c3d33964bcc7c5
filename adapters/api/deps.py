"""FastAPI dependencies shared by the routes: the service parts and who is asking."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

__all__ = ["ContainerDep", "StaffUser", "USER_HEADER"]

# The identity of the person acting, as set by the authenticating reverse proxy in front of
# the service. Writes are refused without it: no anonymous decision.
USER_HEADER = "X-Remote-User"


def _container(request: Request) -> Any:
    return request.app.state.container


def _staff_user(x_remote_user: Annotated[str | None, Header()] = None) -> str:
    if not x_remote_user or not x_remote_user.strip():
        raise HTTPException(status_code=401, detail=f"the {USER_HEADER} header names nobody")
    return x_remote_user.strip()


ContainerDep = Annotated[Any, Depends(_container)]
StaffUser = Annotated[str, Depends(_staff_user)]
