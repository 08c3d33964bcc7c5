"""What the OHIF viewer asks of DICOMweb, timed over real HTTP, beside ``GET /health`` (the
floor of one authenticated round trip through the same server) measured in the same run:

- a series' ``metadata`` (coerced headers with BulkDataURIs);
- ``frames/1`` as stored, for an uncompressed and a JPEG-LS 512x512 16-bit CT image (what
  OHIF fetches with ``transfer-syntax=*``), and the JPEG-LS one decoded;
- an instance ``rendered`` (JPEG, windowed) and a study ``thumbnail``.

    python bench/viewer.py [--instances 20] [--requests 200] [--databases sqlite,postgresql]

Prints latency p50/p95 (ms) and bytes per answer. PostgreSQL: a scratch database
`mpi_bench_viewer` on MPI_BENCH_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
from pydicom import dcmread
from pydicom.uid import JPEGLSLossless

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scratch import database_url  # noqa: E402

from tests.dicom_objects import UNCOMPRESSED_CT, bundled  # noqa: E402
from tests.integration.test_dicom_archive import register  # noqa: E402
from tests.service import start_service  # noqa: E402

STUDY = "1.2.250.1.999.54.77"
ANY = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
DECODED = {"Accept": "multipart/related; type=application/octet-stream"}


def instances(count: int) -> list[tuple[str, bytes]]:
    """``count`` 512x512 CT images in two series: uncompressed, and JPEG-LS lossless."""
    rng = np.random.default_rng(7)
    made = []
    for number in range(count):
        ds = dcmread(bundled(UNCOMPRESSED_CT))
        ds.PatientID = "100234"
        ds.StudyInstanceUID = STUDY
        compressed = number % 2 == 1
        ds.SeriesInstanceUID = f"{STUDY}.{2 if compressed else 1}"
        ds.SOPInstanceUID = f"{ds.SeriesInstanceUID}.{number + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number + 1
        ds.Rows = ds.Columns = 512
        body = np.add.outer(np.arange(512), np.arange(512)).astype(np.int16)
        ds.PixelData = (body + rng.integers(0, 40, (512, 512), dtype=np.int16)).tobytes()
        if compressed:
            ds.compress(JPEGLSLossless, generate_instance_uid=False)
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
        made.append((ds.SeriesInstanceUID + "/instances/" + ds.SOPInstanceUID, out.getvalue()))
    return made


def stow(base: str, headers: dict[str, str], objects: list[tuple[str, bytes]]) -> None:
    boundary = "benchboundary"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + data + b"\r\n" for _, data in objects) + f"--{boundary}--\r\n".encode()
    answer = httpx.post(base + "/dicomweb/studies", content=body, timeout=120, headers={
        **headers, "Content-Type": f'multipart/related; type="application/dicom"; '
                                   f"boundary={boundary}"})
    assert answer.status_code == 200, answer.text


def timed(client: httpx.Client, url: str, requests: int,
          headers: dict[str, str] | None = None) -> tuple[float, float, int]:
    latencies, size = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(url, headers=headers or {})
        latencies.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:200])
        size = len(answer.content)
    latencies.sort()
    return (statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1], size)


def bench(kind: str, count: int, requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="mpi-bench-viewer-") as work:
        url = database_url(kind, Path(work), "mpi_bench_viewer")
        service = start_service(url, Path(work) / "data")
        try:
            register(service, "CHRU", "100234")
            stow(service.http_base, service.bearer(establishment="CHRU"), instances(count))
            reader = service.bearer("system/ImagingStudy.rs")
            base = f"/dicomweb/studies/{STUDY}/series/"
            rows = [
                ("GET /health (peer)", "/health", None),
                ("series metadata", f"{base}{STUDY}.1/metadata", None),
                ("frame, uncompressed, as stored", f"{base}{STUDY}.1/instances/{STUDY}.1.1/frames/1", ANY),
                ("frame, JPEG-LS, as stored", f"{base}{STUDY}.2/instances/{STUDY}.2.2/frames/1", ANY),
                ("frame, JPEG-LS, decoded", f"{base}{STUDY}.2/instances/{STUDY}.2.2/frames/1", DECODED),
                ("instance rendered (JPEG)", f"{base}{STUDY}.1/instances/{STUDY}.1.1/rendered", None),
                ("study thumbnail", f"/dicomweb/studies/{STUDY}/thumbnail", None),
            ]
            print(f"\n{kind}: {count} instances of 512x512x16 bits, {requests} sequential "
                  "requests each")
            print(f"{'request':34} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>9}")
            with httpx.Client(base_url=service.http_base, headers=reader, timeout=60) as client:
                for label, path, headers in rows:
                    p50, p95, size = timed(client, path, requests, headers)
                    print(f"{label:34} {p50:8.1f} {p95:8.1f} {size:9d}")
        finally:
            service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgresql")
    options = parser.parse_args()
    for kind in options.databases.split(","):
        bench(kind.strip(), options.instances, options.requests)


if __name__ == "__main__":
    main()
