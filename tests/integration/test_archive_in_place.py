"""`mpi archive import --in-place`: the files of an existing archive indexed where they lie,
without a copy (references under their keys in the filesystem store), their SHA-256 kept and
checked by `mpi archive verify`, read and coerced like any stored object; the archive owns them
once indexed (a destroyed or replaced one is deleted, a refused or failed store leaves the file
untouched), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.bootstrap import bootstrap
from adapters.cli import main
from adapters.container import Container
from adapters.dicom.blobstore import FilesystemBlobStore
from adapters.dicom.transfer import import_folder
from adapters.settings import Settings
from mpi.archive import Sender, StoreOutcome
from mpi.archive.lifecycle import purge_deletions
from mpi.errors import MPIError
from tests.dicom_objects import JPEG2000_LOSSLESS, UNCOMPRESSED_CT, read, relabel

KEY = "1.2.3/1.2.3.1/1.2.3.1.1.abc.dcm"


def _options(database_url: str, data_dir: Path) -> list[str]:
    return ["--database-url", database_url, "--data-dir", str(data_dir)]


def _old_archive(root: Path) -> dict[str, Path]:
    (root / "2019" / "CT").mkdir(parents=True)
    (root / "2020").mkdir()
    files = {"1.5.1.1.1": root / "2019" / "CT" / "a.dcm", "1.5.2.1.1": root / "2020" / "b.dcm"}
    files["1.5.1.1.1"].write_bytes(relabel(
        UNCOMPRESSED_CT, patient_id="900", study="1.5.1", series="1.5.1.1", sop="1.5.1.1.1"))
    files["1.5.2.1.1"].write_bytes(relabel(
        JPEG2000_LOSSLESS, patient_id="900", study="1.5.2", series="1.5.2.1", sop="1.5.2.1.1"))
    (root / "2020" / "notes.txt").write_text("not an image")
    return files


def _regular_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_an_import_in_place_copies_nothing_and_is_verified_read_and_coerced(
        database_url: str, tmp_path: Path) -> None:
    old = tmp_path / "old-archive"
    files = _old_archive(old)
    before = {sop: (path.stat().st_ino, path.read_bytes()) for sop, path in files.items()}
    data = tmp_path / "data"
    runner = CliRunner()

    first = runner.invoke(main, ["archive", "import", str(old), "--in-place", "--authority",
                                 "ICL", *_options(database_url, data)])
    assert first.exit_code == 1, first.output  # notes.txt refused
    assert "2 stored, 0 replaced, 0 skipped, 1 refused" in first.output
    # Nothing copied: the archive holds links to the files, which are untouched.
    root = data / "archive"
    assert _regular_files(root) == []
    links = sorted(p for p in root.rglob("*.dcm"))
    assert len(links) == 2 and all(p.is_symlink() for p in links)
    assert sorted(p.resolve() for p in links) == sorted(p.resolve() for p in files.values())
    for sop, path in files.items():
        assert (path.stat().st_ino, path.read_bytes()) == before[sop]
    again = runner.invoke(main, ["archive", "import", str(old), "--in-place", "--authority",
                                 "ICL", *_options(database_url, data)])
    assert "0 stored, 0 replaced, 2 skipped, 1 refused" in again.output

    # The SHA-256 of each file is kept, and verify reads the files through their links.
    container = bootstrap(Settings(data_dir=data, database_url=database_url), migrate=False)
    try:
        with container.uow_factory(read_only=True) as uow:
            for sop, path in files.items():
                instance = uow.archive.instance(sop)
                assert instance is not None
                assert instance.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
                assert instance.size == path.stat().st_size
    finally:
        container.close()
    verified = runner.invoke(main, ["archive", "verify", "--all",
                                    *_options(database_url, data)])
    assert verified.exit_code == 0, verified.output
    assert "2 checked, 0 mismatch(es)" in verified.output

    # Retrieval coerces them like any stored object.
    out = tmp_path / "export"
    exported = runner.invoke(main, ["archive", "export", "--person", "1", "--domain", "ICL",
                                    str(out), *_options(database_url, data)])
    assert exported.exit_code == 0, exported.output
    copies = sorted(out.rglob("*.dcm"))
    assert [f.name for f in copies] == ["1.5.1.1.1.dcm", "1.5.2.1.1.dcm"]
    for path in copies:
        ds = read(path)
        assert (ds.PatientID, ds.IssuerOfPatientID) == ("900", "ICL")
        assert [o.PatientID for o in ds.OtherPatientIDsSequence] == ["0000000001"]
        assert ds.PixelData == read(files[ds.SOPInstanceUID]).PixelData

    # A file changed where it lies no longer matches: verify flags it.
    changed = bytearray(files["1.5.1.1.1"].read_bytes())
    changed[-1] ^= 0xFF
    files["1.5.1.1.1"].write_bytes(bytes(changed))
    flagged = runner.invoke(main, ["archive", "verify", "--all",
                                   *_options(database_url, data)])
    assert flagged.exit_code == 1
    assert "MISMATCH 1.5.1.1.1" in flagged.output


@pytest.fixture
def archive(database_url: str, tmp_path: Path) -> Iterator[Container]:
    container = bootstrap(Settings(data_dir=tmp_path / "data", database_url=database_url),
                          migrate=False)
    yield container
    container.close()


def test_a_refused_file_stays_where_it_lies_and_a_destroyed_one_is_deleted(
        archive: Container, tmp_path: Path) -> None:
    old = tmp_path / "old-archive"
    old.mkdir()
    first = old / "first.dcm"
    first.write_bytes(relabel(UNCOMPRESSED_CT, patient_id="100", study="1.2.250.9.1",
                              series="1.2.250.9.1.1", sop="1.2.250.9.1.1.1"))
    # Another patient's object in the same study: refused, its file untouched, no link left.
    other = old / "other.dcm"
    other.write_bytes(relabel(UNCOMPRESSED_CT, patient_id="200", family="MARTIN",
                              study="1.2.250.9.1", series="1.2.250.9.1.2",
                              sop="1.2.250.9.1.2.1"))
    sender = Sender("CHRU", "CHRU")
    assert archive.dicom.store(first.read_bytes(), sender,
                               in_place=first).outcome is StoreOutcome.STORED
    with pytest.raises(MPIError):
        archive.dicom.store(other.read_bytes(), sender, in_place=other)
    assert other.is_file()
    root = tmp_path / "data" / "archive"
    links = [p for p in root.rglob("*") if p.is_symlink() or p.is_file()]
    assert len(links) == 1 and links[0].resolve() == first.resolve()

    # A destruction (delete of the study, its blobs journaled then purged) deletes the file
    # the archive now owns.
    with archive.uow_factory() as uow:
        [instance] = uow.archive.instance_files("1.2.250.9.1")
        uow.archive.queue_blob_deletions([instance.blob_key], "destruction:1",
                                         datetime.now(UTC))
        uow.archive.delete_study("1.2.250.9.1")
        uow.commit()
    blobs = archive.dicom.blobs
    assert isinstance(blobs, FilesystemBlobStore) and blobs.is_reference(instance.blob_key)
    assert purge_deletions(archive.uow_factory, blobs) == 1
    assert not first.exists() and not blobs.path(instance.blob_key).is_symlink()
    assert other.is_file()


def test_a_folder_inside_the_archive_is_not_imported_in_place(
        archive: Container, tmp_path: Path) -> None:
    root = tmp_path / "data" / "archive"
    inside = root / "incoming"
    inside.mkdir(parents=True)
    (inside / "a.dcm").write_bytes(relabel(UNCOMPRESSED_CT, patient_id="100", study="1.2.9",
                                           series="1.2.9.1", sop="1.2.9.1.1"))
    summary = import_folder(archive.dicom, inside, "CHRU", 1, in_place=True)
    assert summary.stored == 0 and len(summary.refused) == 1
    assert "lies in the archive's own folder" in summary.refused[0]
    assert (inside / "a.dcm").is_file()


def test_a_reference_is_withdrawn_by_a_failed_transaction_and_its_file_kept(
        tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "store")
    source = tmp_path / "old" / "a.dcm"
    source.parent.mkdir()
    source.write_bytes(b"DICM object")
    referenced = store.reference(KEY, source)
    assert not store.exists(KEY)
    referenced.commit()
    with store.open(KEY) as handle:
        assert handle.read() == b"DICM object"
    referenced.withdraw()  # the transaction failed: the link goes, the file stays
    assert not store.exists(KEY) and source.read_bytes() == b"DICM object"
    referenced.commit()  # retried
    assert store.is_reference(KEY)
    referenced.discard()  # after a commit: nothing happens
    assert store.exists(KEY)
    store.delete(KEY)  # destroyed: the file goes with its link
    assert not source.exists() and not store.path(KEY).is_symlink()
    store.delete(KEY)  # an absent blob is not an error
    with pytest.raises(FileNotFoundError):
        store.reference(KEY, tmp_path / "old" / "missing.dcm")
