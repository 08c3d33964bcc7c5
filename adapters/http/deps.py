"""FastAPI dependencies shared by every router: the service parts, who is asking (a bearer
token or a console session, checked on every request), what they may do, and the access trail
of a request.

Deny by default: every route needs an authenticated principal unless its endpoint is marked
:func:`public` (the health check, the docs, the token endpoint, discovery documents, the FHIR
CapabilityStatement). :func:`create_app` installs :func:`deny_anonymous` as a dependency of the
whole application, so a new route is protected without anyone remembering to.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request

from adapters.auth.service import SESSION_COOKIE
from adapters.auth.tokens import TokenRefused
from adapters.container import Container
from adapters.errors import DatabaseUnavailableError
from adapters.logs import log_event
from mpi.audit import AuditAction, AuditEvent
from mpi.errors import ConcurrencyError
from mpi.security import Principal

__all__ = ["ContainerDep", "Caller", "CallerDep", "PrincipalDep", "ANONYMOUS", "CSRF_HEADER", "CSRF_FIELD",
           "identify_caller", "deny_anonymous", "public", "requires", "requires_role",
           "audit", "is_public", "forbidden", "route_template"]

log = logging.getLogger("mpi.http")

ANONYMOUS = "anonymous"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
F = TypeVar("F", bound=Callable[..., Any])


def route_template(scope: Any) -> str:
    """The template of the route a request matched (``/fhir/Patient/{patient_id}``): never
    the path itself, which may hold a patient's identifier. FastAPI keeps the full template
    of a route of an included router in its effective route context (the matched route
    knows only its own part); the route's own path is the fallback."""
    context = scope.get("fastapi", {}).get("effective_route_context")
    full = getattr(context, "path_format", None) or getattr(context, "path", None)
    if isinstance(full, str) and full:
        return full
    own = getattr(scope.get("route"), "path", None)
    return own if isinstance(own, str) and own else "(no route)"


def public(endpoint: F) -> F:
    """Mark a route's endpoint as open to anonymous callers (it shows no patient data)."""
    endpoint.__mpi_public__ = True  # type: ignore[attr-defined]
    return endpoint


def is_public(endpoint: object) -> bool:
    return bool(getattr(endpoint, "__mpi_public__", False))


@dataclass(frozen=True)
class Caller:
    """Who asks: the authenticated principal (None: nobody proved anything), how (bearer or
    session), the session's CSRF token, and the client address."""

    principal: Principal | None
    address: str | None
    via: str = "none"  # "bearer", "session" or "none"
    csrf: str | None = None

    @property
    def actor_name(self) -> str:
        return self.principal.actor_name if self.principal else ANONYMOUS


def _container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def _unauthorized(request: Request, reason: str, error: str | None = None) -> HTTPException:
    """A 401 answer (the refusal is logged and traced)."""
    _trace_refusal(request, 401, reason)
    challenge = 'Bearer realm="nancy-mpi"'
    if error:
        challenge += f', error="{error}", error_description="{reason}"'
    return HTTPException(status_code=401, detail=reason,
                         headers={"WWW-Authenticate": challenge})


def identify_caller(request: Request) -> Caller:
    """Who this request comes from (computed once per request). Raises HTTPException 401 for
    credentials that do not prove anything (an expired, tampered, unsigned or revoked token);
    no credentials at all, or a session that ended, is an anonymous caller."""
    known = getattr(request.state, "caller", None)
    if isinstance(known, Caller):
        return known
    address = request.client.host if request.client else None
    container = _container(request)
    authorization = request.headers.get("authorization", "")
    caller = Caller(None, address)
    scheme, _, token = authorization.partition(" ")
    try:
        if scheme.lower() == "bearer":  # other schemes (Basic, at the token endpoint) prove nothing here
            if not token.strip():
                raise _unauthorized(request, "the Authorization header holds no bearer token",
                                    "invalid_request")
            try:
                principal = container.auth.authenticate_bearer(token.strip(), address)
            except TokenRefused as exc:
                raise _unauthorized(request, exc.message, "invalid_token") from None
            caller = Caller(principal, address, "bearer")
        elif cookie := request.cookies.get(SESSION_COOKIE):
            found = container.auth.session_principal(cookie, address)
            if found is not None:
                principal, session = found
                caller = Caller(principal, address, "session", session.csrf)
    except ConcurrencyError as exc:
        # A lookup of the caller's credentials whose connection the server broke (it is
        # shutting down or restarting) is the database out of reach, not a conflict.
        raise DatabaseUnavailableError(f"the database is unavailable: {exc}") from exc
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(identify_caller)]


async def deny_anonymous(request: Request, caller: CallerDep) -> None:
    """Every route but the public ones needs an authenticated principal; a change made with
    a console session carries the session's CSRF token (the ``X-CSRF-Token`` header, or the
    ``csrf`` field of a form), so that another site cannot make it in the person's name."""
    route = request.scope.get("route")
    if route is not None and is_public(getattr(route, "endpoint", None)):
        return
    if caller.principal is None:
        raise _unauthorized(request, "this route needs a bearer token (POST /oauth/token) or "
                                     "a console session")
    if caller.via == "session" and request.method not in _SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER, "")
        if not given and request.headers.get("content-type", "").startswith(_FORMS):
            given = str((await request.form()).get(CSRF_FIELD, ""))
        if not hmac.compare_digest(given, caller.csrf or ""):
            raise forbidden(request, "a change made in a console session must carry the "
                                     "session's CSRF token")


def _principal(request: Request, caller: CallerDep) -> Principal:
    if caller.principal is None:
        raise _unauthorized(request, "this route needs a bearer token or a console session")
    return caller.principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


def requires(resource: str, interaction: str) -> Callable[..., Principal]:
    """A dependency: the principal, which must be allowed ``interaction`` (c, r, u, d, s) on
    ``resource`` by its scopes (a system) or roles (a person); else 403."""

    def check(request: Request, principal: PrincipalDep) -> Principal:
        if not principal.may(resource, interaction):
            reason = (f"{principal.actor_name} may not {_VERBS[interaction]} {resource} "
                      f"(needs {'system' if principal.kind == 'client' else 'a role with'} "
                      f"{resource}.{interaction})")
            raise forbidden(request, reason)
        return principal

    return check


def requires_role(*roles: str) -> Callable[..., Principal]:
    """A dependency: a person holding one of ``roles``; else 403."""

    def check(request: Request, principal: PrincipalDep) -> Principal:
        if principal.kind != "user" or not principal.has_role(*roles):
            reason = (f"{principal.actor_name} may not do this: it needs a person with the "
                      f"role {' or '.join(roles)}")
            raise forbidden(request, reason)
        return principal

    return check


_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


def forbidden(request: Request, reason: str) -> HTTPException:
    """A 403 answer for a principal that may not do this (logged and traced)."""
    _trace_refusal(request, 403, reason)
    return HTTPException(status_code=403, detail=reason)


def _trace_refusal(request: Request, status: int, reason: str) -> None:
    caller = getattr(request.state, "caller", None)
    principal = caller.principal if isinstance(caller, Caller) else None
    log_event(log, logging.WARNING, "refused HTTP request", method=request.method,
              route=route_template(request.scope),
              status=status, caller=principal.actor_name if principal else ANONYMOUS,
              address=request.client.host if request.client else None, reason=reason)
    try:
        audit(request, channel="http", action=AuditAction.ALERT,
              actor=principal.actor_name if principal else ANONYMOUS, outcome=str(status),
              principal=principal, detail={"reason": reason})
    except Exception:  # a refusal must be answered even when the trail cannot be written
        log.exception("the refusal could not be written to the access trail")


def audit(request: Request, *, channel: str, action: AuditAction, actor: str | None = None,
          persons: Iterable[int] = (), outcome: str = "success", authority: str | None = None,
          detail: dict[str, Any] | None = None, principal: Principal | None = None,
          token_id: str | None = None, subject: str | None = None) -> None:
    """Trace one access to patient data (or a security event) made through this request,
    naming the authenticated principal: its kind and name, establishment, roles, token.
    The subject is the request's path and query, unless given (a query that carries a
    credential, such as an authorization code, stays out of the trail)."""
    container = _container(request)
    if principal is None:
        caller = getattr(request.state, "caller", None)
        principal = caller.principal if isinstance(caller, Caller) else None
    if subject is None:
        subject = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    container.audit.record(AuditEvent(
        occurred_at=container.clock.now(), channel=channel, action=action,
        actor=actor or (principal.actor_name if principal else ANONYMOUS),
        subject=subject, outcome=outcome,
        authority=authority or (principal.establishment if principal else None),
        source=request.client.host if request.client else None,
        persons=tuple(persons), detail=detail or {},
        roles=tuple(sorted(principal.roles)) if principal else (),
        token_id=token_id or (principal.token_id if principal else None),
    ))


ContainerDep = Annotated[Container, Depends(_container)]
