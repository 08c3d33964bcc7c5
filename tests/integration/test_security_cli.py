"""`mpi client`, `mpi user` and `mpi keys` as an administrator runs them, beside a running
service on the same database and data folder (what they change takes effect there at once),
and the first start of `mpi serve` on an empty index. On SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
import secrets
import signal
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select

from adapters.auth.clients import ASSERTION_TYPE
from adapters.auth.service import CLIENT_CHECK_SECONDS
from adapters.bootstrap import bootstrap
from adapters.cli import main
from adapters.cli.service import announce_first_admin
from adapters.sql.tables import api_clients, user_accounts
from tests.integration.test_cli import environment, free_port, get_health, mpi_executable
from tests.service import (
    RunningService,
    cheap_password_hashing,
    jwt_parts,
    make_settings,
    start_service,
)

TOKEN = "/oauth/token"


@pytest.fixture
def service(database_url: str, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningService]:
    cheap_password_hashing(monkeypatch)
    running = start_service(database_url, tmp_path / "data")
    yield running
    running.stop()


class Mpi:
    """`mpi ...` in this process, on the service's database and data folder."""

    def __init__(self, service: RunningService, database_url: str) -> None:
        self.options = ["--database-url", database_url,
                        "--data-dir", str(service.container.settings.data_dir)]
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, ok: bool = True) -> Result:
        result = self.runner.invoke(main, [*args, *self.options], input=input)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result


def token(service: RunningService, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(service.http_base + TOKEN, data={"grant_type": "client_credentials"},
                      auth=(client_id, secret))


def fhir(service: RunningService, access_token: str) -> httpx.Response:
    return httpx.get(service.http_base + "/fhir/Patient", params={"family": "X"},
                     headers={"Authorization": f"Bearer {access_token}"})


def login(service: RunningService, name: str,
          password: str) -> tuple[httpx.Client, httpx.Response]:
    """A browser after the console's login form, and the form's answer."""
    browser = httpx.Client(base_url=service.http_base, timeout=30)
    page = browser.get("/console/login")
    return browser, browser.post("/console/login", data={
        "name": name, "password": password, "login_csrf": page.cookies["mpi_login"]})


def ended(browser: httpx.Client) -> bool:
    """Whether the browser's session ended: the console sends it back to the login page."""
    answer = browser.get("/console/session")
    return answer.status_code == 303 and answer.headers["location"].startswith(
        "/console/login")


def test_client_commands_register_list_and_revoke_systems(
        service: RunningService, database_url: str, tmp_path: Path) -> None:
    mpi = Mpi(service, database_url)
    added = mpi("client", "add", "his-chru", "--establishment", "CHRU",
                "--scope", "system/Patient.rs system/Patient.cud")
    made = json.loads(added.stdout)  # one JSON object, and nothing else, on stdout
    assert set(made) == {"client_id", "client_secret", "name", "establishment", "scope"}
    assert (made["name"], made["establishment"], made["scope"]) == (
        "his-chru", "CHRU", "system/Patient.cud system/Patient.rs")
    client_id, secret = made["client_id"], made["client_secret"]
    assert len(secret) >= 32
    granted = token(service, client_id, secret)
    assert granted.status_code == 200, granted.text
    access = granted.json()["access_token"]
    assert fhir(service, access).status_code == 200

    # A client with a key set: no secret; its assertions are checked against that file.
    key = ECKey.generate_key("P-384", private=True)
    keys_file = tmp_path / "pacs.jwks.json"
    keys_file.write_text(json.dumps({"keys": [{**key.as_dict(private=False), "kid": "pacs-1",
                                               "alg": "ES384"}]}))
    pacs = json.loads(mpi("client", "add", "pacs", "--establishment", "CHRU", "--scope",
                          "system/ImagingStudy.rs", "--jwks-file", str(keys_file)).stdout)
    assert "client_secret" not in pacs
    now = int(time.time())
    signed = jwt.encode({"alg": "ES384", "kid": "pacs-1"}, {
        "iss": pacs["client_id"], "sub": pacs["client_id"], "aud": service.http_base + TOKEN,
        "exp": now + 120, "jti": secrets.token_hex(8)}, key, algorithms=["ES384"])
    by_key = httpx.post(service.http_base + TOKEN, data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed})
    assert by_key.status_code == 200, by_key.text
    # Refused with a clear message: a bad scope, both key options, an unknown establishment.
    bad = mpi("client", "add", "x", "--scope", "system/Everything.rs", ok=False)
    assert "no resource Everything" in bad.output
    both = mpi("client", "add", "x", "--scope", "system/Patient.rs", "--jwks-file",
               str(keys_file), "--jwks-url", "https://keys.example/jwks", ok=False)
    assert "not both" in both.output
    assert "already" in mpi("client", "add", "his-chru", "--scope", "system/Patient.rs",
                            ok=False).output.lower()

    # The listing never shows a secret; the index keeps only a slow hash of it.
    listed = json.loads(mpi("client", "list", "--format", "json").stdout)
    assert {(c["name"], c["authentication"]) for c in listed} == {
        ("his-chru", "client_secret_basic"), ("pacs", "private_key_jwt")}
    assert all("secret" not in key for c in listed for key in c)
    table = mpi("client", "list")
    assert secret not in table.output and secret not in json.dumps(listed)
    with service.container.engine.connect() as connection:
        stored = list(connection.execute(select(api_clients)))
    assert secret not in repr(stored)
    hashed = next(row.secret_hash for row in stored if row.client_id == client_id)
    assert hashed.startswith("$argon2id$")

    # Revoked: it gets no new token at once, and its token stops working within the few
    # seconds a running server believes a client it checked (CLIENT_CHECK_SECONDS).
    revoked = mpi("client", "revoke", "his-chru")
    assert client_id in revoked.output
    deadline = time.monotonic() + CLIENT_CHECK_SECONDS + 5
    while (answered := fhir(service, access).status_code) == 200:
        assert time.monotonic() < deadline, "a revoked client's token still works"
        time.sleep(0.2)
    assert answered == 401
    assert token(service, client_id, secret).status_code == 401
    listed = json.loads(mpi("client", "list", "--format", "json").stdout)
    assert next(c for c in listed if c["name"] == "his-chru")["revoked_at"]
    mpi("client", "revoke", "nobody", ok=False)

    # Every change is in the trail, channel cli, naming the operating-system user.
    changes = [e for e in service.container.audit.search(actor=f"os:{getpass.getuser()}")
               if e.channel == "cli"]
    assert sorted((e.action.value, e.subject) for e in changes) == sorted([
        ("create", f"client {client_id}"), ("create", f"client {pacs['client_id']}"),
        ("update", f"client {client_id}")])
    assert all(e.outcome == "success" for e in changes)
    assert secret not in repr(changes)


def test_user_commands_manage_people_and_their_sessions(
        service: RunningService, database_url: str) -> None:
    mpi = Mpi(service, database_url)
    password = "a long enough passphrase"
    added = mpi("user", "add", "dr.who", "--role", "clinician", "--role", "auditor",
                "--establishment", "CHRU", "--password-stdin", input=password + "\n")
    assert "dr.who added (auditor, clinician)" in added.output
    prompted = mpi("user", "add", "m.archive", "--role", "archivist",
                   input="another passphrase\nanother passphrase\n")
    assert "m.archive added" in prompted.output
    unknown = mpi("user", "add", "x", "--role", "wizard", "--password-stdin",
                  input=password + "\n", ok=False)
    assert "unknown role(s) wizard; the roles are clinician, identity-vigilance" in unknown.output
    short = mpi("user", "add", "x", "--role", "clinician", "--password-stdin",
                input="short\n", ok=False)
    assert "at least 12 characters" in short.output
    listed = json.loads(mpi("user", "list", "--format", "json").stdout)
    assert [(u["name"], u["roles"], u["establishment"], u["disabled_at"]) for u in listed] == [
        ("dr.who", ["auditor", "clinician"], "CHRU", None),
        ("m.archive", ["archivist"], None, None)]
    assert not any("password" in key for u in listed for key in u)
    with service.container.engine.connect() as connection:
        hashes = [row.password_hash for row in connection.execute(select(user_accounts))]
    assert all(h.startswith("$argon2id$") and password not in h for h in hashes)

    # The password works at the console; a new one ends the sessions opened with the old.
    browser, answer = login(service, "dr.who", password)
    assert answer.status_code == 303
    assert browser.get("/console/session").json()["roles"] == ["auditor", "clinician"]
    mpi("user", "password", "dr.who", "--password-stdin", input="a newer passphrase\n")
    assert browser.get("/api/review").status_code == 401
    assert login(service, "dr.who", password)[1].status_code == 401
    browser, answer = login(service, "dr.who", "a newer passphrase")
    assert answer.status_code == 303
    # Disabled: the session ends at once, and no new one opens.
    assert "disabled" in mpi("user", "disable", "dr.who").output
    assert browser.get("/fhir/AuditEvent").status_code == 401
    assert login(service, "dr.who", "a newer passphrase")[1].status_code == 401
    assert json.loads(mpi("user", "list", "--format", "json").stdout)[0]["disabled_at"]
    mpi("user", "disable", "nobody", ok=False)

    changes = [(e.action.value, e.subject, e.detail) for e in
               reversed(service.container.audit.search(actor=f"os:{getpass.getuser()}"))
               if e.channel == "cli"]
    assert changes == [
        ("create", "user dr.who", {"roles": ["auditor", "clinician"], "establishment": "CHRU"}),
        ("create", "user m.archive", {"roles": ["archivist"], "establishment": None}),
        ("update", "user dr.who", {"password": "changed"}),
        ("update", "user dr.who", {"disabled": True})]


def test_user_roles_change_what_a_person_holds_and_end_their_sessions(
        service: RunningService, database_url: str) -> None:
    mpi = Mpi(service, database_url)
    password = "a long enough passphrase"
    mpi("user", "add", "n.martin", "--role", "clinician", "--establishment", "CHRU",
        "--password-stdin", input=password + "\n")
    browser, answer = login(service, "n.martin", password)
    assert answer.status_code == 303
    assert browser.get("/console/session").json()["roles"] == ["clinician"]

    # The nurse moves to identity vigilance: her open session ends, the next one has the role.
    moved = mpi("user", "roles", "n.martin", "--role", "identity-vigilance")
    assert "roles of n.martin: identity-vigilance; establishment: CHRU" in moved.output
    assert ended(browser)
    browser, answer = login(service, "n.martin", password)
    assert answer.status_code == 303
    me = browser.get("/console/session").json()
    assert (me["roles"], me["establishment"]) == (["identity-vigilance"], "CHRU")
    assert browser.get("/api/review").status_code == 200  # what the new role opens
    # Another establishment, then none (regional staff): each ends the session again.
    assert "establishment: ICL" in mpi("user", "roles", "n.martin", "--role",
                                       "identity-vigilance", "--establishment", "ICL").output
    assert ended(browser)
    cleared = mpi("user", "roles", "n.martin", "--role", "identity-vigilance", "--role",
                  "auditor", "--no-establishment")
    assert "roles of n.martin: auditor, identity-vigilance; establishment: none" in cleared.output
    [listed] = json.loads(mpi("user", "list", "--format", "json").stdout)
    assert (listed["roles"], listed["establishment"]) == (
        ["auditor", "identity-vigilance"], None)

    # Refused, and why, with nothing changed: validated as `user add` validates.
    unknown = mpi("user", "roles", "n.martin", "--role", "wizard", ok=False)
    assert "unknown role(s) wizard; the roles are clinician, identity-vigilance" in unknown.output
    national = mpi("user", "roles", "n.martin", "--role", "clinician", "--establishment",
                   "INS-NIR", ok=False)
    assert "INS-NIR is not an establishment" in national.output
    both = mpi("user", "roles", "n.martin", "--role", "clinician", "--establishment", "CHRU",
               "--no-establishment", ok=False)
    assert both.exit_code == 2 and "not both" in both.output
    assert "no user named nobody" in mpi("user", "roles", "nobody", "--role", "clinician",
                                         ok=False).output
    [listed] = json.loads(mpi("user", "list", "--format", "json").stdout)
    assert (listed["roles"], listed["establishment"]) == (
        ["auditor", "identity-vigilance"], None)

    changes = [(e.action.value, e.subject, e.detail) for e in
               reversed(service.container.audit.search(actor=f"os:{getpass.getuser()}"))
               if e.channel == "cli"]
    assert changes[1:] == [
        ("update", "user n.martin", {"roles": ["identity-vigilance"], "establishment": "CHRU"}),
        ("update", "user n.martin", {"roles": ["identity-vigilance"], "establishment": "ICL"}),
        ("update", "user n.martin", {"roles": ["auditor", "identity-vigilance"],
                                     "establishment": None})]


def test_user_enable_lets_a_disabled_person_log_in_again(
        service: RunningService, database_url: str) -> None:
    mpi = Mpi(service, database_url)
    password = "a long enough passphrase"
    mpi("user", "add", "dr.back", "--role", "clinician", "--establishment", "MRUN",
        "--password-stdin", input=password + "\n")
    mpi("user", "disable", "dr.back")
    assert login(service, "dr.back", password)[1].status_code == 401
    assert "user dr.back enabled" in mpi("user", "enable", "dr.back").output
    browser, answer = login(service, "dr.back", password)
    assert answer.status_code == 303
    me = browser.get("/console/session").json()
    assert (me["roles"], me["establishment"]) == (["clinician"], "MRUN")  # as they were
    [listed] = json.loads(mpi("user", "list", "--format", "json").stdout)
    assert listed["disabled_at"] is None
    mpi("user", "enable", "dr.back")  # enabled already: nothing to do, no error
    assert "no user named nobody" in mpi("user", "enable", "nobody", ok=False).output
    changes = [(e.subject, e.detail) for e in
               reversed(service.container.audit.search(actor=f"os:{getpass.getuser()}"))
               if e.channel == "cli" and e.action.value == "update"]
    assert changes == [("user dr.back", {"disabled": True}), ("user dr.back", {"disabled": False}),
                       ("user dr.back", {"disabled": False})]


def test_the_last_enabled_admin_keeps_admin_and_stays_enabled(
        service: RunningService, database_url: str) -> None:
    mpi = Mpi(service, database_url)
    mpi("user", "add", "boss", "--role", "admin", "--password-stdin",
        input="a long enough passphrase\n")
    demoted = mpi("user", "roles", "boss", "--role", "clinician", ok=False)
    assert "boss is the last enabled account holding admin and cannot lose the role admin" in (
        demoted.output)
    assert "boss is the last enabled account holding admin and cannot be disabled" in mpi(
        "user", "disable", "boss", ok=False).output
    # Another role beside admin is no loss of admin.
    mpi("user", "roles", "boss", "--role", "admin", "--role", "auditor")
    # A disabled admin does not count: it administers nothing.
    mpi("user", "add", "old.boss", "--role", "admin", "--password-stdin",
        input="a long enough passphrase\n")
    mpi("user", "disable", "old.boss")
    mpi("user", "roles", "boss", "--role", "clinician", ok=False)
    # With a second enabled admin, either may go, and then the other is the last.
    mpi("user", "enable", "old.boss")
    mpi("user", "roles", "boss", "--role", "clinician")
    assert "old.boss is the last enabled account" in mpi("user", "disable", "old.boss",
                                                         ok=False).output
    listed = {u["name"]: (u["roles"], u["disabled_at"])
              for u in json.loads(mpi("user", "list", "--format", "json").stdout)}
    assert listed == {"boss": (["clinician"], None), "old.boss": (["admin"], None)}


def test_keys_rotate_and_a_retired_key_s_tokens_are_refused(
        service: RunningService, database_url: str) -> None:
    mpi = Mpi(service, database_url)
    first = json.loads(mpi("keys", "list", "--format", "json").stdout)
    assert [(k["algorithm"], k["signs"]) for k in first] == [("ES256", True)]
    old_token = service.token("system/Patient.rs", name="reader")
    assert jwt_parts(old_token)[0]["kid"] == first[0]["kid"]

    rotated = mpi("keys", "rotate")
    keys = json.loads(mpi("keys", "list", "--format", "json").stdout)
    assert [k["signs"] for k in keys] == [False, True]
    assert keys[0]["kid"] == first[0]["kid"] and keys[1]["kid"] in rotated.output
    published = httpx.get(service.http_base + "/oauth/jwks.json").json()
    assert [k["kid"] for k in published["keys"]] == [k["kid"] for k in keys]
    new_token = service.token("system/Patient.rs", name="reader-2")
    assert jwt_parts(new_token)[0]["kid"] == keys[1]["kid"]  # the new key signs
    assert fhir(service, old_token).status_code == 200  # the old one still verifies
    assert fhir(service, new_token).status_code == 200

    retired = mpi("keys", "rotate", "--retire", "2")
    assert "1 retired" in retired.output
    kept = [k["kid"] for k in json.loads(mpi("keys", "list", "--format", "json").stdout)]
    assert len(kept) == 2 and first[0]["kid"] not in kept
    answer = fhir(service, old_token)
    assert answer.status_code == 401, answer.text  # its key is gone
    assert fhir(service, new_token).status_code == 200
    changes = [e.detail for e in service.container.audit.search(
        actor=f"os:{getpass.getuser()}") if e.subject == "signing keys"]
    assert sorted(d["retired"] for d in changes) == [0, 1]


# -- the first start of `mpi serve` ----------------------------------------------------------

def _serve(database_url: str, data: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    http_port = free_port()
    with log.open("wb") as stderr:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [mpi_executable(), "serve", "--host", "127.0.0.1", "--mllp-port", str(free_port()),
             "--http-port", str(http_port), "--dicom-port", str(free_port()),
             "--data-dir", str(data), "--database-url", database_url],
            env=environment(MPI_WORKERS="0"), stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if get_health(http_port)[0] == 200:
                return process, http_port
        except (urllib.error.URLError, ConnectionError, OSError):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def _first_password(text: str) -> str | None:
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("first start: created the user account 'admin'"):
            return lines[number + 1].strip()
    return None


def test_the_first_start_on_an_empty_index_creates_admin_and_says_its_password_once(
        database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    log = tmp_path / "first.log"
    process, port = _serve(database_url, data, log)
    try:
        first = log.read_text()
        password = _first_password(first)
        assert password and len(password) >= 32, first
        assert first.count(password) == 1  # on the console once, in no log line
        assert "mpi user password admin" in first
        browser = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        page = browser.get("/console/login")
        logged = browser.post("/console/login", data={
            "name": "admin", "password": password, "login_csrf": page.cookies["mpi_login"]})
        assert logged.status_code == 303, logged.text
        me: dict[str, Any] = browser.get("/console/session").json()
        assert (me["name"], me["roles"]) == ("admin", ["admin"])
        browser.close()
    finally:
        _stop(process)
    # The next start (what `mpi serve` does before serving, on the same index) says nothing.
    container = bootstrap(make_settings(database_url, data), migrate=False)
    try:
        capsys.readouterr()
        announce_first_admin(container)
        assert capsys.readouterr() == ("", "")
        assert [u.name for u in container.auth.users()] == ["admin"]
    finally:
        container.close()
