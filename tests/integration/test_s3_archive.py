"""The archive on an S3-compatible object store (moto's standalone server on loopback), on
SQLite and PostgreSQL: what a modality stores lands in the bucket, comes back coerced and
whole through C-GET and WADO-RS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import S3Server
from tests.dicom_objects import UNCOMPRESSED_CT, read, relabel, run
from tests.integration.test_dicom_archive import (
    ORIGINAL_PIXELS,
    multipart_objects,
    register,
    store,
    write,
)
from tests.service import RunningService, start_service

STUDY = "1.2.250.1.999.54.9.31"


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in S3Server.ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    return s3_server.new_bucket()


@pytest.fixture
def service(database_url: str, tmp_path: Path, bucket: str) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path / "data",
                            archive_url=f"s3://{bucket}/vna")
    yield running
    running.stop()


def test_objects_stored_by_a_modality_live_in_the_bucket_and_come_back_coerced(
        service: RunningService, bucket: str, s3_server: S3Server, tmp_path: Path) -> None:
    register(service, "CHRU", "300001")
    register(service, "MRUN", "M3001")  # the same person (same INS) at the Maternité
    sent = tmp_path / "sent"
    sent.mkdir()
    store(service, "CHRU", [write(sent, UNCOMPRESSED_CT, relabel(
        UNCOMPRESSED_CT, patient_id="300001", study=STUDY, series=f"{STUDY}.1",
        sop=f"{STUDY}.1.1"), "a")])

    names = [o["Key"] for o in s3_server.client().list_objects_v2(  # type: ignore[attr-defined]
        Bucket=bucket)["Contents"]]
    assert len(names) == 1 and names[0].startswith(f"vna/{STUDY}/{STUDY}.1/{STUDY}.1.1.")
    assert not (tmp_path / "data" / "archive").exists()  # nothing on the local disk

    got = tmp_path / "got"
    got.mkdir()
    result = run("getscu", "-aet", "MRUN", "-aec", "VNA", "-S", "-od", str(got),
                 "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}",
                 "127.0.0.1", str(service.dicom_port))
    assert result.returncode == 0, result.stderr
    [by_get] = [read(p) for p in got.iterdir()]
    assert by_get.PatientID == "M3001"
    assert by_get.PixelData == ORIGINAL_PIXELS[UNCOMPRESSED_CT]

    wado = httpx.get(f"{service.http_base}/dicomweb/studies/{STUDY}",
                     headers=service.bearer("system/ImagingStudy.rs", "MRUN"))
    assert wado.status_code == 200
    [by_wado] = multipart_objects(wado)
    assert by_wado.PatientID == "M3001"
    assert by_wado.PixelData == ORIGINAL_PIXELS[UNCOMPRESSED_CT]
