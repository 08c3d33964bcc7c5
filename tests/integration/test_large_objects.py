"""Objects received without their bytes in memory: a STOW-RS body spooled to a temporary file
and its parts read as views of it, a C-STORE dataset received into a file and put behind the
archive's file meta information by the kernel; what is stored is byte for byte what the peer
sent (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from adapters.dicom import spool
from adapters.dicom.header import meta_end, parse_object
from adapters.dicom.spool import MultipartError, SpooledBody, chunks
from adapters.dicom.web import split_multipart
from tests.dicom_objects import UNCOMPRESSED_CT, relabel, run
from tests.service import RunningService, start_service


def _body(*parts: tuple[str, bytes], boundary: str = "XyZ") -> bytes:
    return b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: " + kind.encode() +
                    b"\r\n\r\n" + data + b"\r\n" for kind, data in parts) + (
        b"--" + boundary.encode() + b"--\r\n")


def test_a_spooled_body_gives_the_parts_split_in_memory_would_across_its_windows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool, "_WINDOW", 97)  # the delimiters fall across windows
    first = relabel(UNCOMPRESSED_CT, patient_id="1", study="1.2.3", series="1.2.3.1",
                    sop="1.2.3.1.1")
    body = _body(("application/dicom", first), ("text/plain", b"a note"),
                 ("application/dicom", b""))
    with SpooledBody(tmp_path / "spool") as spooled:
        for start in range(0, len(body), 1000):
            spooled.write(body[start:start + 1000])
        parts = spooled.parts("XyZ")
        assert [(h, bytes(v)) for h, v in parts] == split_multipart(body, "XyZ")
        view = parts[0][1]
        assert b"".join(bytes(c) for c in chunks(view, 4096)) == first
        parsed = parse_object(view)
        assert parsed.sha256 == parse_object(first).sha256
        assert parsed.header.sop_instance_uid == "1.2.3.1.1"
        del view, parts
    # The spool's file has no name: nothing is left in its folder.
    assert list((tmp_path / "spool").iterdir()) == []
    for bad in (b"no delimiter at all", b"--XyZ\r\nContent-Type: x\r\n\r\nnever closed",
                b"--XyZ\r\nno header section--XyZ--\r\n"):
        with SpooledBody(tmp_path) as spooled, pytest.raises(MultipartError):
            spooled.write(bad)
            spooled.parts("XyZ")


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path / "data")
    yield running
    running.stop()


def _stored(service: RunningService, sop: str) -> bytes:
    c = service.container
    with c.uow_factory(read_only=True) as uow:
        instance = uow.archive.instance(sop)
    assert instance is not None
    with c.dicom.blobs.open(instance.blob_key) as handle:
        return handle.read()


def test_objects_received_through_files_are_stored_byte_for_byte(
        service: RunningService, tmp_path: Path) -> None:
    # C-STORE (dcmtk's storescu): the dataset as sent, behind the archive's file meta
    # information naming the calling AE title.
    sent = tmp_path / "sent.dcm"
    sent.write_bytes(relabel(UNCOMPRESSED_CT, patient_id="4711", study="1.2.40",
                             series="1.2.40.1", sop="1.2.40.1.1"))
    result = run("storescu", "-xe", "-aet", "CHRU", "-aec", "VNA", "127.0.0.1",
                 str(service.dicom_port), str(sent))
    assert result.returncode == 0, result.stderr
    stored = _stored(service, "1.2.40.1.1")
    received = dcmread(BytesIO(stored))
    assert received.file_meta.SourceApplicationEntityTitle == "CHRU"
    assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # what -xe sent
    original = dcmread(sent)
    # storescu sends every element but the file's trailing padding.
    assert [(e.tag, e.value) for e in received if e.tag != 0x7FE00010] == [
        (e.tag, e.value) for e in original if e.tag not in (0x7FE00010, 0xFFFCFFFC)]
    assert received.PixelData == original.PixelData
    assert parse_object(stored).sha256 == hashlib.sha256(stored).hexdigest()
    assert stored[meta_end(stored):].endswith(original.PixelData)

    # STOW-RS, the body sent in small chunks: each DICOM part stored as sent, the others
    # failed, and no spooled file left behind.
    objects = [relabel(UNCOMPRESSED_CT, patient_id="4712", study="1.2.41", series="1.2.41.1",
                       sop=f"1.2.41.1.{n}") for n in (1, 2)]
    body = _body(("application/dicom", objects[0]), ("application/json", b"{}"),
                 ("application/dicom", objects[1]))

    def streamed() -> Iterator[bytes]:
        for start in range(0, len(body), 7919):
            yield body[start:start + 7919]

    response = httpx.post(f"{service.http_base}/dicomweb/studies", content=streamed(),
                          headers={"Content-Type": 'multipart/related; '
                                   'type="application/dicom"; boundary=XyZ',
                                   **service.bearer(establishment="CHRU", name="pacs")})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert [i["00081155"]["Value"][0] for i in answer["00081199"]["Value"]] == [
        "1.2.41.1.1", "1.2.41.1.2"]
    assert len(answer["00081198"]["Value"]) == 1
    assert [_stored(service, f"1.2.41.1.{n}") for n in (1, 2)] == objects
    spooled = service.container.settings.data_dir / "spool"
    assert not spooled.exists() or list(spooled.iterdir()) == []
