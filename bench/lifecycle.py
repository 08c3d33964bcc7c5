"""The archive's lifecycle, measured beside its peers in the same run:

- lossless compression (JPEG-LS) MB/s and ratio on CT and MR objects, beside dcmtk's
  ``dcmcjpls`` on the same files (ours includes the decode and the bit-for-bit comparison;
  dcmcjpls pays a process start per file, which the small bundled images make dominant, hence
  the same images tiled 4x4 as well: 512x512 for the CT, 256x256 for the MR);
- fixity: SHA-256 of stored files in MB/s, beside ``sha256sum`` on the same files;
- retention: recomputing one person with 1,000 studies, and the sweep over N studies.

    python bench/lifecycle.py [--copies 200] [--studies 100000] [--database-url URL]

Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pydicom import dcmread  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from adapters.dicom.compress import compress_object  # noqa: E402
from adapters.sql.engine import create_engine_for, default_sqlite_url  # noqa: E402
from adapters.sql.migrate import upgrade  # noqa: E402
from adapters.sql.tables import (  # noqa: E402
    archive_instances,
    archive_patients,
    archive_series,
    archive_studies,
    links,
    persons,
    source_records,
)
from mpi.archive.retention import RetentionPolicy, recompute_retention, sweep_retention  # noqa: E402
from tests.conftest import _truncate_all as truncate_all  # noqa: E402
from tests.conftest import sql_uow_factory  # noqa: E402
from tests.dicom_objects import UNCOMPRESSED_CT, UNCOMPRESSED_MR, bundled, relabel  # noqa: E402

JPEG_LS = "1.2.840.10008.1.2.4.80"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def tiled(data: bytes, times: int) -> bytes:
    """The object with its image repeated ``times`` x ``times`` (a CT-sized matrix made of
    the bundled image's own pixels, so that per-file costs do not hide the codec's)."""
    dataset = dcmread(BytesIO(data))
    pixels = np.tile(dataset.pixel_array, (times, times))
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.PixelData = pixels.tobytes()
    out = BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def objects(name: str, copies: int, folder: Path, times: int = 1) -> list[Path]:
    paths = []
    for number in range(copies):
        data = relabel(name, patient_id=str(number), study=f"1.2.9.{number}",
                       series=f"1.2.9.{number}.1", sop=f"1.2.9.{number}.1.1")
        if times > 1:
            data = tiled(data, times)
        path = folder / f"{name}.{number}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


def compression(name: str, copies: int, folder: Path, times: int = 1) -> None:
    paths = objects(name, copies, folder, times)
    size = sum(p.stat().st_size for p in paths)
    started = time.perf_counter()
    out = 0
    for path in paths:
        out += len(compress_object(path.read_bytes(), JPEG_LS).data)
    ours = time.perf_counter() - started
    tool = shutil.which("dcmcjpls")
    peer = "dcmcjpls not installed"
    if tool:
        started = time.perf_counter()
        peer_out = 0
        for path in paths:
            target = path.with_suffix(".jls")
            subprocess.run([tool, "--encode-lossless", str(path), str(target)], check=True)
            peer_out += target.stat().st_size
        elapsed = time.perf_counter() - started
        peer = (f"dcmcjpls {size / 1e6 / elapsed:6.1f} MB/s ratio {size / peer_out:.2f}:1 "
                "(encode only, one process per file)")
    label = name if times == 1 else f"{name} tiled {times}x{times}"
    print(f"compress {label:<24} {copies} x {size // copies} B: ours {size / 1e6 / ours:6.1f} "
          f"MB/s ratio {size / out:.2f}:1 (encode + decode + compare) | {peer}")


def fixity(folder: Path) -> None:
    paths = sorted(folder.glob("*.dcm"))
    size = sum(p.stat().st_size for p in paths)
    started = time.perf_counter()
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)
    peer = time.perf_counter() - started
    print(f"verify {len(paths)} files, {size / 1e6:.1f} MB: ours {size / 1e6 / ours:7.1f} MB/s"
          f" | sha256sum {size / 1e6 / peer:7.1f} MB/s (page cache warm)")


def load(engine: object, persons_count: int, studies_per_person: int) -> list[int]:
    """Persons with one CHRU record each and their studies, written in bulk."""
    record_rows, person_rows, link_rows, patient_rows, study_rows = [], [], [], [], []
    for number in range(1, persons_count + 1):
        record_rows.append({
            "id": number, "authority": "CHRU", "value": str(number), "status": "active",
            "ins_qualified": False, "reliability": "", "given_names": [],
            "birth_date": date(1950, 1, 1) + timedelta(days=number % 20000),
            "last_activity": NOW - timedelta(days=number % 9000), "version": 1})
        person_rows.append({"id": number, "status": "active", "created_at": NOW})
        link_rows.append({"record_id": number, "person_id": number, "method": "new",
                          "evidence": {}, "decided_by": "bench", "decided_at": NOW})
        patient_rows.append({"id": number, "authority": "CHRU", "patient_id": str(number),
                             "record_id": number, "given_names": [],
                             "first_received_at": NOW, "last_received_at": NOW})
    study_id = 0
    for number in range(1, persons_count + 1):
        for index in range(studies_per_person):
            study_id += 1
            study_rows.append({
                "id": study_id, "study_instance_uid": f"1.2.8.{number}.{index}",
                "patient_ref": number, "study_date": date(2000, 1, 1) + timedelta(
                    days=(study_id * 7) % 9000),
                "first_received_at": NOW, "last_received_at": NOW})
    with engine.begin() as connection:  # type: ignore[attr-defined]
        for table, rows in ((source_records, record_rows), (persons, person_rows),
                            (links, link_rows), (archive_patients, patient_rows),
                            (archive_studies, study_rows)):
            for start in range(0, len(rows), 5000):
                connection.execute(insert(table), rows[start:start + 5000])
    return [row["id"] for row in record_rows]


def retention(url: str | None, studies: int, folder: Path) -> None:
    for label, persons_count, per_person in (("one person, 1,000 studies", 1, 1000),
                                             (f"sweep, {studies:,} studies", studies, 1)):
        database = url or default_sqlite_url(folder / f"r{persons_count}")
        engine = create_engine_for(database)
        upgrade(engine)
        if url is not None and engine.dialect.name == "postgresql":
            truncate_all(url)  # the second run starts from an empty database too
        factory = sql_uow_factory(engine)
        record_ids = load(engine, persons_count, per_person)
        started = time.perf_counter()
        if persons_count == 1:
            with factory() as uow:
                computed = recompute_retention(uow, RetentionPolicy(), record_ids, NOW)
                uow.commit()
        else:
            computed = sweep_retention(factory, RetentionPolicy(), lambda: NOW)
        elapsed = time.perf_counter() - started
        print(f"retention {label} ({engine.dialect.name}): {computed} studies in "
              f"{elapsed:.2f} s ({computed / elapsed:,.0f} studies/s)")
        engine.dispose()
    _ = archive_series, archive_instances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--database-url", help="a PostgreSQL database of its own, EMPTIED by "
                        "each retention run (default: SQLite files)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, times in ((UNCOMPRESSED_CT, 1), (UNCOMPRESSED_MR, 1), (UNCOMPRESSED_CT, 4),
                            (UNCOMPRESSED_MR, 4)):
            sub = folder / f"{name}.{times}"
            sub.mkdir()
            compression(name, args.copies if times == 1 else max(1, args.copies // 8), sub,
                        times)
        large = folder / "verify"
        large.mkdir()
        for number in range(args.copies):
            shutil.copy(bundled(UNCOMPRESSED_CT), large / f"{number}.dcm")
        fixity(large)
        retention(args.database_url, args.studies, folder)


if __name__ == "__main__":
    main()
