"""The archive volume full (a small tmpfs mounted for the test; SQLite and PostgreSQL):
C-STORE answers 0xA700 and STOW-RS 503 with Retry-After, nothing partial stays behind (no
temporary file, no index row), and ingest resumes by itself once space is freed."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from adapters.dicom.preservation import check_fixity
from adapters.sql.tables import archive_instances
from tests.drills.harness import c_store, ct_object
from tests.service import RunningService, start_service

SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
VOLUME = "2m"  # a few dozen small CT objects


@pytest.fixture
def archive_volume(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own size, mounted for the test and unmounted after it."""
    folder = tmp_path / "archive"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME},mode=0755",
                              "tmpfs", str(folder)], capture_output=True, text=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here (needs root and mount): "
                    f"{mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def service(database_url: str, tmp_path: Path, archive_volume: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path / "data", archive_dir=archive_volume)
    yield running
    running.stop()


def fill(volume: Path) -> Path:
    """Fill the volume to its last page with one file (unbuffered writes, big blocks then
    single pages); returns the file."""
    filler = volume / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (64 * 1024, 4096, 512):
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    return filler


def stow(service: RunningService, bearer: dict[str, str], *objects: bytes) -> httpx.Response:
    body = b"".join(b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
                    for data in objects) + b"--XyZ--\r\n"
    return httpx.post(service.http_base + "/dicomweb/studies", content=body, timeout=30,
                      headers={**bearer, "Accept": "application/dicom+json",
                               "Content-Type": 'multipart/related; type="application/dicom"; '
                                               "boundary=XyZ"})


def files_in(volume: Path) -> list[str]:
    return sorted(str(p.relative_to(volume)) for p in volume.rglob("*") if p.is_file())


def indexed(service: RunningService) -> int:
    with service.container.engine.connect() as connection:
        return int(connection.execute(
            select(func.count()).select_from(archive_instances)).scalar_one())


def test_a_full_archive_volume_refuses_cleanly_and_ingest_resumes_when_space_is_freed(
        service: RunningService, archive_volume: Path) -> None:
    bearer = service.bearer("system/ImagingStudy.cruds", "CHRU")
    assert c_store(service.dicom_port, ct_object(1)) == SUCCESS
    before = files_in(archive_volume)
    assert len(before) == 1 and indexed(service) == 1

    filler = fill(archive_volume)
    assert os.statvfs(archive_volume).f_bavail == 0
    assert c_store(service.dicom_port, ct_object(2)) == OUT_OF_RESOURCES
    refused = stow(service, bearer, ct_object(3))
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"]
    failure = refused.json()["00081198"]["Value"][0]  # FailedSOPSequence
    assert failure["00081197"]["Value"] == [OUT_OF_RESOURCES]  # FailureReason
    # nothing partial: no temporary file left, no index row without its file
    assert files_in(archive_volume) == sorted([*before, "filler"])
    assert indexed(service) == 1

    filler.unlink()  # the operator frees space: no restart needed
    assert c_store(service.dicom_port, ct_object(2)) == SUCCESS
    assert stow(service, bearer, ct_object(3)).status_code == 200
    assert indexed(service) == 3
    c = service.container
    fixity = check_fixity(c.uow_factory, c.dicom.blobs, c.clock, c.audit, limit=100)
    assert fixity.checked == 3 and fixity.failed == []
