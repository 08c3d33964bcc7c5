"""Mutual TLS on MLLP and DICOM, HTTPS, and plain listeners kept off the network, against real
peers: the hl7 package's MLLP client over a TLS socket, dcmtk's storescu and findscu with
+tls, httpx. The certificates are written by `mpi tls dev-ca`'s code for each test run."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hl7.client
import httpx
import pytest
from click.testing import CliRunner

from adapters.authorities_file import AuthoritiesFileError, load_authorities
from adapters.cli import main
from adapters.dev_ca import DevCa, write_dev_ca
from adapters.tls import BCP195_CIPHERS
from mpi.audit import AuditAction, AuditEvent
from mpi.model import Identifier, JournalStatus
from tests.dicom_objects import UNCOMPRESSED_CT, relabel, run
from tests.feeds import Peer, segments
from tests.hl7_messages import registration
from tests.service import RunningService, start_service


@dataclass(frozen=True)
class Pki:
    trusted: DevCa  # the service's CA: clients of CHRU, ICL and one of an undeclared name
    foreign: DevCa  # another CA, whose CHRU certificate must not be believed

    def client(self, code: str, ca: DevCa | None = None) -> tuple[Path, Path]:
        found = next(c for c in (ca or self.trusted).clients if c.establishment == code)
        return found.key, found.cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    return Pki(write_dev_ca(folder / "trusted", ["CHRU", "ICL", "STRANGER"],
                            names={"STRANGER": "stranger.example"}),
               write_dev_ca(folder / "foreign", ["CHRU"], organization="Another CA"))


def tls_settings(pki: Pki) -> dict[str, object]:
    return dict(tls_cert=pki.trusted.server_cert, tls_key=pki.trusted.server_key,
                tls_client_ca=pki.trusted.ca_cert, mllp_tls_port=0, dicom_tls_port=0,
                https_port=0)


@pytest.fixture
def service(database_url: str, tmp_path: Path, pki: Pki) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path / "data", **tls_settings(pki))
    yield running
    running.stop()


def client_context(pki: Pki, code: str | None, ca: DevCa | None = None) -> ssl.SSLContext:
    """What a HIS holds: the service's CA to trust, and its own certificate (none when
    ``code`` is None)."""
    context = ssl.create_default_context(cafile=pki.trusted.ca_cert)
    if code is not None:
        key, cert = pki.client(code, ca)
        context.load_cert_chain(cert, key)
    return context


class TlsPeer(Peer):
    """A HIS over TLS: the hl7 package's client with its socket wrapped."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.client = hl7.client.MLLPClient("127.0.0.1", port)
        self.client.socket.settimeout(30)
        self.client.socket = context.wrap_socket(self.client.socket,
                                                 server_hostname="localhost")


def refused(port: int, context: ssl.SSLContext) -> bool:
    """Whether the service drops this client without answering a message."""
    try:
        with TlsPeer(port, context) as peer:
            reply = peer.send(registration("CHRU", "REFUSED-1"))
    except OSError:  # ssl.SSLError, a reset: the handshake was refused
        return True
    return reply == ""


def trail(service: RunningService, action: AuditAction, channel: str,
          count: int = 1) -> list[AuditEvent]:
    """The trail's entries of one kind, waited for (a refused handshake is written after
    the peer was dropped)."""
    deadline = time.monotonic() + 10
    while True:
        found = [e for e in service.container.audit.search(limit=500)
                 if e.action is action and e.channel == channel]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# -- MLLP ---------------------------------------------------------------------------------

def test_mllp_over_tls_the_certificate_decides_the_establishment(
        service: RunningService, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    port = service.ports["mllp_tls"]
    with TlsPeer(port, client_context(pki, "CHRU")) as his:
        own = segments(his.send(registration("CHRU", "TLS-1", control="TLS-OWN")))
        assert own["MSA"][0][1] == "AA"
        # A CHRU certificate speaking as ICL: refused, nothing applied, the connection
        # stays open for the next message.
        other = segments(his.send(registration("ICL", "TLS-2", control="TLS-OTHER")))
        assert other["MSA"][0][1] == "AR"
        err = other["ERR"][0]
        assert err[3].startswith("204^") and "MSH^1^4" in err[2]
        again = segments(his.send(registration("CHRU", "TLS-3")))
        assert again["MSA"][0][1] == "AA"
    container = service.container
    with container.uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("CHRU", "TLS-1")) is not None
        assert uow.records.by_identifier(Identifier("ICL", "TLS-2")) is None
        journal = uow.journal.list([JournalStatus.REJECTED])
    assert [(e.sender, e.error_code) for e in journal] == [("ICL", 204)]
    alerts = trail(service, AuditAction.ALERT, "mllp")
    assert [(a.actor, a.authority, a.outcome) for a in alerts] == [
        ("tls:chru-his.example", "CHRU", "AR 204")]
    assert alerts[0].detail["sending_facility"] == "ICL"
    logins = trail(service, AuditAction.AUTHENTICATE, "mllp")
    assert [(a.actor, a.authority) for a in logins] == [("tls:chru-his.example", "CHRU")]
    applied = [e for e in container.audit.search(limit=50) if e.actor.startswith("hl7:")]
    assert len(applied) == 2
    assert {e.detail.get("certificate") for e in applied} == {"chru-his.example"}
    refusals = [r.getMessage() for r in caplog.records if "refused HL7 message" in
                r.getMessage()]
    assert len(refusals) == 1 and "sender=ICL" in refusals[0]
    assert "certificate=chru-his.example" in refusals[0]


def test_mllp_over_tls_refuses_what_no_declared_establishment_speaks_for(
        service: RunningService, pki: Pki) -> None:
    port = service.ports["mllp_tls"]
    socket.create_connection(("127.0.0.1", port)).close()  # a port probe: no alert
    time.sleep(0.2)
    assert refused(port, client_context(pki, None))  # no client certificate
    assert refused(port, client_context(pki, "CHRU", pki.foreign))  # another CA
    assert refused(port, client_context(pki, "STRANGER"))  # a name no establishment lists
    alerts = trail(service, AuditAction.ALERT, "mllp", 3)
    assert sorted(a.subject for a in alerts) == ["TLS client refused",
                                                 "TLS handshake refused",
                                                 "TLS handshake refused"]
    stranger = next(a for a in alerts if a.subject == "TLS client refused")
    assert stranger.actor == "tls:stranger.example"
    with service.container.uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("CHRU", "REFUSED-1")) is None
    # The plain listener on loopback still answers.
    with Peer(service.mllp_port) as local:
        assert segments(local.send(registration("CHRU", "PLAIN-1")))["MSA"][0][1] == "AA"


def test_hl7_send_speaks_mllp_over_tls(service: RunningService, pki: Pki,
                                      tmp_path: Path) -> None:
    message = tmp_path / "a28.hl7"
    message.write_text(registration("ICL", "SEND-1"), encoding="utf-8")
    port = str(service.ports["mllp_tls"])

    def send(code: str) -> tuple[int, str]:
        key, cert = pki.client(code)
        result = CliRunner().invoke(main, [
            "hl7", "send", str(message), "--host", "localhost", "--port", port,
            "--client-cert", str(cert), "--client-key", str(key),
            "--server-ca", str(pki.trusted.ca_cert)])
        return result.exit_code, result.output

    code, output = send("ICL")
    assert code == 0 and "MSA|AA|" in output
    code, output = send("CHRU")  # a CHRU certificate, an ICL message
    assert code == 1 and "MSA|AR|" in output
    code, output = send("STRANGER")
    assert code == 1 and "refused the TLS connection" in output


def test_mllp_over_tls_through_worker_processes(database_url: str, tmp_path: Path,
                                                pki: Pki) -> None:
    running = start_service(database_url, tmp_path / "data", workers=2, **tls_settings(pki))
    try:
        port = running.ports["mllp_tls"]
        with TlsPeer(port, client_context(pki, "ICL")) as his:
            assert segments(his.send(registration("ICL", "W-1")))["MSA"][0][1] == "AA"
            assert segments(his.send(registration("CHRU", "W-2")))["MSA"][0][1] == "AR"
        assert refused(port, client_context(pki, "CHRU", pki.foreign))
        with Peer(running.mllp_port) as local:
            assert segments(local.send(registration("CHRU", "W-3")))["MSA"][0][1] == "AA"
        assert len(trail(running, AuditAction.ALERT, "mllp", 2)) == 2
    finally:
        running.stop()


def test_https_through_http_worker_processes(database_url: str, tmp_path: Path,
                                             pki: Pki) -> None:
    running = start_service(database_url, tmp_path / "data", http_workers=2,
                            **tls_settings(pki))
    try:
        trusting = ssl.create_default_context(cafile=pki.trusted.ca_cert)
        base = f"https://localhost:{running.ports['https']}"
        assert httpx.get(base + "/health", verify=trusting).status_code == 200
        headers = running.bearer("system/Patient.rs")
        answer = httpx.get(base + "/fhir/Patient", params={"family": "NOBODY"},
                           headers=headers, verify=trusting)
        assert answer.status_code == 200, answer.text
        assert httpx.get(running.http_base + "/fhir/Patient", params={"family": "NOBODY"},
                         headers=headers).status_code == 200
    finally:
        running.stop()


# -- DICOM --------------------------------------------------------------------------------

def dcmtk_tls(pki: Pki, code: str | None, ca: DevCa | None = None) -> list[str]:
    if code is None:
        return ["+tla", "+cf", str(pki.trusted.ca_cert)]  # TLS without a certificate
    key, cert = pki.client(code, ca)
    return ["+tls", str(key), str(cert), "+cf", str(pki.trusted.ca_cert)]


def test_dicom_over_tls_stores_and_finds_with_a_certificate(
        service: RunningService, pki: Pki, tmp_path: Path) -> None:
    port = str(service.ports["dicom_tls"])
    image = tmp_path / "ct.dcm"
    image.write_bytes(relabel(UNCOMPRESSED_CT, patient_id="TLS-77", study="1.2.77",
                              series="1.2.77.1", sop="1.2.77.1.1"))
    stored = run("storescu", *dcmtk_tls(pki, "CHRU"), "-aet", "CHRU", "-aec", "VNA",
                 "127.0.0.1", port, str(image))
    assert stored.returncode == 0, stored.stderr
    found = tmp_path / "found"
    found.mkdir()
    answer = run("findscu", *dcmtk_tls(pki, "CHRU"), "-aet", "CHRU", "-aec", "VNA", "-S",
                 "-X", "-od", str(found), "-k", "QueryRetrieveLevel=STUDY",
                 "-k", "StudyInstanceUID=1.2.77", "-k", "PatientID", "127.0.0.1", port)
    assert answer.returncode == 0, answer.stderr
    assert len(list(found.iterdir())) == 1
    with service.container.uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("CHRU", "TLS-77")) is not None
    logins = trail(service, AuditAction.AUTHENTICATE, "dicom", 2)
    assert {(a.actor, a.authority) for a in logins} == {("tls:chru-his.example", "CHRU")}


def test_dicom_over_tls_refuses_another_establishments_title_and_bad_certificates(
        service: RunningService, pki: Pki, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    port = str(service.ports["dicom_tls"])
    image = tmp_path / "ct.dcm"
    image.write_bytes(relabel(UNCOMPRESSED_CT, patient_id="TLS-78", study="1.2.78",
                              series="1.2.78.1", sop="1.2.78.1.1"))
    # A CHRU certificate calling as ICL: A-ASSOCIATE-RJ.
    other = run("storescu", *dcmtk_tls(pki, "CHRU"), "-aet", "ICL", "-aec", "VNA",
                "127.0.0.1", port, str(image))
    assert other.returncode != 0
    assert "Rejected" in other.stderr and "Calling AE Title Not Recognized" in other.stderr
    # No certificate, one of another CA, a name no establishment lists: no association.
    anonymous = run("storescu", *dcmtk_tls(pki, None), "-aet", "CHRU", "-aec", "VNA",
                    "127.0.0.1", port, str(image))
    assert anonymous.returncode != 0
    foreign = run("storescu", *dcmtk_tls(pki, "CHRU", pki.foreign), "-aet", "CHRU",
                  "-aec", "VNA", "127.0.0.1", port, str(image))
    assert foreign.returncode != 0
    stranger = run("storescu", *dcmtk_tls(pki, "STRANGER"), "-aet", "CHRU", "-aec", "VNA",
                   "127.0.0.1", port, str(image))
    assert stranger.returncode != 0
    with service.container.uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("CHRU", "TLS-78")) is None
        assert uow.records.by_identifier(Identifier("ICL", "TLS-78")) is None
    alerts = trail(service, AuditAction.ALERT, "dicom", 4)
    assert sorted(a.subject for a in alerts) == ["A-ASSOCIATE-RQ from ICL",
                                                 "TLS client refused",
                                                 "TLS handshake refused",
                                                 "TLS handshake refused"]
    rejected = next(a for a in alerts if a.subject.startswith("A-ASSOCIATE"))
    assert (rejected.actor, rejected.authority) == ("tls:chru-his.example", "CHRU")
    assert any("refused DICOM association" in r.getMessage() and "calling=ICL" in
               r.getMessage() for r in caplog.records)


# -- HTTPS --------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_https_serves_health_and_tokens_over_tls_1_2_or_later(
        service: RunningService, pki: Pki) -> None:
    base = f"https://localhost:{service.ports['https']}"
    trusting = ssl.create_default_context(cafile=pki.trusted.ca_cert)
    health = httpx.get(base + "/health", verify=trusting)
    assert health.status_code == 200
    # TLS 1.2 with a BCP 195 suite, TLS 1.3 by default; nothing older.
    tls12 = ssl.create_default_context(cafile=pki.trusted.ca_cert)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=tls12) as client:
        assert client.get(base + "/health").status_code == 200
    for maximum, expected in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                              (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        context = ssl.create_default_context(cafile=pki.trusted.ca_cert)
        context.maximum_version = maximum
        with socket.create_connection(("127.0.0.1", service.ports["https"])) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as secured:
            assert secured.version() == expected
            if expected == "TLSv1.2":
                assert secured.cipher()[0] in BCP195_CIPHERS.split(":")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError), \
            socket.create_connection(("127.0.0.1", service.ports["https"])) as raw:
        old.wrap_socket(raw, server_hostname="localhost")

    # A token got over HTTPS works over HTTPS; none, 401. A client certificate is optional.
    new = service.container.auth.add_client("https-client", "system/*.rs", "CHRU")
    assert new.secret is not None
    with httpx.Client(verify=client_context(pki, "CHRU")) as client:
        token = client.post(base + "/oauth/token",
                            data={"grant_type": "client_credentials"},
                            auth=(new.client.client_id, new.secret))
        assert token.status_code == 200, token.text
        bearer = {"Authorization": "Bearer " + token.json()["access_token"]}
        assert client.get(base + "/fhir/Patient?family=NOBODY", headers=bearer).status_code == 200
    assert httpx.get(base + "/fhir/Patient?family=NOBODY", verify=trusting).status_code == 401
    assert service.token() and httpx.get(
        base + "/fhir/Patient?family=NOBODY", verify=trusting,
        headers=service.bearer()).status_code == 200


# -- plain listeners ----------------------------------------------------------------------

def test_plain_listeners_off_loopback_are_refused_unless_allowed(
        database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "refused"
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--data-dir", str(data)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "refusing to listen in plain text on 0.0.0.0" in lines[0]
    assert "--allow-plaintext" in lines[0]
    assert not (data / "mpi.sqlite3").exists()  # refused before any database is made

    running = start_service(database_url, tmp_path / "data", host="0.0.0.0",
                            allow_plaintext=True)
    try:
        with Peer(running.mllp_port) as peer:
            assert segments(peer.send(registration("CHRU", "OPEN-1")))["MSA"][0][1] == "AA"
    finally:
        running.stop()


def test_serve_says_which_tls_setting_is_wrong(tmp_path: Path, pki: Pki) -> None:
    partial = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path),
                                        "--tls-cert", str(pki.trusted.server_cert)])
    assert partial.exit_code == 2
    assert "missing: tls_client_ca, tls_key" in partial.output
    wrong_key = CliRunner().invoke(main, [
        "serve", "--data-dir", str(tmp_path), "--tls-cert", str(pki.trusted.server_cert),
        "--tls-key", str(pki.trusted.ca_key), "--tls-client-ca", str(pki.trusted.ca_cert)])
    assert wrong_key.exit_code == 2
    assert "are not a PEM certificate and its private key" in wrong_key.output
    assert not (tmp_path / "mpi.sqlite3").exists()


# -- the development CA -------------------------------------------------------------------

def test_dev_ca_writes_certificates_the_authorities_file_declares(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    result = CliRunner().invoke(main, ["tls", "dev-ca", str(folder),
                                       "--establishment", "CHRU", "--establishment", "mrun"])
    assert result.exit_code == 0, result.output
    assert "declare these names" not in result.output  # the default file lists them
    assert "mpi serve --tls-cert" in result.output
    for name in ("ca.pem", "server.pem", "client-chru.pem", "client-mrun.pem"):
        assert (folder / name).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    for name in ("ca-key.pem", "server-key.pem", "client-chru-key.pem", "client-mrun-key.pem"):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600

    authorities = tmp_path / "authorities.toml"
    authorities.write_text('[[authority]]\ncode = "HOSP"\nkind = "establishment"\n'
                           'oid = "1.2.3"\nsending_facilities = ["HOSP"]\n\n'
                           '[[authority]]\ncode = "GCS"\nkind = "master"\noid = "1.2.4"\n')
    custom = CliRunner().invoke(main, ["tls", "dev-ca", str(tmp_path / "other"),
                                       "--authorities", str(authorities)])
    assert custom.exit_code == 0, custom.output
    assert 'code = "HOSP": tls_client_names = ["hosp-his.example"]' in custom.output
    unknown = CliRunner().invoke(main, ["tls", "dev-ca", str(tmp_path / "x"),
                                        "--establishment", "GCS"])
    assert unknown.exit_code == 2 and "not an establishment" in unknown.output


# -- settings and the authorities file ----------------------------------------------------

def test_tls_settings_come_from_the_environment_and_names_speak_for_one_establishment(
        tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPI_TLS_CERT", str(pki.trusted.server_cert))
    monkeypatch.setenv("MPI_TLS_KEY", str(pki.trusted.server_key))
    monkeypatch.setenv("MPI_TLS_CLIENT_CA", str(pki.trusted.ca_cert))
    shown = CliRunner().invoke(main, ["config", "show", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    rows = {row["setting"]: row for row in json.loads(shown.output)}
    assert rows["tls_cert"]["source"] == "environment (MPI_TLS_CERT)"
    assert (rows["mllp_tls_port"]["value"], rows["dicom_tls_port"]["value"],
            rows["https_port"]["value"], rows["allow_plaintext"]["value"]) == (
        "2576", "2762", "8443", "False")

    twice = tmp_path / "twice.toml"
    twice.write_text('[[authority]]\ncode = "A"\nkind = "establishment"\noid = "1.1"\n'
                     'tls_client_names = ["his.example"]\n\n'
                     '[[authority]]\ncode = "B"\nkind = "establishment"\noid = "1.2"\n'
                     'tls_client_names = ["HIS.example"]\n')
    with pytest.raises(AuthoritiesFileError, match="in the tls_client_names of both A and B"):
        load_authorities(twice)
