"""The archive's lifecycle through the running service and its real peers: objects the archive
compressed go out in the syntax each asker takes (WADO-RS, dcmtk's getscu and movescu), a
fixity mismatch is flagged everywhere it must be, retention follows the feed through the
outbox, and a destruction killed midway (SIGKILL) finishes when run again, after which the
study is gone from every query and answered 410 Gone (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE
from adapters.cli import main
from mpi.archive import Sender
from mpi.identity import Actor, MergeRecords, RecordData, RegisterRecord
from mpi.model import Identifier
from tests.dicom_objects import UNCOMPRESSED_CT, UNCOMPRESSED_MR, read, relabel, run
from tests.service import PASSWORD, RunningService, start_service

READER = "system/Patient.rs system/ImagingStudy.rs"
JPEG_LS = "1.2.840.10008.1.2.4.80"
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
QUIET = dict(compress_interval=1e6, fixity_interval=1e6, retention_sweep_interval=1e6)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _register(service: RunningService, value: str, *, birth: date = date(1950, 1, 1),
              visit: datetime | None = None, authority: str = "CHRU") -> None:
    c = service.container
    with c.uow_factory() as uow:
        c.identity.register(uow, RegisterRecord(RecordData(
            Identifier(authority, value), {"birth_family_name": "DUPONT",
                                           "given_names": ("Hélène",), "birth_date": birth,
                                           "sex": "F"},
            activity_at=visit)), Actor(f"HIS-{authority}", authority))
        uow.commit()


def _store(service: RunningService, name: str, patient: str, study: str, *,
           authority: str = "CHRU", **attributes: object) -> bytes:
    data = relabel(name, patient_id=patient, study=study, series=f"{study}.1",
                   sop=f"{study}.1.1", **attributes)
    service.container.dicom.store(data, Sender(authority, authority))
    return data


def _options(service: RunningService) -> list[str]:
    settings = service.container.settings
    return ["--database-url", str(settings.database_url), "--data-dir",
            str(settings.data_dir)]


def _parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(the part's Content-Type, its body) of a multipart/related answer."""
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    parts = []
    for part in response.content.split(f"--{boundary}".encode())[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        content_type = next(line.split(":", 1)[1].strip() for line in
                            head.decode().split("\r\n") if line.lower().startswith(
                                "content-type"))
        parts.append((content_type, body[:-2]))
    return parts


def _until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def viewer_port() -> int:
    return _free_port()


@pytest.fixture
def service(database_url: str, tmp_path: Path, viewer_port: int) -> Iterator[RunningService]:
    authorities = tmp_path / "authorities.toml"
    authorities.write_text(DEFAULT_AUTHORITIES_FILE.read_text(encoding="utf-8") + (
        f'\n[[dicom_destination]]\nae_title = "VIEWER"\nhost = "127.0.0.1"\n'
        f'port = {viewer_port}\n'), encoding="utf-8")
    running = start_service(database_url, tmp_path / "data", authorities=authorities,
                            **QUIET)
    yield running
    running.stop()


# -- on the way out -----------------------------------------------------------------------


def test_an_object_the_archive_compressed_goes_out_in_the_syntax_each_asker_takes(
        service: RunningService, tmp_path: Path, viewer_port: int) -> None:
    c = service.container
    _register(service, "100234")
    original = read(_store(service, UNCOMPRESSED_CT, "100234", "1.7.1"))
    report = c.compressor.run(10, min_age_days=0)
    assert (report.compressed, report.failed) == (1, [])
    with c.uow_factory(read_only=True) as uow:
        [stored] = uow.archive.instances(study_uid="1.7.1")
    assert stored.transfer_syntax_uid == JPEG_LS
    with c.dicom.blobs.open(stored.blob_key) as handle:
        stored_pixels = read(handle.read()).PixelData
    assert stored_pixels != original.PixelData  # encapsulated JPEG-LS, not the raw pixels
    url = f"{service.http_base}/dicomweb/studies/1.7.1/series/1.7.1.1/instances/1.7.1.1.1"
    headers = service.bearer(READER, "CHRU")

    def wado(accept: str | None) -> httpx.Response:
        return httpx.get(url, headers={**headers, **({"Accept": accept} if accept else {})})

    # No transfer syntax named: Explicit VR Little Endian (PS3.18), the original pixels.
    for accept in (None, "*/*", 'multipart/related; type="application/dicom"'):
        answer = wado(accept)
        assert answer.status_code == 200, answer.text
        [(content_type, body)] = _parts(answer)
        got = read(body)
        assert content_type == f"application/dicom; transfer-syntax={EXPLICIT_LE}"
        assert got.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert got.PixelData == original.PixelData
        assert got.SOPInstanceUID == "1.7.1.1.1" and got.PatientID == "100234"
    # As stored: the compressed bytes, no decode.
    [(content_type, body)] = _parts(wado(
        'multipart/related; type="application/dicom"; transfer-syntax=*'))
    assert content_type == f"application/dicom; transfer-syntax={JPEG_LS}"
    assert read(body).PixelData == stored_pixels
    # A named syntax: transcoded, the pixels equal.
    for syntax in (IMPLICIT_LE, JPEG_LS, "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"):
        answer = wado(f'multipart/related; type="application/dicom"; transfer-syntax={syntax}')
        assert answer.status_code == 200, (syntax, answer.text)
        [(content_type, body)] = _parts(answer)
        got = read(body)
        assert (content_type, got.file_meta.TransferSyntaxUID) == (
            f"application/dicom; transfer-syntax={syntax}", syntax)
        assert (got.pixel_array == original.pixel_array).all()
        assert got.SOPInstanceUID == "1.7.1.1.1"
    # A syntax the archive does not write (lossy, or unknown): 406.
    for syntax in ("1.2.840.10008.1.2.4.50", "1.2.3.4"):
        assert wado(f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
                    ).status_code == 406

    # C-GET by a peer that takes only uncompressed syntaxes (getscu's default): decoded.
    port = str(service.dicom_port)
    got_dir = tmp_path / "got"
    got_dir.mkdir()
    result = run("getscu", "-aet", "CHRU", "-aec", "VNA", "-S", "-od", str(got_dir),
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.7.1",
                 "127.0.0.1", port)
    assert result.returncode == 0, result.stderr
    [by_get] = [read(p) for p in got_dir.iterdir()]
    assert by_get.file_meta.TransferSyntaxUID in (EXPLICIT_LE, IMPLICIT_LE)
    assert by_get.PixelData == original.PixelData
    # A peer that takes JPEG-LS: the stored bytes, not decoded.
    got_jls = tmp_path / "got-jls"
    got_jls.mkdir()
    result = run("getscu", "-aet", "CHRU", "-aec", "VNA", "-S", "+xt", "-od", str(got_jls),
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.7.1",
                 "127.0.0.1", port)
    assert result.returncode == 0, result.stderr
    [by_get] = [read(p) for p in got_jls.iterdir()]
    assert by_get.file_meta.TransferSyntaxUID == JPEG_LS
    assert by_get.PixelData == stored_pixels
    # C-MOVE to a destination that accepts only uncompressed syntaxes, then JPEG-LS.
    for option, syntaxes, pixels in (("+x=", (EXPLICIT_LE, IMPLICIT_LE), original.PixelData),
                                     ("+xt", (JPEG_LS,), stored_pixels)):
        moved_dir = tmp_path / f"moved{option}"
        moved_dir.mkdir()
        result = run("movescu", "-aet", "CHRU", "-aec", "VNA", "-aem", "VIEWER", "--port",
                     str(viewer_port), option, "-S", "-od", str(moved_dir),
                     "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.7.1",
                     "127.0.0.1", port)
        assert result.returncode == 0, result.stderr
        [moved] = [read(p) for p in moved_dir.iterdir()]
        assert moved.file_meta.TransferSyntaxUID in syntaxes, option
        assert moved.PixelData == pixels, option


# -- fixity ----------------------------------------------------------------------------------


def test_a_changed_file_is_flagged_logged_audited_and_shown_on_health(
        service: RunningService, caplog: pytest.LogCaptureFixture) -> None:
    c = service.container
    _register(service, "100234")
    _store(service, UNCOMPRESSED_CT, "100234", "1.8.1")
    _store(service, UNCOMPRESSED_MR, "100234", "1.8.2")
    runner = CliRunner()
    clean = runner.invoke(main, ["archive", "verify", "--all", *_options(service)])
    assert clean.exit_code == 0, clean.output
    assert "2 checked, 0 mismatch(es)" in clean.output
    assert httpx.get(f"{service.http_base}/health").json()["archive"]["fixity_failures"] == 0
    with c.uow_factory(read_only=True) as uow:
        [bad] = uow.archive.instances(study_uid="1.8.2")
    path = c.settings.resolved_archive_dir() / bad.blob_key
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of one pixel flips on the disk
    path.write_bytes(bytes(data))

    with caplog.at_level(logging.ERROR, logger="mpi.archive"):
        checked = runner.invoke(main, ["archive", "verify", "--all", *_options(service)])
    assert checked.exit_code == 1
    assert "2 checked, 1 mismatch(es)" in checked.output
    assert f"MISMATCH {bad.sop_instance_uid}" in checked.output
    assert any(bad.sop_instance_uid in r.getMessage() and "SHA-256" in r.getMessage()
               for r in caplog.records)
    health = httpx.get(f"{service.http_base}/health").json()
    assert health["status"] == "degraded"
    assert (health["archive"]["fixity_failures"],
            health["archive"]["fixity_failed_instances"]) == (1, [bad.sop_instance_uid])
    with c.uow_factory(read_only=True) as uow:
        assert [i.sop_instance_uid for i in uow.archive.fixity_failures()] == [
            bad.sop_instance_uid]
    [event] = [e for e in c.audit.search(actor="system:fixity", limit=10)]
    assert (event.outcome, event.detail["study"], event.detail["sha256"]) == (
        "fixity-mismatch", "1.8.2", bad.sha256)
    # The good copy restored: the next check clears the flag.
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    assert runner.invoke(main, ["archive", "verify", "--all",
                                *_options(service)]).exit_code == 0
    assert httpx.get(f"{service.http_base}/health").json()["archive"]["fixity_failures"] == 0


# -- retention from the outbox ----------------------------------------------------------------


def _retention(service: RunningService) -> dict[str, tuple[Any, ...]]:
    with service.container.uow_factory(read_only=True) as uow:
        return {r.study_instance_uid: (r.expires_on, r.basis)
                for r in uow.archive.retention_report() if r.expires_on is not None}


def test_retention_follows_the_outbox_stored_studies_stays_and_merges(
        database_url: str, tmp_path: Path) -> None:
    service = start_service(database_url, tmp_path / "data", retention_years={"ICL": 30},
                            **QUIET)
    try:
        _register(service, "1", visit=datetime(2005, 6, 1, tzinfo=UTC))
        _register(service, "2", visit=datetime(2012, 3, 1, tzinfo=UTC))
        _store(service, UNCOMPRESSED_CT, "1", "1.9.1", StudyDate="20040101")
        # Storing a study: its retention is computed from the outbox, no sweep.
        _until(lambda: "1.9.1" in _retention(service))
        assert _retention(service)["1.9.1"] == (date(2025, 6, 1), "last-visit+20y")
        # A new stay (an encounter event): the record's studies are computed again.
        _register(service, "1", visit=datetime(2010, 9, 1, tzinfo=UTC))
        _until(lambda: _retention(service)["1.9.1"][0] == date(2030, 9, 1))
        # A40: IPP 2 (last seen 2012) merged into IPP 1; its visits count for the survivor.
        c = service.container
        with c.uow_factory() as uow:
            c.identity.merge(uow, MergeRecords(RecordData(Identifier("CHRU", "1")),
                                               Identifier("CHRU", "2")), Actor("HIS", "CHRU"))
            uow.commit()
        _until(lambda: _retention(service)["1.9.1"][0] == date(2032, 3, 1))
        # An establishment that keeps its records longer (the configuration's override).
        _register(service, "7", visit=datetime(2005, 6, 1, tzinfo=UTC), authority="ICL")
        _store(service, UNCOMPRESSED_MR, "7", "1.9.7", authority="ICL", StudyDate="20040101")
        _until(lambda: "1.9.7" in _retention(service))
        assert _retention(service)["1.9.7"] == (date(2035, 6, 1), "last-visit+30y")
    finally:
        service.stop()


# -- destruction ------------------------------------------------------------------------------


class Died(BaseException):
    """The process dies here (nothing catches a BaseException)."""


class DyingTrail:
    """The audit trail of a process that dies just before writing its ``at``-th "Study
    Deleted" event, after the study's destruction committed."""

    def __init__(self, trail: Any, at: int) -> None:
        self.trail, self.at, self.seen = trail, at, 0

    def record(self, event: Any) -> None:
        if event.detail.get("event_id") == "110105":
            self.seen += 1
            if self.seen == self.at:
                raise Died()
        self.trail.record(event)

    def search(self, **criteria: Any) -> Any:
        return self.trail.search(**criteria)


def _inconsistencies(service: RunningService, studies: list[str]) -> list[str]:
    """Files without a row (neither an instance nor the deletion journal), rows without
    their file."""
    c = service.container
    root = c.settings.resolved_archive_dir()
    with c.uow_factory(read_only=True) as uow:
        rows = {f.blob_key for s in studies for f in uow.archive.instance_files(s)}
        journal = {p.blob_key for p in uow.archive.pending_deletions(100_000)}
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
             and not p.name.startswith(".")}
    return ([f"file without its row: {k}" for k in sorted(files - rows - journal)]
            + [f"row without its file: {k}" for k in sorted(rows - files)])


def _mpi(service: RunningService, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from adapters.cli import main; main()", *arguments,
         *_options(service)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2])


def test_a_destruction_killed_midway_finishes_and_the_study_is_gone_everywhere(
        service: RunningService, tmp_path: Path) -> None:
    c = service.container
    count = 60
    studies = [f"1.6.{n}" for n in range(1, count + 1)]
    _register(service, "100234", visit=datetime(2005, 6, 1, tzinfo=UTC))
    for study in studies:
        _store(service, UNCOMPRESSED_CT, "100234", study, StudyDate="20050601")
    _until(lambda: all(s in _retention(service) for s in studies), 60)
    with c.uow_factory(read_only=True) as uow:
        sha256 = {s: {f.sha256 for f in uow.archive.instance_files(s)} for s in studies}
    for name, role in (("arch", "archivist"), ("dr.dim", "dim"), ("mme.dir", "director")):
        c.auth.add_user(name, PASSWORD, (role,))
    runner = CliRunner()
    for arguments in (["propose", "--establishment", "CHRU", "--by", "arch"],
                      ["approve", "1", "--by", "dr.dim"], ["approve", "1", "--by", "mme.dir"],
                      ["visa", "1", "--reference", "AD54-2026-7", "--by", "arch"]):
        done = runner.invoke(main, ["lifecycle", *arguments, *_options(service)])
        assert done.exit_code == 0, done.output
    assert f"{count} studies" in runner.invoke(
        main, ["lifecycle", "show", "1", *_options(service)]).output

    # 1. A process that dies after a study's destruction committed, before its audit event.
    lifecycle, trail = c.lifecycle, c.lifecycle.audit
    lifecycle.audit = DyingTrail(trail, 3)  # type: ignore[assignment]
    from mpi.archive.lifecycle import Staff

    with pytest.raises(Died):
        lifecycle.destroy(Staff("arch", frozenset({"archivist"})), 1, channel="cli",
                          source=None)
    lifecycle.audit = trail
    assert _inconsistencies(service, studies) == []
    # 2. `mpi lifecycle destroy` killed (SIGKILL) once its first deletions are seen.
    process = _mpi(service, "lifecycle", "destroy", "1", "--by", "arch")
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("destroyed "), line + (process.stderr.read() if process.stderr
                                                   else "")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL
    with c.uow_factory(read_only=True) as uow:
        proposal = uow.lifecycle.proposal(1)
        assert proposal is not None and proposal.status.value == "destroying"
        left = [i for i in proposal.items if i.outcome.value == "pending"]
    assert left, "the destruction finished before it was killed: nothing was tested"
    assert _inconsistencies(service, studies) == []
    # 3. Run again: it finishes.
    process = _mpi(service, "lifecycle", "destroy", "1", "--by", "arch")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert f"{count} studies destroyed, 0 kept" in out
    assert _inconsistencies(service, studies) == []
    root = c.settings.resolved_archive_dir()
    assert [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")] == []
    with c.uow_factory(read_only=True) as uow:
        assert uow.archive.pending_deletions(10) == []
        assert all(uow.archive.study(s) is None for s in studies)
        proposal = uow.lifecycle.proposal(1)
        assert proposal is not None and proposal.status.value == "destroyed"
        tombstones = {t.study_instance_uid: t for t in uow.lifecycle.tombstones()}
    assert sorted(tombstones) == sorted(studies)
    for study, tombstone in tombstones.items():
        assert {f["sha256"] for f in tombstone.files} == sha256[study]
        assert tombstone.instances == 1 and tombstone.proposal_id == 1
        assert [a["role"] for a in tombstone.decision["approvals"]] == ["dim", "director"]
    # Every study in the audit trail as DICOM "Study Deleted", once, with its person.
    deleted = [e for e in trail.search(actor="user:arch", limit=1000)
               if e.detail.get("event_id") == "110105"]
    assert sorted(e.detail["study"] for e in deleted) == sorted(studies)
    assert all(e.persons for e in deleted)

    # Afterwards: QIDO-RS and C-FIND find nothing, WADO-RS answers 410 Gone.
    base, headers = service.http_base, service.bearer(READER, "CHRU")
    assert httpx.get(f"{base}/dicomweb/studies", params={"PatientID": "100234"},
                     headers=headers).json() == []
    assert httpx.get(f"{base}/dicomweb/studies", params={"StudyInstanceUID": studies[0]},
                     headers=headers).json() == []
    found = tmp_path / "found"
    found.mkdir()
    result = run("findscu", "-aet", "CHRU", "-aec", "VNA", "-S", "-X", "-od", str(found),
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=100234",
                 "-k", "StudyInstanceUID", "127.0.0.1", str(service.dicom_port))
    assert result.returncode == 0, result.stderr
    assert list(found.iterdir()) == []
    study = studies[0]
    for path in (f"/studies/{study}", f"/studies/{study}/series/{study}.1",
                 f"/studies/{study}/series/{study}.1/instances/{study}.1.1",
                 f"/studies/{study}/metadata"):
        gone = httpx.get(f"{base}/dicomweb{path}", headers=headers)
        assert gone.status_code == 410, (path, gone.text)
    # The tombstones, for scripts: no demographics.
    listed = runner.invoke(main, ["lifecycle", "tombstones", "--format", "json",
                                  *_options(service)])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert sorted(r["study_instance_uid"] for r in rows) == sorted(studies)
    text = listed.stdout.upper()
    assert not any(word in text for word in ("DUPONT", "HÉLÈNE", "HELENE", "100234",
                                             "19500101", "1950-01-01"))


# -- the same steps over HTTP, by people with roles; the reports and corrections by command ---


def test_the_lifecycle_over_http_for_people_with_roles_and_its_reports_by_command(
        service: RunningService) -> None:
    c = service.container
    for value, visit in (("1", 2005), ("2", 2005), ("3", 2020)):
        _register(service, value, visit=datetime(visit, 6, 1, tzinfo=UTC))
        _store(service, UNCOMPRESSED_MR, value, f"1.5.{value}", StudyDate=f"{visit}0601")
    _until(lambda: len(_retention(service)) == 3)
    api = f"{service.http_base}/api/lifecycle"
    assert httpx.get(f"{api}/report").status_code == 401
    assert httpx.get(f"{api}/report", headers=service.bearer()).status_code == 403
    assert service.person("doc", "clinician").get("/api/lifecycle/report").status_code == 403
    arch = service.person("arch", "archivist")
    dim = service.person("dr.dim", "dim")
    director = service.person("mme.dir", "director")

    report = arch.get("/api/lifecycle/report", params={"establishment": "CHRU"}).json()
    rows = {r["study_instance_uid"]: r for r in report["studies"]}
    assert rows["1.5.1"] == {
        "study_instance_uid": "1.5.1", "establishment": "CHRU", "patient": "1",
        "expires_on": "2025-06-01", "basis": "last-visit+20y", "last_visit": "2005-06-01",
        "held": False, "size_bytes": rows["1.5.1"]["size_bytes"]}
    assert rows["1.5.1"]["size_bytes"] > 0
    assert [(t["year"], t["studies"]) for t in report["totals"]] == [("2025", 2), ("2040", 1)]

    hold = arch.post("/api/lifecycle/holds", json={
        "study_instance_uid": "1.5.2", "reason": "claim", "reference": "TA-2026-1"})
    assert hold.status_code == 201, hold.text
    assert dim.post("/api/lifecycle/holds", json={
        "study_instance_uid": "1.5.1", "reason": "x", "reference": "y"}).status_code == 403
    proposal = arch.post("/api/lifecycle/proposals", json={"establishment": "CHRU"})
    assert proposal.status_code == 201, proposal.text
    number = proposal.json()["id"]
    # Only the expired, unheld study is listed.
    assert [i["study_instance_uid"] for i in proposal.json()["items"]] == ["1.5.1"]
    csv_text = arch.get(f"/api/lifecycle/proposals/{number}/bordereau.csv")
    assert csv_text.headers["content-type"].startswith("text/csv")
    assert csv_text.text.splitlines()[0].startswith("study_instance_uid,patient,study_date")
    assert csv_text.text.splitlines()[1].startswith("1.5.1,1,2005-06-01")
    # Two different approvers, neither the proposer; the visa by an archivist.
    assert arch.post(f"/api/lifecycle/proposals/{number}/approvals",
                     json={}).status_code == 403
    assert dim.post(f"/api/lifecycle/proposals/{number}/approvals", json={}).status_code == 200
    assert dim.post(f"/api/lifecycle/proposals/{number}/approvals",
                    json={}).status_code in (403, 409)
    assert arch.post(f"/api/lifecycle/proposals/{number}/destruction").status_code == 409
    assert director.post(f"/api/lifecycle/proposals/{number}/approvals",
                         json={}).json()["status"] == "approved"
    assert dim.post(f"/api/lifecycle/proposals/{number}/visa",
                    json={"reference": "AD54"}).status_code == 403
    assert arch.post(f"/api/lifecycle/proposals/{number}/visa",
                     json={"reference": "AD54"}).status_code == 200
    destroyed = arch.post(f"/api/lifecycle/proposals/{number}/destruction")
    assert destroyed.status_code == 200, destroyed.text
    assert destroyed.json()["destroyed"] == ["1.5.1"]
    [tombstone] = arch.get("/api/lifecycle/tombstones").json()["tombstones"]
    assert tombstone["study_instance_uid"] == "1.5.1"
    assert "DUPONT" not in json.dumps(tombstone).upper()
    released = arch.post(f"/api/lifecycle/holds/{hold.json()['id']}/release",
                         json={"reason": "claim dismissed"})
    assert released.status_code == 200 and released.json()["active"] is False
    trail = {e.subject for e in c.audit.search(actor="user:arch", limit=100)}
    assert {f"lifecycle propose {number}", f"lifecycle visa {number}",
            "lifecycle destroy 1.5.1"} <= trail

    # The same reports by command, for people and scripts.
    runner = CliRunner()
    as_csv = runner.invoke(main, ["lifecycle", "report", "--format", "csv", *_options(service)])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.splitlines()[0] == (
        "study_instance_uid,establishment,patient,expires_on,basis,last_visit,held,size_bytes")
    as_json = json.loads(runner.invoke(main, ["lifecycle", "report", "--as-of", "2030-01-01",
                                              "--format", "json", *_options(service)]).stdout)
    assert [r["study_instance_uid"] for r in as_json["studies"]] == ["1.5.2"]
    holds = json.loads(runner.invoke(main, ["lifecycle", "holds", "--all", "--format", "json",
                                            *_options(service)]).stdout)
    assert [(h["study_instance_uid"], h["active"]) for h in holds] == [("1.5.2", False)]
    refused = runner.invoke(main, ["lifecycle", "hold", "--study", "1.5.3", "--reason", "r",
                                   "--reference", "x", "--by", "nobody", *_options(service)])
    assert refused.exit_code != 0 and "no user account 'nobody'" in refused.output
    # A misfiled study moves to the right record, and the next answers follow.
    c.auth.add_user("iv", PASSWORD, ("identity-vigilance",))
    moved = runner.invoke(main, ["archive", "reassign", "--study", "1.5.3", "--to", "CHRU|2",
                                 "--by", "iv", "--reason", "wrong worklist entry",
                                 *_options(service)])
    assert moved.exit_code == 0, moved.output
    assert "CHRU|3 -> CHRU|2" in moved.stdout
    found = httpx.get(f"{service.http_base}/dicomweb/studies", params={"PatientID": "2"},
                      headers=service.bearer(READER, "CHRU")).json()
    assert sorted(s["0020000D"]["Value"][0] for s in found) == ["1.5.2", "1.5.3"]
    assert runner.invoke(main, ["archive", "reassign", "--study", "1.5.3", "--to", "CHRU|3",
                                "--by", "arch", "--reason", "r",
                                *_options(service)]).exit_code != 0  # not identity-vigilance


def test_the_sweep_reads_a_batch_of_records_and_their_studies_in_a_few_queries(
        database_url: str) -> None:
    from sqlalchemy import event

    from adapters.sql.engine import create_engine_for
    from bench.lifecycle import NOW, load
    from mpi.archive.retention import RetentionPolicy, sweep_retention
    from tests.conftest import sql_uow_factory

    engine = create_engine_for(database_url)
    try:
        factory = sql_uow_factory(engine)
        load(engine, 300, 2)
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute",
                     lambda _c, _k, statement, *_: statements.append(statement))
        assert sweep_retention(factory, RetentionPolicy(), lambda: NOW) == 600
        assert len(statements) <= 10, statements  # not one query (or five) per record
        with factory(read_only=True) as uow:
            rows = uow.archive.retention_report()
        assert len(rows) == 600 and all(r.expires_on is not None for r in rows)
    finally:
        engine.dispose()
