"""Who may call the HTTP interface, checked the way callers meet it: the whole service on
loopback, real sockets, httpx; tokens from /oauth/token (a secret, or an assertion signed by a
key made here), tokens crafted to be refused, console sessions, the routing table walked
without credentials, writes outside one's own domain, the trail as FHIR AuditEvent, and no
secret in any log line or trail entry. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import select

from adapters.auth.clients import ASSERTION_TYPE
from adapters.auth.keys import SigningKeys
from adapters.bootstrap import http_app
from adapters.cli import main
from adapters.http.deps import is_public
from adapters.sql.tables import audit_events, audit_persons
from tests.dicom_objects import UNCOMPRESSED_CT, relabel
from tests.service import (
    PASSWORD,
    LoopbackServer,
    RunningService,
    b64url,
    cheap_password_hashing,
    jwt_parts,
    service_log_records,
    start_service,
    unsigned_jwt,
)

CHRU, MRUN = "urn:oid:1.2.250.1.999.54.1", "urn:oid:1.2.250.1.999.54.3"
TOKEN = "/oauth/token"
FHIR_JSON = "application/fhir+json"


@pytest.fixture(autouse=True)
def _fast_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_password_hashing(monkeypatch)


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path)
    yield running
    running.stop()


def rfc6749(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """An RFC 6749 §5.2 error answer: JSON with ``error`` and a description, never cached."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert body["error_description"]
    return body


def unauthorized(response: httpx.Response, fhir: bool = False) -> None:
    """401 with a Bearer challenge (and on FHIR routes an OperationOutcome ``login``)."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer realm="nancy-mpi"')
    if fhir:
        assert response.headers["content-type"].startswith(FHIR_JSON)
        issue = response.json()["issue"][0]
        assert (response.json()["resourceType"], issue["code"]) == ("OperationOutcome", "login")


def forbidden(response: httpx.Response, fhir: bool = False) -> None:
    assert response.status_code == 403, response.text
    if fhir:
        issue = response.json()["issue"][0]
        assert (response.json()["resourceType"], issue["code"]) == ("OperationOutcome",
                                                                    "forbidden")
        assert issue["diagnostics"]


def patient(system: str, value: str, family: str = "DUPONT") -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}],
            "name": [{"family": family, "given": ["Jean"]}], "gender": "male",
            "birthDate": "1980-01-02"}


def put_patient(service: RunningService, headers: dict[str, str], system: str,
                value: str, family: str = "DUPONT") -> httpx.Response:
    return httpx.put(service.http_base + "/fhir/Patient",
                     params={"identifier": f"{system}|{value}"},
                     json=patient(system, value, family),
                     headers={**headers, "Content-Type": FHIR_JSON})


def trail(service: RunningService, actor: str) -> list[tuple[str, str, str]]:
    """(channel, action, outcome) of the actor's entries, oldest first."""
    return [(e.channel, e.action.value, e.outcome)
            for e in reversed(service.container.audit.search(actor=actor, limit=1000))]


# -- 1. the token endpoint with a client secret ------------------------------------------------

def test_the_token_endpoint_grants_client_credentials_and_refuses_in_rfc6749_terms(
        service: RunningService) -> None:
    base = service.http_base
    auth = service.container.auth
    his = auth.add_client("his-chru", "system/Patient.rs system/Patient.cud", "CHRU")
    his_id, his_secret = his.client.client_id, his.secret
    assert his_secret is not None

    granted = httpx.post(base + TOKEN, data={"grant_type": "client_credentials",
                                             "scope": "system/Patient.rs"},
                         auth=(his_id, his_secret))
    assert granted.status_code == 200, granted.text
    assert granted.headers["cache-control"] == "no-store"
    body = granted.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == (
        "Bearer", 300, "system/Patient.rs")
    # The token is a JWT signed by a key published at /oauth/jwks.json, with its claims.
    published = httpx.get(base + "/oauth/jwks.json").json()
    header, _ = jwt_parts(body["access_token"])
    assert header["alg"] == "ES256"
    assert header["kid"] in {key["kid"] for key in published["keys"]}
    claims = jwt.decode(body["access_token"], KeySet.import_key_set(published),
                        algorithms=["ES256"]).claims
    issuer = auth.tokens.issuer
    assert (claims["iss"], claims["aud"], claims["sub"]) == (issuer, issuer, his_id)
    assert claims["exp"] - claims["iat"] == 300
    assert abs(claims["iat"] - time.time()) < 60
    assert (claims["scope"], claims["establishment"]) == ("system/Patient.rs", "CHRU")
    assert len(claims["jti"]) >= 16
    # Discovery documents name the same endpoint and keys, on both paths.
    smart = httpx.get(base + "/.well-known/smart-configuration").json()
    assert smart == httpx.get(base + "/fhir/.well-known/smart-configuration").json()
    assert (smart["token_endpoint"], smart["jwks_uri"]) == (base + TOKEN,
                                                            base + "/oauth/jwks.json")
    assert smart["token_endpoint_auth_methods_supported"] == ["client_secret_basic",
                                                              "private_key_jwt"]
    security = httpx.get(base + "/fhir/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"] == [{"url": "token",
                                                      "valueUri": base + TOKEN}]
    # The token opens the FHIR API; without a scope the client gets all of its own.
    reads = httpx.get(base + "/fhir/Patient", params={"family": "NOBODY"},
                      headers={"Authorization": f"Bearer {body['access_token']}"})
    assert reads.status_code == 200, reads.text
    default = httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                         auth=(his_id, his_secret))
    assert default.status_code == 200
    assert default.json()["scope"] == "system/Patient.cud system/Patient.rs"

    # Refusals, in RFC 6749 §5.2 terms.
    for scope in ("system/ImagingStudy.rs", "system/*.rs", "system/AuditEvent.s",
                  "launch/patient"):
        rfc6749(httpx.post(base + TOKEN, data={"grant_type": "client_credentials",
                                               "scope": scope}, auth=(his_id, his_secret)),
                400, "invalid_scope")
    for grant in ("password", "authorization_code", ""):
        rfc6749(httpx.post(base + TOKEN, data={"grant_type": grant},
                           auth=(his_id, his_secret)), 400, "unsupported_grant_type")
    rfc6749(httpx.post(base + TOKEN, json={"grant_type": "client_credentials"},
                       auth=(his_id, his_secret)), 400, "invalid_request")
    wrong = httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                       auth=(his_id, his_secret + "x"))
    rfc6749(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    rfc6749(httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                       auth=("no-such-client", his_secret)), 401, "invalid_client")
    rfc6749(httpx.post(base + TOKEN, data={"grant_type": "client_credentials"}),
            401, "invalid_client")
    rfc6749(httpx.post(base + TOKEN, data={  # client_secret_post is not offered
        "grant_type": "client_credentials", "client_id": his_id, "client_secret": his_secret}),
        401, "invalid_client")
    # The trail has the tokens issued (with their jti) and the refusals.
    entries = service.container.audit.search(actor=f"client:{his_id}")
    issued = [e for e in entries if e.action.value == "authenticate"]
    assert claims["jti"] in {e.token_id for e in issued}
    assert all(e.channel == "oauth" and e.outcome == "success" and e.authority == "CHRU"
               for e in issued)
    assert {(e.channel, e.action.value, e.outcome) for e in entries
            if e.action.value == "alert"} == {("oauth", "alert", "400"),
                                               ("oauth", "alert", "401")}
    assert ("oauth", "alert", "401") in trail(service, "client:no-such-client")

    # Repeated failures for one client are slowed down, even with the right secret then.
    pacs = auth.add_client("pacs", "system/ImagingStudy.rs", "CHRU")
    assert pacs.secret is not None
    for _ in range(5):
        rfc6749(httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                           auth=(pacs.client.client_id, "guessed")), 401, "invalid_client")
    slowed = httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                        auth=(pacs.client.client_id, pacs.secret))
    rfc6749(slowed, 429, "invalid_client")
    assert int(slowed.headers["retry-after"]) >= 1
    assert trail(service, f"client:{pacs.client.client_id}") == [
        *[("oauth", "alert", "401")] * 5, ("oauth", "alert", "429")]
    # Other clients are not slowed down by it.
    assert httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                      auth=(his_id, his_secret)).status_code == 200

    # A revoked client's token stops working at once, and it gets no new one.
    auth.revoke_client("his-chru")
    revoked = httpx.get(base + "/fhir/Patient", params={"family": "NOBODY"},
                        headers={"Authorization": f"Bearer {body['access_token']}"})
    unauthorized(revoked, fhir=True)
    assert 'error="invalid_token"' in revoked.headers["www-authenticate"]
    rfc6749(httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                       auth=(his_id, his_secret)), 401, "invalid_client")


# -- 2. JWT client assertions (private_key_jwt) -----------------------------------------------

def public_set(*keys: tuple[RSAKey | ECKey, str, str]) -> dict[str, Any]:
    """A JWK set of the public halves of (key, kid, alg)."""
    return {"keys": [{**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
                     for key, kid, alg in keys]}


def assertion(key: RSAKey | ECKey, alg: str, kid: str, client_id: str,
              audience: str | list[str], **claims: Any) -> str:
    now = int(time.time())
    values: dict[str, Any] = {"iss": client_id, "sub": client_id, "aud": audience,
                              "iat": now, "exp": now + 240, "jti": secrets.token_hex(16)}
    values.update(claims)
    return jwt.encode({"alg": alg, "kid": kid, "typ": "JWT"},
                      {k: v for k, v in values.items() if v is not None}, key,
                      algorithms=[alg])


def with_assertion(service: RunningService, signed: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed, **extra}
    return httpx.post(service.http_base + TOKEN, data=data)


def test_signed_client_assertions_are_accepted_once_and_every_flawed_one_is_refused(
        service: RunningService) -> None:
    audience = service.http_base + TOKEN
    rsa, ec = RSAKey.generate_key(2048, private=True), ECKey.generate_key("P-384", private=True)
    stranger = RSAKey.generate_key(2048, private=True)
    inline = service.container.auth.add_client(
        "pacs-inline", "system/ImagingStudy.rs system/ImagingStudy.c", "CHRU",
        jwks=public_set((rsa, "rsa-1", "RS384"), (ec, "ec-1", "ES384")))
    assert inline.secret is None  # a client with keys has no secret
    pacs = inline.client.client_id

    def good(key: RSAKey | ECKey = rsa, alg: str = "RS384", kid: str = "rsa-1",
             client_id: str = pacs) -> httpx.Response:
        answer = with_assertion(service, assertion(key, alg, kid, client_id, audience))
        assert answer.status_code == 200, answer.text
        return answer

    answer = good()
    assert answer.json()["scope"] == "system/ImagingStudy.c system/ImagingStudy.rs"
    claims = jwt_parts(answer.json()["access_token"])[1]
    assert (claims["sub"], claims["establishment"]) == (pacs, "CHRU")
    good(ec, "ES384", "ec-1")
    narrowed = with_assertion(service, assertion(ec, "ES384", "ec-1", pacs, audience),
                              scope="system/ImagingStudy.rs")
    assert narrowed.json()["scope"] == "system/ImagingStudy.rs"

    listed = with_assertion(service, assertion(rsa, "RS384", "rsa-1", pacs,
                                               [audience, "https://another.example/token"]))
    assert listed.status_code == 200, listed.text  # an audience among others (RFC 7519)
    replayed = assertion(rsa, "RS384", "rsa-1", pacs, audience)
    assert with_assertion(service, replayed).status_code == 200
    assert "replay" in rfc6749(with_assertion(service, replayed), 401,
                               "invalid_client")["error_description"]
    now = int(time.time())
    flawed = {
        "wrong audience": assertion(rsa, "RS384", "rsa-1", pacs, "https://elsewhere/token"),
        "expired": assertion(rsa, "RS384", "rsa-1", pacs, audience, iat=now - 600,
                             exp=now - 120),
        "exp too far ahead": assertion(rsa, "RS384", "rsa-1", pacs, audience, exp=now + 600),
        "iss is not sub": assertion(rsa, "RS384", "rsa-1", pacs, audience, sub="someone"),
        "no jti": assertion(rsa, "RS384", "rsa-1", pacs, audience, jti=None),
        "no exp": assertion(rsa, "RS384", "rsa-1", pacs, audience, exp=None),
        "not yet valid": assertion(rsa, "RS384", "rsa-1", pacs, audience, nbf=now + 200),
        "unknown kid": assertion(rsa, "RS384", "rsa-9", pacs, audience),
        "another key": assertion(stranger, "RS384", "rsa-1", pacs, audience),
        "RS256, not allowed": assertion(rsa, "RS256", "rsa-1", pacs, audience),
        "alg none": unsigned_jwt({"iss": pacs, "sub": pacs, "aud": audience, "exp": now + 60,
                                  "jti": secrets.token_hex(8)}, kid="rsa-1"),
        "not a JWT": "not-a-jwt",
    }
    for reason, signed in flawed.items():
        refused = with_assertion(service, signed)
        assert refused.status_code == 401, (reason, refused.text)
        rfc6749(refused, 401, "invalid_client")
        good()  # a success clears the failures, so that the limiter does not interfere
    rfc6749(with_assertion(service, assertion(rsa, "RS384", "rsa-1", pacs, audience),
                           client_assertion_type="urn:other"), 401, "invalid_client")
    both = httpx.post(audience, auth=(pacs, "secret"), data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(rsa, "RS384", "rsa-1", pacs, audience)})
    rfc6749(both, 401, "invalid_client")
    refusals = [e for e in service.container.audit.search(actor=f"client:{pacs}", limit=1000)
                if e.action.value == "alert"]
    assert len(refusals) == len(flawed) - 1 + 2  # and the replay, the wrong type; not a JWT:
    # anonymous
    assert all(e.channel == "oauth" and e.outcome == "401" for e in refusals)

    # A client whose keys are published at a URL (served here on loopback).
    published = public_set((ec, "url-ec", "ES384"))
    with LoopbackServer(lambda method, path, *_: (200, {}, published) if path == "/jwks.json"
                        else (404, {}, {})) as keys_server:
        viewer = service.container.auth.add_client(
            "viewer", "system/Patient.rs", jwks_url=keys_server.base + "/jwks.json")
        viewer_id = viewer.client.client_id
        by_url = good(ec, "ES384", "url-ec", viewer_id)
        assert jwt_parts(by_url.json()["access_token"])[1]["establishment"] is None
        assert ("GET", "/jwks.json") in keys_server.requests
        rfc6749(with_assertion(service, assertion(rsa, "RS384", "rsa-1", viewer_id, audience)),
                401, "invalid_client")
        # A key added at the URL is fetched when an assertion names it.
        published["keys"].append(public_set((rsa, "url-rsa", "RS384"))["keys"][0])
        good(rsa, "RS384", "url-rsa", viewer_id)
    # A revoked client's assertions are refused.
    service.container.auth.revoke_client("pacs-inline")
    rfc6749(with_assertion(service, assertion(rsa, "RS384", "rsa-1", pacs, audience)), 401,
            "invalid_client")


# -- 3. access tokens on the APIs -------------------------------------------------------------

def test_apis_refuse_missing_expired_forged_and_misdirected_tokens_and_check_scopes(
        service: RunningService) -> None:
    base = service.http_base
    writer = service.bearer("system/Patient.cruds", "CHRU", name="his")
    assert put_patient(service, writer, CHRU, "4242", "LEGRAND").status_code == 201
    reader = service.token("system/Patient.rs", "CHRU", name="reader")
    good_header, good_claims = jwt_parts(reader)

    def fhir(token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(base + "/fhir/Patient", params={"family": "legrand"}, headers=headers)

    assert fhir(reader).json()["total"] == 1
    unauthorized(fhir(None), fhir=True)
    for path in ("/dicomweb/studies", "/api/review", "/fhir/AuditEvent"):
        unauthorized(httpx.get(base + path))

    # Tokens signed with the service's own key (read from its data folder) but wrong.
    key = SigningKeys(service.container.settings.data_dir / "keys").signing

    def signed(signing: ECKey = key, kid: str | None = None, **changes: Any) -> str:
        claims = {k: v for k, v in {**good_claims, **changes}.items() if v is not None}
        return jwt.encode({"alg": "ES256", "typ": "JWT", "kid": kid or signing.thumbprint()},
                          claims, signing, algorithms=["ES256"])

    assert signed() != reader and fhir(signed()).status_code == 200  # crafted right
    now = int(time.time())
    header, payload, signature = reader.split(".")
    tampered_claims = {**good_claims, "scope": "system/*.cruds"}
    stranger = ECKey.generate_key("P-256", private=True)
    refused = {
        "expired": signed(iat=now - 900, nbf=now - 900, exp=now - 120),
        "not yet valid": signed(nbf=now + 600, exp=now + 900),
        "without exp": signed(exp=None),
        "wrong audience": signed(aud="https://another-service.example"),
        "wrong issuer": signed(iss="https://another-service.example"),
        "unknown key": signed(stranger),
        "another key under the service's kid": signed(stranger, kid=str(good_header["kid"])),
        "tampered payload": f"{header}.{b64url(tampered_claims)}.{signature}",
        "alg none": unsigned_jwt(good_claims, kid=good_header["kid"]),
        "signature cut": f"{header}.{payload}.",
        "not a JWT": "opaque-token",
    }
    for reason, token in refused.items():
        answer = fhir(token)
        assert answer.status_code == 401, (reason, answer.text)
        unauthorized(answer, fhir=True)
        assert 'error="invalid_token"' in answer.headers["www-authenticate"], reason
    unauthorized(httpx.get(base + "/fhir/Patient", headers={"Authorization": "Bearer"}),
                 fhir=True)
    alerts = [e for e in service.container.audit.search(limit=1000)
              if e.action.value == "alert" and e.outcome == "401" and e.channel == "http"]
    assert len(alerts) >= len(refused) + 5
    assert all(e.actor == "anonymous" and e.source == "127.0.0.1" for e in alerts)

    # A valid token whose scopes do not cover the interaction: 403.
    reading = {"Authorization": f"Bearer {reader}"}
    forbidden(httpx.get(base + "/fhir/ImagingStudy", headers=reading), fhir=True)
    forbidden(httpx.get(base + "/fhir/AuditEvent", headers=reading), fhir=True)
    forbidden(put_patient(service, reading, CHRU, "4243"), fhir=True)
    forbidden(httpx.get(base + "/dicomweb/studies", headers=reading))
    imaging = service.bearer("system/ImagingStudy.rs", "CHRU", name="viewer")
    forbidden(httpx.get(base + "/fhir/Patient", params={"family": "legrand"},
                        headers=imaging), fhir=True)
    assert ("http", "alert", "403") in trail(service, service.actor("reader"))
    # A system is not a person: the review queue needs a role.
    forbidden(httpx.get(base + "/api/review", headers=writer))

    # /health stays open and tells nothing about patients.
    health = httpx.get(base + "/health")
    assert health.status_code == 200
    assert set(health.json()) == {"status", "database", "version", "jobs", "archive"}
    master = put_patient(service, writer, CHRU, "4242", "LEGRAND").json()["id"]
    assert not {"LEGRAND", "4242", master, "Jean"} & set(_words(health.text))


def _words(text: str) -> list[str]:
    return [w.strip('"{}[],:') for w in text.replace(",", " ").split()]


# -- 4. the routing table, walked without credentials -----------------------------------------

# Open to anyone: they show no patient data.
PUBLIC = {"/health", "/health/live", "/health/ready", "/docs", "/openapi.yaml", "/oauth/token", "/oauth/jwks.json",
          "/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration",
          "/fhir/metadata", "/console/login", "/console/oidc/start", "/console/oidc/callback"}
# Static files and FastAPI's own JSON rendering of the same API description as /openapi.yaml.
DOCUMENTS = {"/docs/assets", "/console/static", "/openapi.json"}


def routes(app: Any) -> Iterator[tuple[str, set[str], Any]]:
    """Every route of the application, included routers flattened: (path, methods,
    endpoint)."""

    # FastAPI keeps an included router whole (its private _IncludedRouter) since 0.13x;
    # before, its routes were copied flat into the application's.
    included = getattr(fastapi.routing, "_IncludedRouter", ())

    def walk(entries: list[Any]) -> Iterator[tuple[str, set[str], Any]]:
        for entry in entries:
            if isinstance(entry, included):
                yield from walk(entry.effective_candidates())
            elif hasattr(entry, "original_route"):  # a route of an included router
                route = entry.starlette_route or entry.original_route
                yield (entry.path_format or route.path, set(entry.methods or
                                                             getattr(route, "methods", ())),
                       entry.endpoint or getattr(route, "endpoint", None))
            else:
                yield entry.path, set(getattr(entry, "methods", None) or ()), getattr(
                    entry, "endpoint", None)

    yield from walk(list(app.routes))


def test_every_route_but_the_public_ones_refuses_callers_without_credentials(
        service: RunningService) -> None:
    found = list(routes(http_app(service.container)))
    paths = {path for path, _, _ in found}
    assert {"/fhir/Patient", "/dicomweb/studies", "/api/review", "/fhir/AuditEvent",
            "/api/lifecycle/proposals", "/console/session"} <= paths  # the walk sees them
    assert {path for path, _, endpoint in found if is_public(endpoint)} == PUBLIC
    served = []
    tried = 0
    for path, methods, _endpoint in found:
        if path in DOCUMENTS:
            continue
        url = service.http_base + path.replace("{", "").replace("}", "")
        for method in sorted(methods - {"HEAD"}):
            answer = httpx.request(method, url)
            if 200 <= answer.status_code < 300:
                served.append(f"{method} {path} -> {answer.status_code}")
            if path in PUBLIC:
                assert answer.status_code < 500, (method, path, answer.text)
                continue
            tried += 1
            if path.startswith("/console/") and method == "GET":
                assert answer.status_code == 303, (method, path, answer.text)
                asked = path.replace("{", "").replace("}", "")
                assert answer.headers["location"] == f"/console/login?next={asked}", path
            else:
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.headers.get("www-authenticate", "").startswith("Bearer"), (
                    method, path, answer.text)
    assert tried >= 35
    public_pages = {"GET /health -> 200", "GET /health/live -> 200", "GET /health/ready -> 200",
                    "GET /docs -> 200", "GET /openapi.yaml -> 200",
                    "GET /oauth/jwks.json -> 200", "GET /.well-known/smart-configuration -> 200",
                    "GET /fhir/.well-known/smart-configuration -> 200",
                    "GET /fhir/metadata -> 200", "GET /console/login -> 200"}
    assert set(served) == public_pages


# -- 5. writes stay in one's own domain -------------------------------------------------------

def stow_body(*objects: bytes) -> tuple[bytes, str]:
    body = b"".join(b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
                    for data in objects) + b"--XyZ--\r\n"
    return body, 'multipart/related; type="application/dicom"; boundary=XyZ'


def test_a_client_of_one_establishment_cannot_write_in_another_s_domain(
        service: RunningService) -> None:
    base = service.http_base
    chru = service.bearer("system/Patient.cruds system/ImagingStudy.c", "CHRU", name="chru")
    reader = service.bearer("system/Patient.rs", name="regional-viewer")

    # The headers an authenticating proxy used to set prove nothing any more.
    claimed = {"X-Remote-User": "dr.house", "X-Establishment": "MRUN", "X-Authority": "MRUN"}
    unauthorized(put_patient(service, claimed, MRUN, "M-77", "MATERNITE"), fhir=True)
    refused = put_patient(service, {**chru, **claimed}, MRUN, "M-77", "MATERNITE")
    forbidden(refused, fhir=True)
    assert "MRUN" in refused.json()["issue"][0]["diagnostics"]
    found = httpx.get(base + "/fhir/Patient", params={"identifier": f"{MRUN}|M-77"},
                      headers=reader)
    assert found.status_code == 200 and found.json()["total"] == 0  # nothing written
    assert ("fhir", "update", "403") in trail(service, service.actor("chru"))
    # A regional system (no establishment) never writes, even with write scopes.
    regional = service.bearer("system/Patient.cruds", name="regional-writer")
    forbidden(put_patient(service, regional, CHRU, "C-1"), fhir=True)
    assert ("http", "alert", "403") in trail(service, service.actor("regional-writer"))
    assert put_patient(service, chru, CHRU, "C-1").status_code == 201  # its own domain

    # STOW-RS: an object of the Maternité's domain, from the CHRU's PACS.
    foreign = relabel(UNCOMPRESSED_CT, patient_id="M-78", issuer="MRUN", study="1.9.1",
                      series="1.9.1.1", sop="1.9.1.1.1")
    own = relabel(UNCOMPRESSED_CT, patient_id="C-1", issuer="CHRU", study="1.9.2",
                  series="1.9.2.1", sop="1.9.2.1.1")
    body, kind = stow_body(foreign)
    answer = httpx.post(base + "/dicomweb/studies", content=body,
                        headers={**chru, "Content-Type": kind})
    assert answer.status_code == 409, answer.text
    failed = answer.json()["00081198"]["Value"]
    assert [(f["00081155"]["Value"], f["00081197"]["Value"]) for f in failed] == [
        (["1.9.1.1.1"], [0xC001])]
    body, kind = stow_body(foreign, own)
    answer = httpx.post(base + "/dicomweb/studies", content=body,
                        headers={**chru, "Content-Type": kind})
    assert answer.status_code == 202, answer.text
    assert answer.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC001]
    assert answer.json()["00081199"]["Value"][0]["00081155"]["Value"] == ["1.9.2.1.1"]
    with service.container.uow_factory(read_only=True) as uow:
        stored = uow.archive.instances(study_uid=None, series_uid=None,
                                       sop_uids=["1.9.1.1.1", "1.9.2.1.1"])
    assert [i.sop_instance_uid for i in stored] == ["1.9.2.1.1"]
    assert {c for c, _, _ in trail(service, service.actor("chru"))} >= {"oauth", "fhir",
                                                                        "dicomweb"}


# -- 6. the console's login and sessions ------------------------------------------------------

def cookie_header(response: httpx.Response, name: str) -> str:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(name + "=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def login(base: str, name: str, password: str = PASSWORD,
          next: str | None = None) -> tuple[httpx.Client, httpx.Response]:
    browser = httpx.Client(base_url=base, timeout=30)
    page = browser.get("/console/login")
    assert page.status_code == 200
    form = {"name": name, "password": password, "login_csrf": page.cookies["mpi_login"]}
    if next is not None:
        form["next"] = next
    return browser, browser.post("/console/login", data=form)


def attempt(base: str, name: str, password: str = PASSWORD) -> httpx.Response:
    """The answer of one login (the browser closed afterwards)."""
    browser, answer = login(base, name, password)
    browser.close()
    return answer


def test_console_login_sessions_csrf_and_logout(service: RunningService) -> None:
    base = service.http_base
    auth = service.container.auth
    for name in ("dr.who", "dr.disabled", "dr.password"):
        auth.add_user(name, PASSWORD, ("clinician",), "CHRU")

    # Without a session a console page sends the browser to the login page, and back.
    assert httpx.get(base + "/console/").headers["location"] == "/console/login?next=/console/"
    page = httpx.get(base + "/console/login")
    assert page.status_code == 200 and 'name="login_csrf"' in page.text
    login_cookie = cookie_header(page, "mpi_login").lower()
    assert "httponly" in login_cookie and "samesite=strict" in login_cookie
    assert page.headers["x-frame-options"] == "DENY"
    # The login form's CSRF token: missing, wrong, or without its cookie.
    browser = httpx.Client(base_url=base, timeout=30)
    token = browser.get("/console/login").cookies["mpi_login"]
    for form in ({"name": "dr.who", "password": PASSWORD},
                 {"name": "dr.who", "password": PASSWORD, "login_csrf": "forged"}):
        assert browser.post("/console/login", data=form).status_code == 400
    cookieless = httpx.post(base + "/console/login", data={
        "name": "dr.who", "password": PASSWORD, "login_csrf": token})
    assert cookieless.status_code == 400 and "mpi_session" not in cookieless.cookies
    browser.close()

    # A wrong password: 401, and an alert in the trail.
    browser, answer = login(base, "dr.who", "wrong password, surely")
    assert answer.status_code == 401 and "mpi_session" not in answer.cookies
    assert "Unknown user, wrong password" in answer.text
    assert trail(service, "user:dr.who") == [("console", "alert", "401")]
    browser.close()

    browser, answer = login(base, "dr.who")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    session_cookie = cookie_header(answer, "mpi_session").lower()
    assert "httponly" in session_cookie and "samesite=lax" in session_cookie
    assert "path=/" in session_cookie and "secure" not in session_cookie  # plain HTTP here
    assert trail(service, "user:dr.who")[-1] == ("console", "authenticate", "success")
    me = browser.get("/console/session").json()
    assert (me["name"], me["roles"], me["establishment"], me["via"]) == (
        "dr.who", ["clinician"], "CHRU", "session")
    assert browser.get("/console/").status_code == 200
    assert browser.get("/fhir/Patient", params={"family": "X"}).status_code == 200
    # A change needs the session's CSRF token.
    forbidden(browser.post("/console/logout"))
    forbidden(browser.post("/console/logout", headers={"X-CSRF-Token": "forged"}))
    assert browser.get("/console/session").status_code == 200  # still logged in
    cookie = browser.cookies["mpi_session"]
    out = browser.post("/console/logout", data={"csrf": me["csrf"]})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    # The session ended on the server: its cookie, sent again, proves nothing.
    unauthorized(httpx.get(base + "/fhir/Patient", params={"family": "X"},
                           cookies={"mpi_session": cookie}), fhir=True)
    assert httpx.get(base + "/console/session", cookies={"mpi_session": cookie}
                     ).status_code == 303
    browser.close()

    # Disabling an account or changing its password ends its sessions at once.
    disabled, answer = login(base, "dr.disabled")
    changed, answer2 = login(base, "dr.password")
    assert answer.status_code == answer2.status_code == 303
    assert disabled.get("/console/session").status_code == 200
    assert changed.get("/console/session").status_code == 200
    auth.disable_user("dr.disabled")
    auth.set_password("dr.password", "a brand new passphrase")
    for browser in (disabled, changed):
        unauthorized(browser.get("/api/review"))
        browser.close()
    assert attempt(base, "dr.disabled").status_code == 401
    assert attempt(base, "dr.password").status_code == 401
    assert attempt(base, "dr.password", "a brand new passphrase").status_code == 303

    # Repeated failures for one name are slowed down, even with the right password then.
    auth.add_user("dr.locked", PASSWORD, ("clinician",))
    for _ in range(5):
        assert attempt(base, "dr.locked", "not the password").status_code == 401
    slowed = attempt(base, "dr.locked")
    assert slowed.status_code == 429 and "mpi_session" not in slowed.cookies
    assert trail(service, "user:dr.locked") == [*[("console", "alert", "401")] * 5,
                                                ("console", "alert", "429")]

    # After logging in, only a path of this service: never another site.
    for target, expected in (("https://evil.example/", "/console/"),
                             ("//evil.example/x", "/console/"),
                             ("/\\evil.example", "/console/"),
                             ("/console/session", "/console/session")):
        browser, answer = login(base, "dr.who", next=target)
        assert answer.headers["location"] == expected, target
        browser.close()
    shown = httpx.get(base + "/console/login", params={"next": "https://evil.example/"})
    assert "evil.example" not in shown.text
    # What the login page shows back is escaped.
    script = '"><script>alert(1)</script>'
    shown = httpx.get(base + "/console/login", params={"next": "/console/" + script})
    assert "<script>alert" not in shown.text
    echoed = attempt(base, script, "wrong password, surely")
    assert echoed.status_code == 401 and "<script>alert" not in echoed.text
    assert "&lt;script&gt;" in echoed.text or "&#34;&gt;&lt;script" in echoed.text


# -- 7. review and lifecycle roles ------------------------------------------------------------

def test_review_and_lifecycle_actions_need_their_roles(service: RunningService) -> None:
    writer = service.bearer("system/Patient.cruds", "CHRU", name="his")
    person = int(put_patient(service, writer, CHRU, "555").json()["id"])
    clinician = service.person("dr.house", "clinician", establishment="CHRU")
    archivist = service.person("m.archive", "archivist", establishment="CHRU")
    vigilance = service.person("dr.vigilance", "identity-vigilance")

    hold = {"person_id": person, "reason": "litigation", "reference": "TJ Nancy 2026/12"}
    for method, path, body in (
            ("GET", "/api/review", None),
            ("POST", "/api/review/1/decision", {"decision": "link", "reason": "same"}),
            ("GET", "/api/lifecycle/report", None),
            ("POST", "/api/lifecycle/holds", hold),
            ("POST", "/api/lifecycle/proposals", {"establishment": "CHRU"}),
            ("POST", "/api/lifecycle/proposals/1/approvals", {"role": "dim"})):
        forbidden(clinician.request(method, path, json=body))
    forbidden(archivist.get("/api/review"))
    forbidden(vigilance.post("/api/lifecycle/holds", json=hold))
    forbidden(httpx.post(service.http_base + "/api/lifecycle/holds", json=hold,
                         headers=writer))  # a system is no archivist
    # The archivist may place a hold and propose the destruction of what is past its
    # retention (a study of 1990).
    placed = archivist.post("/api/lifecycle/holds", json=hold)
    assert placed.status_code == 201, placed.text
    old = relabel(UNCOMPRESSED_CT, patient_id="OLD-1", issuer="CHRU", birth="19400101",
                  study="1.8.1", series="1.8.1.1", sop="1.8.1.1.1", StudyDate="19900101")
    stored, kind = stow_body(old)
    pacs = service.bearer("system/ImagingStudy.c", "CHRU", name="pacs")
    assert httpx.post(service.http_base + "/dicomweb/studies", content=stored,
                      headers={**pacs, "Content-Type": kind}).status_code == 200
    proposal = archivist.post("/api/lifecycle/proposals", json={"establishment": "CHRU"})
    assert proposal.status_code == 201, proposal.text
    assert vigilance.get("/api/review").status_code == 200

    refusals = [e for e in service.container.audit.search(actor="user:dr.house")
                if e.action.value == "alert"]
    assert len(refusals) == 6
    assert all((e.outcome, e.roles, e.authority) == ("403", ("clinician",), "CHRU")
               for e in refusals)
    created = [e for e in reversed(service.container.audit.search(actor="user:m.archive"))
               if e.action.value == "create"]
    assert [e.subject.split()[:2] for e in created] == [["lifecycle", "hold"],
                                                       ["lifecycle", "propose"]]
    assert created[0].persons == (person,)
    assert all(e.roles == ("archivist",) and e.channel == "api" for e in created)


# -- 8. the trail as FHIR AuditEvent ----------------------------------------------------------

def test_the_trail_reads_as_balp_audit_events_for_auditors_only(
        service: RunningService) -> None:
    base = service.http_base
    writer = service.bearer("system/Patient.cruds", "CHRU", name="his")
    master = put_patient(service, writer, CHRU, "777", "AUDIT").json()["id"]
    reader = service.bearer("system/Patient.rs", name="viewer")
    assert httpx.get(f"{base}/fhir/Patient/{master}", headers=reader).status_code == 200
    viewer = service.actor("viewer")

    auditor = service.bearer("system/AuditEvent.rs", name="siem")
    found = httpx.get(base + "/fhir/AuditEvent", params={"patient": f"Patient/{master}"},
                      headers=auditor)
    assert found.status_code == 200, found.text
    bundle = found.json()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    events = [entry["resource"] for entry in bundle["entry"]]
    assert {(e["action"], e["subtype"][0]["code"]) for e in events} == {("U", "update"),
                                                                        ("R", "read")}
    read = next(e for e in events if e["action"] == "R")
    assert read["resourceType"] == "AuditEvent"
    assert read["type"]["code"] == "rest" and read["outcome"] == "0"
    assert datetime.fromisoformat(read["recorded"]) > datetime.now().astimezone() - timedelta(
        minutes=5)
    requestor = read["agent"][0]
    assert requestor["requestor"] is True
    assert requestor["who"]["identifier"]["value"] == viewer
    assert requestor["network"] == {"address": "127.0.0.1", "type": "2"}
    assert requestor["policy"]  # the token's jti
    assert read["agent"][1]["requestor"] is False
    assert {"reference": f"Patient/{master}"} in [e.get("what") for e in read["entity"]]
    assert read["meta"]["profile"][0].endswith("IHE.BasicAudit.PatientRead")
    again = httpx.get(f"{base}/fhir/AuditEvent/{read['id']}", headers=auditor)
    assert again.status_code == 200 and again.json() == read

    by_agent = httpx.get(base + "/fhir/AuditEvent", params={"agent": viewer},
                         headers=auditor).json()
    assert by_agent["entry"] and all(
        e["resource"]["agent"][0]["who"]["identifier"]["value"] == viewer
        for e in by_agent["entry"])
    bare = httpx.get(base + "/fhir/AuditEvent", params={"agent": viewer.split(":", 1)[1]},
                     headers=auditor).json()
    assert [e["fullUrl"] for e in bare["entry"]] == [e["fullUrl"] for e in by_agent["entry"]]
    today = datetime.now().astimezone().date()
    window: list[tuple[str, str | int | float | bool | None]] = [
        ("date", f"ge{today - timedelta(days=1)}"),
        ("date", f"lt{today + timedelta(days=2)}"), ("agent", viewer)]
    dated = httpx.get(base + "/fhir/AuditEvent", params=window, headers=auditor).json()
    assert len(dated["entry"]) == len(by_agent["entry"])
    past = httpx.get(base + "/fhir/AuditEvent", params=[("date", "lt2000-01-01")],
                     headers=auditor).json()
    assert past["entry"] == []
    paged = httpx.get(base + "/fhir/AuditEvent", params={"_count": "1"},
                      headers=auditor).json()
    assert len(paged["entry"]) == 1 and paged["link"][1]["relation"] == "next"
    assert httpx.get(base + "/fhir/AuditEvent", params={"date": "yesterday"},
                     headers=auditor).status_code == 400

    # Reading the trail is itself traced.
    reads = [e for e in service.container.audit.search(actor=service.actor("siem"), limit=100)
             if e.channel == "fhir"]
    assert {e.action.value for e in reads} == {"search", "read"}
    assert any(e.persons == (int(master),) for e in reads if e.action.value == "search")
    # A person with the role auditor reads it too; nobody else.
    assert service.person("a.udit", "auditor").get(
        "/fhir/AuditEvent", params={"agent": viewer}).status_code == 200
    forbidden(service.person("dr.house", "clinician").get("/fhir/AuditEvent"), fhir=True)
    forbidden(httpx.get(base + "/fhir/AuditEvent", headers=reader), fhir=True)
    forbidden(httpx.get(f"{base}/fhir/AuditEvent/{read['id']}", headers=reader), fhir=True)


# -- 9. secrets never leak ---------------------------------------------------------------------

def test_no_secret_password_token_or_cookie_reaches_a_log_or_the_trail(
        service: RunningService, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    base = service.http_base
    data = service.container.settings.data_dir
    added = CliRunner().invoke(main, ["client", "add", "leaky-his", "--establishment", "CHRU",
                                      "--scope", "system/Patient.rs",
                                      "--database-url", database_url, "--data-dir", str(data)])
    assert added.exit_code == 0, added.output
    made = json.loads(added.stdout)
    client_id, secret = made["client_id"], made["client_secret"]
    granted = httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                         auth=(client_id, secret))
    access_token = granted.json()["access_token"]
    assert httpx.post(base + TOKEN, data={"grant_type": "client_credentials"},
                      auth=(client_id, secret[::-1])).status_code == 401
    assert httpx.get(base + "/fhir/Patient", params={"family": "X"},
                     headers={"Authorization": f"Bearer {access_token}"}).status_code == 200
    assert httpx.get(base + "/fhir/Patient", params={"family": "X"}, headers={
        "Authorization": f"Bearer {access_token[:-4]}AAAA"}).status_code == 401
    password = "a very private passphrase"
    service.container.auth.add_user("dr.secret", password, ("clinician",))
    browser, answer = login(base, "dr.secret", password)
    assert answer.status_code == 303
    cookie = browser.cookies["mpi_session"]
    csrf = browser.get("/console/session").json()["csrf"]
    assert attempt(base, "dr.secret", password + "!").status_code == 401
    assert browser.post("/console/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
    browser.close()

    secrets_ = {"client secret": secret, "password": password, "wrong password": password + "!",
                "access token": access_token, "token signature": access_token.split(".")[2],
                "session cookie": cookie, "csrf token": csrf}
    records = service_log_records(caplog.records)
    lines = [" ".join([record.getMessage(), *map(str, vars(record).values())])
             for record in records]
    assert len(records) > 10
    assert any("token refused" in line for line in lines)  # the scenario was logged
    assert any("console login refused" in line for line in lines)
    assert any("http request" in line for line in lines)  # the access log
    rows: list[str] = []
    with service.container.engine.connect() as connection:
        for table in (audit_events, audit_persons):
            rows += [repr(tuple(row)) for row in connection.execute(select(table))]
    assert len(rows) >= 8
    assert any("dr.secret" in row for row in rows) and any(client_id in row for row in rows)
    for what, value in secrets_.items():
        assert not [line for line in lines if value in line], f"the {what} is in a log line"
        assert not [row for row in rows if value in row], f"the {what} is in the trail"
    stored = service.container.auth.clients()
    hashed = next(c.secret_hash for c in stored if c.client_id == client_id)
    assert hashed and hashed.startswith("$argon2id$") and secret not in hashed


# -- behind a TLS-terminating proxy -----------------------------------------------------------

def test_behind_its_public_https_address_cookies_are_secure_and_tokens_name_that_address(
        database_url: str, tmp_path: Path) -> None:
    public = "https://mpi.chru-nancy.example"
    service = start_service(database_url, tmp_path, public_url=public)
    try:
        base = service.http_base
        smart = httpx.get(base + "/.well-known/smart-configuration").json()
        assert (smart["issuer"], smart["token_endpoint"]) == (public, public + TOKEN)
        claims = jwt_parts(service.token("system/Patient.rs", name="viewer"))[1]
        assert (claims["iss"], claims["aud"]) == (public, public)
        # An assertion names the public token endpoint (as discovery gives it).
        key = ECKey.generate_key("P-384", private=True)
        pacs = service.container.auth.add_client(
            "pacs", "system/ImagingStudy.rs", "CHRU",
            jwks=public_set((key, "k", "ES384"))).client.client_id
        assert with_assertion(service, assertion(key, "ES384", "k", pacs, public + TOKEN)
                              ).status_code == 200
        rfc6749(with_assertion(service, assertion(key, "ES384", "k", pacs,
                                                  "https://elsewhere.example" + TOKEN)),
                401, "invalid_client")
        # The console's cookies are Secure.
        page = httpx.get(base + "/console/login")
        assert "secure" in cookie_header(page, "mpi_login").lower()
        service.container.auth.add_user("dr.tls", PASSWORD, ("clinician",))
        # (a client on plain HTTP does not send Secure cookies back: the proxy's side here)
        answer = httpx.post(base + "/console/login", data={
            "name": "dr.tls", "password": PASSWORD, "login_csrf": page.cookies["mpi_login"]},
            headers={"Cookie": f"mpi_login={page.cookies['mpi_login']}"})
        assert answer.status_code == 303, answer.text
        assert "; secure" in cookie_header(answer, "mpi_session").lower()
    finally:
        service.stop()
