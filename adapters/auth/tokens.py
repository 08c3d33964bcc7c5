"""The service's access tokens: short-lived JWTs (ES256) signed by its own key, checked on
every request: signature, algorithm from an allow-list (never ``none``), issuer, audience,
expiry and not-before with a small clock skew, and the client not revoked since."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from adapters.auth.keys import ALGORITHM, SigningKeys
from adapters.errors import AdapterError
from mpi.ports import Clock
from mpi.security import Principal, parse_scopes, scopes_text

__all__ = ["TokenRefused", "IssuedToken", "TokenService", "LEEWAY", "unverified_claims"]

LEEWAY = 30  # seconds of clock skew tolerated between the service and its callers


class TokenRefused(AdapterError):
    """A bearer token that does not prove who the caller is: ``message`` says why (for the
    log and the audit trail, never the token itself)."""


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    jti: str


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT read WITHOUT checking its signature: only to route it to the keys
    that can check it (this service's, or an identity provider's). Raises TokenRefused for
    something that is not a JWT."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        data = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError) as exc:
        raise TokenRefused("the bearer token is not a JWT") from exc
    if not isinstance(data, dict):
        raise TokenRefused("the bearer token is not a JWT")
    return data


class TokenService:
    """Issues and checks the service's own access tokens."""

    def __init__(self, keys: SigningKeys, issuer: str, lifetime: int, clock: Clock) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = issuer  # tokens are for this service's APIs
        self.lifetime = lifetime
        self.clock = clock

    def issue(self, principal: Principal) -> IssuedToken:
        """A signed token for a client (or a person), with its scopes and roles."""
        now = int(self.clock.now().timestamp())
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": principal.name,
            "iat": now, "nbf": now, "exp": now + self.lifetime, "jti": jti,
            "scope": scopes_text(principal.scopes), "kind": principal.kind,
            "establishment": principal.establishment, "roles": sorted(principal.roles),
        }
        key = self.keys.signing
        token = jwt.encode({"alg": ALGORITHM, "kid": key.thumbprint(), "typ": "JWT"}, claims,
                           key, algorithms=[ALGORITHM])
        return IssuedToken(token, self.lifetime, claims["scope"], jti)

    def verify(self, token: str) -> Principal:
        """The principal a token of this service proves. Raises TokenRefused: bad signature,
        an algorithm other than ES256 (``none`` included), unknown key, wrong issuer or
        audience, expired or not yet valid."""
        try:
            header = jwt.decode(token, self.keys.key_set(), algorithms=[ALGORITHM])
        except JoseError as exc:
            raise TokenRefused(f"the token's signature does not verify ({exc.error})") from None
        except ValueError as exc:
            raise TokenRefused(f"the token is malformed ({exc})") from None
        claims = dict(header.claims)
        registry = JWTClaimsRegistry(
            leeway=LEEWAY, iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience}, exp={"essential": True},
            sub={"essential": True}, jti={"essential": True})
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise TokenRefused(f"the token is refused: {exc.description or exc.error}") from None
        try:
            scopes = parse_scopes(str(claims.get("scope", "")))
        except ValueError as exc:
            raise TokenRefused(f"the token's scopes are not readable: {exc}") from None
        return Principal(kind=str(claims.get("kind", "client")), name=str(claims["sub"]),
                         establishment=claims.get("establishment"),
                         roles=frozenset(claims.get("roles") or ()), scopes=scopes,
                         token_id=str(claims["jti"]), issuer=self.issuer)
