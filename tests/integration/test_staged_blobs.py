"""Stores of objects write and flush their bytes before the transaction that indexes them
(adapters.dicom.blobstore.StagedFile), so that concurrent stores do not wait on each other's
disk writes behind the database's locks; a refused or failed store still leaves nothing
behind, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.bootstrap import bootstrap
from adapters.container import Container
from adapters.dicom.blobstore import FilesystemBlobStore
from adapters.settings import Settings
from mpi.archive import Sender, StoreOutcome
from mpi.errors import MPIError
from tests.dicom_objects import UNCOMPRESSED_CT, relabel

KEY = "1.2.3/1.2.3.1/1.2.3.1.1.abc.dcm"


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_staged_bytes_are_invisible_until_committed(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    staged = store.stage(KEY, b"DICM object")
    assert not store.exists(KEY)
    staged.commit()
    with store.open(KEY) as handle:
        assert handle.read() == b"DICM object"
    staged.discard()  # after a commit: the blob stays
    assert files(tmp_path) == [store.path(KEY)]


def test_discarded_bytes_leave_no_file(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    store.stage(KEY, b"DICM object").discard()
    assert files(tmp_path) == []


def test_a_retried_transaction_commits_again_after_its_blob_was_removed(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    staged = store.stage(KEY, b"DICM object")
    staged.commit()
    store.delete(KEY)  # the failed first attempt removes what it wrote
    staged.commit()
    with store.open(KEY) as handle:
        assert handle.read() == b"DICM object"
    assert files(tmp_path) == [store.path(KEY)]


@pytest.fixture
def archive(database_url: str, tmp_path: Path) -> Iterator[Container]:
    container = bootstrap(Settings(data_dir=tmp_path / "data", database_url=database_url),
                          migrate=False)
    yield container
    container.close()


def test_a_stored_object_is_one_file_and_a_refused_one_leaves_none(
        archive: Container, tmp_path: Path) -> None:
    sender = Sender("CHRU", "CHRU")
    first = relabel(UNCOMPRESSED_CT, patient_id="100", study="1.2.250.9.1",
                    series="1.2.250.9.1.1", sop="1.2.250.9.1.1.1")
    assert archive.dicom.store(first, sender).outcome is StoreOutcome.STORED
    root = tmp_path / "data" / "archive"
    stored = files(root)
    assert len(stored) == 1 and stored[0].read_bytes() == first
    # Another patient's object in the same study is refused: nothing of it stays.
    other = relabel(UNCOMPRESSED_CT, patient_id="200", family="MARTIN", study="1.2.250.9.1",
                    series="1.2.250.9.1.2", sop="1.2.250.9.1.2.1")
    with pytest.raises(MPIError):
        archive.dicom.store(other, sender)
    assert files(root) == stored
    # The same object again is a duplicate, and leaves no temporary file either.
    assert archive.dicom.store(first, sender).outcome is StoreOutcome.DUPLICATE
    assert files(root) == stored
