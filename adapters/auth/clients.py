"""How a registered system proves who it is at the token endpoint: its secret
(``client_secret_basic``) or a JWT it signed with one of its keys (``private_key_jwt``,
RFC 7523 as SMART Backend Services profile it: RS384 or ES384, ``iss`` = ``sub`` = the client
id, ``aud`` = the token endpoint, ``exp`` at most five minutes ahead, a ``jti`` never seen
before)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from adapters.auth.passwords import verify_secret
from adapters.auth.tokens import LEEWAY, TokenRefused, unverified_claims
from adapters.errors import AdapterError
from mpi.security import ApiClient, SecurityUnitOfWork

__all__ = ["ClientRefused", "ASSERTION_TYPE", "ASSERTION_ALGORITHMS", "authenticate_secret",
           "authenticate_assertion", "KeySetCache"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = 300  # seconds: SMART's "no more than five minutes in the future"


class ClientRefused(AdapterError):
    """The client could not be authenticated (``invalid_client``): ``message`` says why, for
    the log and the audit trail; ``client_id`` names who it claimed to be, when known."""

    def __init__(self, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.client_id = client_id


def authenticate_secret(uow: SecurityUnitOfWork, client_id: str, secret: str) -> ApiClient:
    """The client whose id and secret these are. Raises ClientRefused (unknown, revoked, no
    secret registered, wrong secret; each costs one slow hash)."""
    client = uow.clients.get(client_id)
    if not verify_secret(client.secret_hash if client else None, secret) or client is None:
        raise ClientRefused("unknown client or wrong secret", client_id)
    if client.is_revoked:
        raise ClientRefused("the client is revoked", client_id)
    return client


class KeySetCache:
    """The JWK sets of clients registered by URL, fetched when first needed and again after
    ``ttl`` seconds, or when an assertion names a key the cached set does not hold."""

    def __init__(self, ttl: float = 300.0,
                 fetch: Callable[[str], dict[str, Any]] | None = None) -> None:
        self.ttl = ttl
        self._fetch = fetch or _fetch_key_set
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, url: str, kid: str | None) -> dict[str, Any]:
        cached = self._cache.get(url)
        fresh = cached is not None and time.monotonic() - cached[0] < self.ttl
        if cached is not None and fresh and (kid is None or _holds(cached[1], kid)):
            return cached[1]
        document = self._fetch(url)
        self._cache[url] = (time.monotonic(), document)
        return document


def _holds(document: dict[str, Any], kid: str) -> bool:
    return any(key.get("kid") == kid for key in document.get("keys", ()))


def _fetch_key_set(url: str) -> dict[str, Any]:
    """Raises ClientRefused when the URL does not answer a JWK set."""
    try:
        answer = httpx.get(url, timeout=5.0, follow_redirects=False)
        answer.raise_for_status()
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ClientRefused(f"the client's JWK set at {url} could not be read: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ClientRefused(f"{url} does not answer a JWK set")
    return document


def authenticate_assertion(uow: SecurityUnitOfWork, assertion: str, audiences: list[str],
                           key_sets: KeySetCache, now: datetime | None = None) -> ApiClient:
    """The client that signed this assertion. Raises ClientRefused: not a JWT, unknown or
    revoked client, no key registered, an algorithm other than RS384/ES384, a signature that
    does not verify, wrong issuer, subject or audience, expired, too far in the future,
    without a jti, or a jti already used."""
    try:
        claims = unverified_claims(assertion)
    except TokenRefused as exc:
        raise ClientRefused(exc.message) from None
    client_id = str(claims.get("iss", ""))
    client = uow.clients.get(client_id)
    if client is None:
        raise ClientRefused("unknown client", client_id or None)
    if client.is_revoked:
        raise ClientRefused("the client is revoked", client_id)
    document = client.jwks
    if document is None and client.jwks_url:
        document = key_sets.get(client.jwks_url, _kid_of(assertion))
    if document is None:
        raise ClientRefused("the client has no key registered (it authenticates with its "
                            "secret)", client_id)
    try:
        keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        token = jwt.decode(assertion, keys, algorithms=ASSERTION_ALGORITHMS)
    except JoseError as exc:
        raise ClientRefused(f"the assertion does not verify ({exc.error})", client_id) from None
    except ValueError as exc:
        raise ClientRefused(f"the assertion is malformed ({exc})", client_id) from None
    verified = dict(token.claims)
    registry = JWTClaimsRegistry(
        leeway=LEEWAY, iss={"essential": True, "value": client_id},
        sub={"essential": True, "value": client_id},
        aud={"essential": True, "values": audiences}, exp={"essential": True},
        jti={"essential": True})
    try:
        registry.validate(verified)
    except JoseError as exc:
        raise ClientRefused(f"the assertion is refused: {exc.description or exc.error}",
                            client_id) from None
    moment = now or datetime.now(UTC)
    expires = int(verified["exp"])
    if expires > moment.timestamp() + MAX_ASSERTION_LIFETIME + LEEWAY:
        raise ClientRefused("the assertion expires more than five minutes ahead", client_id)
    if not uow.assertions.remember(str(verified["jti"]), client_id,
                                   datetime.fromtimestamp(expires, UTC)):
        raise ClientRefused("the assertion's jti was used already (a replay)", client_id)
    return client


def _kid_of(assertion: str) -> str | None:
    import base64
    import json

    try:
        header = assertion.split(".")[0]
        header += "=" * (-len(header) % 4)
        kid = json.loads(base64.urlsafe_b64decode(header)).get("kid")
    except (IndexError, ValueError, AttributeError):
        return None
    return str(kid) if kid else None
