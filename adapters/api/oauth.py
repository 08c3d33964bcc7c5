"""The token endpoint (OAuth 2.0 client credentials, RFC 6749 §4.4, with SMART Backend
Services' signed client assertions, RFC 7523), the service's public keys, and the SMART
discovery documents.

Errors are RFC 6749 §5.2 JSON: ``invalid_client`` (401), ``invalid_grant``, ``invalid_scope``,
``invalid_request``, ``unsupported_grant_type`` (400); repeated failures for one client are
slowed down with 429 and ``Retry-After``. Every token issued and every refusal is in the access
trail (never a secret, an assertion or a token).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from adapters.auth.clients import (
    ASSERTION_ALGORITHMS,
    ASSERTION_TYPE,
    ClientRefused,
    KeySetCache,
    authenticate_assertion,
    authenticate_secret,
)
from adapters.auth.service import ScopeRefused
from adapters.auth.tokens import TokenRefused, unverified_claims
from adapters.http.deps import ContainerDep, audit, public
from adapters.logs import log_event
from mpi.audit import AuditAction
from mpi.security import RESOURCES, ApiClient

__all__ = ["router", "TOKEN_PATH"]

log = logging.getLogger("mpi.auth")

router = APIRouter(tags=["oauth"])

TOKEN_PATH = "/oauth/token"
JWKS_PATH = "/oauth/jwks.json"
FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_KEY_SETS = KeySetCache()


def _error(status: int, error: str, description: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={**_NO_STORE, **(headers or {})})


def _base(request: Request, public_url: str | None) -> str:
    return (public_url or str(request.base_url)).rstrip("/")


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


@router.post(TOKEN_PATH, summary="OAuth 2.0 token endpoint (client credentials)")
@public
async def token(request: Request, container: ContainerDep) -> JSONResponse:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        return _error(400, "invalid_request", f"send the request as {FORM}")
    form = await request.form()
    fields = {key: str(value) for key, value in form.items()}
    if fields.get("grant_type") != "client_credentials":
        return _error(400, "unsupported_grant_type",
                      "this service grants client_credentials only")
    service = container.auth
    settings = container.settings
    credentials = _basic(request.headers.get("authorization", ""))
    assertion = fields.get("client_assertion")
    claimed = credentials[0] if credentials else _claimed(assertion)
    limiter_key = claimed or (request.client.host if request.client else "unknown")
    wait = service.token_failures.retry_after(limiter_key)
    if wait:
        _trace(request, AuditAction.ALERT, claimed, "429",
               "too many failed authentications: slowed down")
        return _error(429, "invalid_client", "too many failed attempts; try again later",
                      {"Retry-After": str(int(wait) + 1)})
    audiences = sorted({_base(request, settings.public_url) + TOKEN_PATH,
                        str(request.url).split("?")[0]})

    def authenticate() -> ApiClient:
        with container.uow_factory() as uow:
            if credentials is not None and assertion is None:
                client = authenticate_secret(uow, *credentials)
            elif assertion is not None and credentials is None:
                if fields.get("client_assertion_type") != ASSERTION_TYPE:
                    raise ClientRefused(f"client_assertion_type must be {ASSERTION_TYPE}",
                                        claimed)
                client = authenticate_assertion(uow, assertion, audiences, _KEY_SETS,
                                                container.clock.now())
            else:
                raise ClientRefused("authenticate with HTTP Basic (client_secret_basic) or "
                                    "a signed client_assertion (private_key_jwt), one of them")
            uow.commit()
            return client

    try:
        client = await run_in_threadpool(authenticate)
    except ClientRefused as exc:
        service.token_failures.failed(limiter_key)
        _trace(request, AuditAction.ALERT, exc.client_id, "401", exc.message)
        return _error(401, "invalid_client", exc.message,
                      {"WWW-Authenticate": 'Basic realm="nancy-mpi"'})
    try:
        issued = service.issue_for_client(client, fields.get("scope"))
    except ScopeRefused as exc:
        _trace(request, AuditAction.ALERT, client.client_id, "400", exc.message)
        return _error(400, "invalid_scope", exc.message)
    service.token_failures.succeeded(limiter_key)
    _trace(request, AuditAction.AUTHENTICATE, client.client_id, "success", "token issued",
           token_id=issued.jti, establishment=client.establishment, scope=issued.scope)
    return JSONResponse({"access_token": issued.access_token, "token_type": "Bearer",
                         "expires_in": issued.expires_in, "scope": issued.scope},
                        headers=_NO_STORE)


def _claimed(assertion: str | None) -> str | None:
    if not assertion:
        return None
    try:
        issuer = unverified_claims(assertion).get("iss")
    except TokenRefused:
        return None
    return str(issuer) if issuer else None


def _trace(request: Request, action: AuditAction, client_id: str | None, outcome: str,
           reason: str, *, token_id: str | None = None, establishment: str | None = None,
           scope: str | None = None) -> None:
    actor = f"client:{client_id}" if client_id else "anonymous"
    log_event(log, logging.INFO if outcome == "success" else logging.WARNING,
              "token issued" if outcome == "success" else "token refused", client=client_id,
              address=request.client.host if request.client else None, outcome=outcome,
              reason=None if outcome == "success" else reason, scope=scope)
    detail: dict[str, Any] = {"reason": reason}
    if scope is not None:
        detail["scope"] = scope
    audit(request, channel="oauth", action=action, actor=actor, outcome=outcome,
          authority=establishment, detail=detail, token_id=token_id)


@router.get(JWKS_PATH, summary="The service's public signing keys (JWK set)")
@public
def jwks(container: ContainerDep) -> JSONResponse:
    return JSONResponse(container.auth.tokens.keys.jwks(),
                        headers={"Cache-Control": "public, max-age=300"})


def _smart_configuration(request: Request, container: Any) -> dict[str, Any]:
    base = _base(request, container.settings.public_url)
    return {
        "issuer": container.auth.tokens.issuer,
        "token_endpoint": base + TOKEN_PATH,
        "jwks_uri": base + JWKS_PATH,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "scopes_supported": [f"system/{resource}.{permissions}"
                             for resource in (*RESOURCES, "*")
                             for permissions in ("rs", "cud", "cruds")],
        "capabilities": ["client-confidential-symmetric", "client-confidential-asymmetric",
                         "permission-v2"],
    }


@router.get("/.well-known/smart-configuration", summary="SMART configuration")
@public
def smart_configuration(request: Request, container: ContainerDep) -> JSONResponse:
    return JSONResponse(_smart_configuration(request, container))


@router.get("/fhir/.well-known/smart-configuration", summary="SMART configuration (FHIR base)")
@public
def fhir_smart_configuration(request: Request, container: ContainerDep) -> JSONResponse:
    return JSONResponse(_smart_configuration(request, container))
