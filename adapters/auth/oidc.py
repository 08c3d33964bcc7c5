"""An external OpenID Connect provider (a hospital's Keycloak, Pro Santé Connect): the access
tokens it signed are accepted on the APIs, checked against its published keys, issuer and
audience; and the console logs people in with it (authorization code with PKCE). Roles and
establishment come from claims whose names are configured (a dotted name reads a nested
claim: Keycloak's ``realm_access.roles``)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from adapters.auth.tokens import LEEWAY, TokenRefused
from mpi.security import ROLES, Principal

__all__ = ["OidcSettings", "OidcProvider", "PkceStart", "ALGORITHMS"]

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str | None = None
    audience: str | None = None  # default: the client id
    name_claim: str = "preferred_username"
    roles_claim: str = "roles"
    establishment_claim: str = "establishment"


@dataclass(frozen=True)
class PkceStart:
    """What the console keeps between sending a person to the provider and their return."""

    url: str
    state: str
    nonce: str
    verifier: str


class OidcProvider:
    """One configured provider; its discovery document and keys are fetched when first
    needed, the keys again when a token names one they do not hold (a rotation)."""

    def __init__(self, settings: OidcSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self._http = http or httpx.Client(timeout=10.0)
        self._discovery: dict[str, Any] | None = None
        self._keys: tuple[float, KeySet] | None = None

    @property
    def issuer(self) -> str:
        return self.settings.issuer.rstrip("/")

    def discovery(self) -> dict[str, Any]:
        """Raises TokenRefused when the provider does not answer its discovery document."""
        if self._discovery is None:
            url = f"{self.issuer}/.well-known/openid-configuration"
            self._discovery = self._get_json(url)
        return self._discovery

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            answer = self._http.get(url)
            answer.raise_for_status()
            document = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenRefused(f"the identity provider did not answer {url}: {exc}") from None
        if not isinstance(document, dict):
            raise TokenRefused(f"the identity provider's {url} is not a JSON object")
        return document

    def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh or time.monotonic() - self._keys[0] > 3600:
            document = self._get_json(str(self.discovery()["jwks_uri"]))
            self._keys = (time.monotonic(), KeySet.import_key_set(document))  # type: ignore[arg-type]
        return self._keys[1]

    def verify(self, token: str, *, audience: str | None = None,
               nonce: str | None = None) -> Principal:
        """The person a token of this provider proves. Raises TokenRefused (signature,
        algorithm, issuer, audience, expiry, nonce; no name claim)."""
        try:
            try:
                decoded = jwt.decode(token, self._key_set(), algorithms=ALGORITHMS)
            except JoseError:
                decoded = jwt.decode(token, self._key_set(refresh=True), algorithms=ALGORITHMS)
        except JoseError as exc:
            raise TokenRefused(f"the provider's token does not verify ({exc.error})") from None
        except ValueError as exc:
            raise TokenRefused(f"the provider's token is malformed ({exc})") from None
        claims = dict(decoded.claims)
        wanted = audience or self.settings.audience or self.settings.client_id
        registry = JWTClaimsRegistry(leeway=LEEWAY, iss={"essential": True,
                                                         "values": [self.issuer,
                                                                    self.issuer + "/"]},
                                     exp={"essential": True})
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise TokenRefused(f"the provider's token is refused: "
                               f"{exc.description or exc.error}") from None
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or ())
        if wanted not in audiences and claims.get("azp") != wanted:
            raise TokenRefused(f"the provider's token is not meant for {wanted}")
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRefused("the provider's token does not carry the login's nonce")
        return self.principal(claims)

    def principal(self, claims: dict[str, Any]) -> Principal:
        s = self.settings
        name = _claim(claims, s.name_claim) or claims.get("sub")
        if not name:
            raise TokenRefused(f"the provider's token has no {s.name_claim} nor sub claim")
        found = _claim(claims, s.roles_claim) or ()
        roles = found.split() if isinstance(found, str) else [str(r) for r in found]
        establishment = _claim(claims, s.establishment_claim)
        return Principal(kind="user", name=str(name),
                         establishment=str(establishment) if establishment else None,
                         roles=frozenset(r for r in roles if r in ROLES),
                         token_id=str(claims.get("jti") or "") or None, issuer=self.issuer)

    # -- console login: authorization code with PKCE ---------------------------------------

    def start_login(self, redirect_uri: str) -> PkceStart:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        query = urlencode({"response_type": "code", "client_id": self.settings.client_id,
                           "redirect_uri": redirect_uri, "scope": "openid profile",
                           "state": state, "nonce": nonce, "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        endpoint = str(self.discovery()["authorization_endpoint"])
        return PkceStart(f"{endpoint}?{query}", state, nonce, verifier)

    def finish_login(self, code: str, redirect_uri: str, start: PkceStart) -> Principal:
        """Exchange the code for the person's tokens. Raises TokenRefused."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": self.settings.client_id, "code_verifier": start.verifier}
        auth = ((self.settings.client_id, self.settings.client_secret)
                if self.settings.client_secret else None)
        try:
            answer = self._http.post(str(self.discovery()["token_endpoint"]), data=data,
                                     auth=auth)  # type: ignore[arg-type]
            answer.raise_for_status()
            tokens = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TokenRefused(f"the identity provider refused the login: {exc}") from None
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not id_token:
            raise TokenRefused("the identity provider answered no id_token")
        return self.verify(str(id_token), audience=self.settings.client_id, nonce=start.nonce)


def _claim(claims: dict[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
