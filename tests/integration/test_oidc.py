"""An external OpenID Connect provider, started here on loopback (a real HTTP server with its
own keys), trusted by the service: its access tokens open the APIs with the roles and
establishment it vouches for, the console logs people in with it (authorization code with
PKCE), and whatever it did not sign, or signed for someone else, is refused. Nothing of the
service's validation is replaced."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.service import (
    LoopbackServer,
    RunningService,
    cheap_password_hashing,
    jwt_parts,
    service_log_records,
    start_service,
    unsigned_jwt,
)

CLIENT_ID = "nancy-mpi"
CLIENT_SECRET = "the service's secret at the provider"
API_AUDIENCE = "nancy-mpi-api"


@dataclass
class Provider:
    """A small OpenID Connect provider: discovery, JWKS, /authorize (it logs in whoever
    ``person`` says, at once) and /token (the code once, its PKCE verifier checked)."""

    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    person: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    exchanges: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # the tokens /token answered
    id_changes: dict[str, Any] = field(default_factory=dict)  # a flawed id token (None: no
    # such claim)
    server: LoopbackServer | None = None

    @property
    def issuer(self) -> str:
        assert self.server is not None
        return self.server.base

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None,
             kid: str = "provider-1") -> str:
        now = int(time.time())
        values = {"iss": self.issuer, "iat": now, "exp": now + 300, **claims}
        return jwt.encode({"alg": "RS256", "kid": kid, "typ": "JWT"}, values,
                          key or self.key, algorithms=["RS256"])

    def answer(self, method: str, path: str, query: dict[str, str], form: dict[str, str],
               headers: dict[str, str]) -> tuple[int, dict[str, str], object]:
        if path == "/.well-known/openid-configuration":
            return 200, {}, {"issuer": self.issuer,
                             "authorization_endpoint": self.issuer + "/authorize",
                             "token_endpoint": self.issuer + "/token",
                             "jwks_uri": self.issuer + "/jwks",
                             "response_types_supported": ["code"],
                             "code_challenge_methods_supported": ["S256"]}
        if path == "/jwks":
            public = {**self.key.as_dict(private=False), "kid": "provider-1", "use": "sig",
                      "alg": "RS256"}
            return 200, {}, {"keys": [public]}
        if path == "/authorize" and method == "GET":
            if (query.get("client_id") != CLIENT_ID or query.get("response_type") != "code"
                    or query.get("code_challenge_method") != "S256"):
                return 400, {}, {"error": "invalid_request"}
            code = secrets.token_urlsafe(16)
            self.codes[code] = query
            back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
            return 302, {"Location": back}, b""
        if path == "/token" and method == "POST":
            self.exchanges.append(form)
            expected = "Basic " + base64.b64encode(
                f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if headers.get("Authorization") != expected:
                return 401, {}, {"error": "invalid_client"}
            started = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if (started is None or form.get("grant_type") != "authorization_code"
                    or form.get("redirect_uri") != started["redirect_uri"]
                    or challenge != started["code_challenge"]):
                return 400, {}, {"error": "invalid_grant"}
            claims = {"aud": CLIENT_ID, "nonce": started["nonce"], "sub": "f:8a2c",
                      **self.person, **self.id_changes}
            id_token = self.sign({k: v for k, v in claims.items() if v is not None})
            access_token = self.sign({"aud": API_AUDIENCE, "sub": "f:8a2c", **self.person})
            self.issued += [id_token, access_token]
            return 200, {"Cache-Control": "no-store"}, {
                "id_token": id_token, "token_type": "Bearer", "expires_in": 300,
                "access_token": access_token}
        return 404, {}, {"error": "not found"}


@pytest.fixture(autouse=True)
def _fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


@pytest.fixture
def provider() -> Iterator[Provider]:
    made = Provider()
    with LoopbackServer(made.answer) as server:
        made.server = server
        yield made


@pytest.fixture
def service(database_url: str, tmp_path: Path, provider: Provider) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path, oidc_issuer=provider.issuer,
                            oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET,
                            oidc_audience=API_AUDIENCE, oidc_roles_claim="realm_access.roles",
                            oidc_establishment_claim="establishment")
    yield running
    running.stop()


def person(name: str, *roles: str, establishment: str | None = "CHRU") -> dict[str, Any]:
    claims: dict[str, Any] = {"preferred_username": name, "realm_access": {"roles": list(roles)}}
    if establishment:
        claims["establishment"] = establishment
    return claims


def refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_the_provider_s_access_tokens_open_the_apis_with_the_roles_it_vouches_for(
        service: RunningService, provider: Provider) -> None:
    base = service.http_base

    def fhir(token: str, path: str = "/fhir/Patient") -> httpx.Response:
        return httpx.get(base + path, params={"family": "NOBODY"} if path == "/fhir/Patient"
                         else None, headers={"Authorization": f"Bearer {token}"})

    token = provider.sign({"aud": API_AUDIENCE, "sub": "f:1",
                           "jti": "provider-token-1",
                           **person("dr.oidc", "clinician", "not-a-role-here")})
    answer = fhir(token)
    assert answer.status_code == 200, answer.text
    assert ("GET", "/jwks") in provider.server.requests  # type: ignore[union-attr]
    entry = next(e for e in service.container.audit.search(actor="user:dr.oidc")
                 if e.channel == "fhir")
    assert (entry.action.value, entry.roles, entry.authority, entry.token_id) == (
        "search", ("clinician",), "CHRU", "provider-token-1")
    # Its roles decide: a clinician reads patients, not the trail, and writes nothing.
    assert fhir(token, "/fhir/AuditEvent").status_code == 403
    assert httpx.put(base + "/fhir/Patient", params={"identifier": "urn:oid:1.2.250.1.999."
                                                                   "54.1|1"},
                     json={"resourceType": "Patient"},
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/fhir+json"}).status_code == 403
    auditor = provider.sign({"aud": API_AUDIENCE, **person("a.udit", "auditor",
                                                           establishment=None)})
    assert fhir(auditor, "/fhir/AuditEvent").status_code == 200
    assert fhir(auditor).status_code == 403
    # An audience given as a list, with ours in it, is ours.
    assert fhir(provider.sign({"aud": ["other", API_AUDIENCE],
                               **person("dr.oidc", "clinician")})).status_code == 200

    # Refused: another issuer, another audience (the id token's included), another key,
    # expired, unsigned, without a name.
    stranger = RSAKey.generate_key(2048, private=True)
    now = int(time.time())
    claims = {"aud": API_AUDIENCE, **person("dr.oidc", "clinician")}
    for reason, bad in {
        "another issuer": provider.sign({**claims, "iss": "https://idp.elsewhere.example"}),
        "the issuer's look-alike": provider.sign({**claims, "iss": provider.issuer + ".evil"}),
        "another audience": provider.sign({**claims, "aud": "another-service"}),
        "an id token (audience: the console's client)": provider.sign({**claims,
                                                                      "aud": CLIENT_ID}),
        "another key, same kid": provider.sign(claims, key=stranger),
        "another key, its own kid": provider.sign(claims, key=stranger, kid="stranger"),
        "expired": provider.sign({**claims, "iat": now - 900, "exp": now - 120}),
        "alg none": unsigned_jwt({**claims, "iss": provider.issuer, "exp": now + 60},
                                 kid="provider-1"),
    }.items():
        answer = fhir(bad)
        assert answer.status_code == 401, (reason, answer.text)
        refused(answer)
    alerts = [e for e in service.container.audit.search(limit=200)
              if e.action.value == "alert" and e.outcome == "401"]
    assert len(alerts) == 8


def follow_login(browser: httpx.Client, next: str = "/console/session"
                 ) -> tuple[httpx.Response, dict[str, str]]:
    """The browser's way from the console to the provider and back: the answer of the
    callback, and the query the provider's /authorize got."""
    start = browser.get("/console/oidc/start", params={"next": next})
    assert start.status_code == 303, start.text
    assert "mpi_oidc" in start.cookies
    authorize = start.headers["location"]
    asked = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    back = httpx.get(authorize)
    assert back.status_code == 302, back.text
    callback = urlsplit(back.headers["location"])
    return browser.get(f"{callback.path}?{callback.query}"), asked


def test_the_console_logs_people_in_through_the_provider_with_pkce(
        service: RunningService, provider: Provider,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider.person = person("dr.sso", "identity-vigilance", "clinician")
    browser = httpx.Client(base_url=service.http_base, timeout=30)
    login_page = browser.get("/console/login")
    assert "/console/oidc/start" in login_page.text

    answer, asked = follow_login(browser)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console/session"
    assert (asked["code_challenge_method"], asked["client_id"]) == ("S256", CLIENT_ID)
    assert asked["redirect_uri"] == service.http_base + "/console/oidc/callback"
    exchange = provider.exchanges[-1]
    assert exchange["code_verifier"] and exchange["code_verifier"] != asked["code_challenge"]
    cookie = [c for c in answer.headers.get_list("set-cookie")
              if c.startswith("mpi_session=")][0].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    session_cookie = browser.cookies["mpi_session"]
    me = browser.get("/console/session").json()
    assert (me["name"], me["roles"], me["establishment"], me["via"]) == (
        "dr.sso", ["clinician", "identity-vigilance"], "CHRU", "session")
    assert browser.get("/api/review").status_code == 200  # the mapped role at work
    logins = [e for e in service.container.audit.search(actor="user:dr.sso")
              if e.channel == "console"]
    assert [(e.action.value, e.outcome, e.detail["via"]) for e in logins] == [
        ("authenticate", "success", "oidc")]
    assert logins[0].roles == ("clinician", "identity-vigilance")
    browser.close()

    # A callback whose state is not the one this browser started with: refused, no session.
    browser = httpx.Client(base_url=service.http_base, timeout=30)
    start = browser.get("/console/oidc/start")
    back = httpx.get(start.headers["location"])
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    forged = browser.get("/console/oidc/callback", params={"code": code, "state": "forged"})
    assert forged.status_code == 400 and "mpi_session" not in forged.cookies
    # Without the browser's cookie (another browser), the state proves nothing either.
    state = parse_qs(urlsplit(back.headers["location"]).query)["state"][0]
    elsewhere = httpx.get(service.http_base + "/console/oidc/callback",
                          params={"code": code, "state": state})
    assert elsewhere.status_code == 400 and "mpi_session" not in elsewhere.cookies
    # A code from another login, brought with this login's state: the provider sees a PKCE
    # verifier that is not that code's, and refuses; so does the console.
    other = httpx.Client(base_url=service.http_base, timeout=30)
    other_back = httpx.get(other.get("/console/oidc/start").headers["location"])
    stolen = parse_qs(urlsplit(other_back.headers["location"]).query)["code"][0]
    mixed = browser.get("/console/oidc/callback", params={"code": stolen, "state": state})
    assert mixed.status_code == 401 and "mpi_session" not in mixed.cookies
    assert provider.exchanges[-1]["code"] == stolen  # the provider was asked, and said no
    # The provider sending the person back with an error.
    denied = browser.get("/console/oidc/callback", params={"error": "access_denied",
                                                           "state": state})
    assert denied.status_code == 401
    assert browser.get("/console/session").status_code == 303  # never logged in
    # An id token that is not this login's (another nonce, none, another audience) or is
    # expired: refused, though the provider did answer.
    for changes in ({"nonce": "another login's"}, {"nonce": None}, {"aud": API_AUDIENCE},
                    {"exp": int(time.time()) - 120}):
        provider.id_changes = changes
        flawed, _ = follow_login(browser)
        assert flawed.status_code == 401, (changes, flawed.text)
        assert "mpi_session" not in flawed.cookies
    provider.id_changes = {}
    other.close()
    browser.close()
    refusals = [e for e in service.container.audit.search(limit=200)
                if e.channel == "console" and e.action.value == "alert"]
    assert sorted(e.outcome for e in refusals) == ["400", "400", *["401"] * 6]

    # Nothing of the exchange is in the service's logs or its trail: not the code, the
    # verifier, the tokens, the service's secret at the provider, nor the session's cookie.
    secret_values = {CLIENT_SECRET, exchange["code"], exchange["code_verifier"],
                     session_cookie, me["csrf"]}
    lines = [" ".join([r.getMessage(), *map(str, vars(r).values())])
             for r in service_log_records(caplog.records)]
    assert any("console login" in line for line in lines)
    trail = [repr(e) for e in service.container.audit.search(limit=500)]
    for value in secret_values:
        assert not [line for line in lines if value in line]
        assert not [entry for entry in trail if value in entry], value
    for value in (provider.issued[0], provider.issued[1]):  # id token and access token
        assert not [line for line in lines if value.split(".")[2] in line]


def test_a_token_of_the_provider_is_checked_against_its_keys_once_they_rotate(
        service: RunningService, provider: Provider) -> None:
    claims = {"aud": API_AUDIENCE, **person("dr.rotation", "clinician")}
    assert httpx.get(service.http_base + "/fhir/Patient", params={"family": "X"}, headers={
        "Authorization": f"Bearer {provider.sign(claims)}"}).status_code == 200
    old = provider.sign(claims)
    provider.key = RSAKey.generate_key(2048, private=True)  # the provider rotates its key
    new = provider.sign(claims)
    assert httpx.get(service.http_base + "/fhir/Patient", params={"family": "X"}, headers={
        "Authorization": f"Bearer {new}"}).status_code == 200  # keys fetched again
    refused(httpx.get(service.http_base + "/fhir/Patient", params={"family": "X"},
                      headers={"Authorization": f"Bearer {old}"}))
    assert jwt_parts(new)[0]["kid"] == jwt_parts(old)[0]["kid"]  # same kid, new key
