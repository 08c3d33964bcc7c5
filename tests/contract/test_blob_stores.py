"""The contract of the blob store port (``mpi.archive.ports.BlobStore``), on the filesystem
store of the DICOM adapter and on the in-memory fake of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.dicom.blobstore import FilesystemBlobStore
from mpi.archive import BlobStore
from tests.fakes import FakeBlobStore

KEY = "1.2.3/1.2.3.1/1.2.3.1.1.abababababababab.dcm"


@pytest.fixture(params=["fake", "filesystem"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "fake":
        return FakeBlobStore()
    return FilesystemBlobStore(tmp_path / "archive", fsync=False)


def test_a_blob_put_is_read_back_whole(blobs: BlobStore) -> None:
    assert not blobs.exists(KEY)
    blobs.put(KEY, b"DICM" + bytes(range(256)))
    assert blobs.exists(KEY)
    with blobs.open(KEY) as handle:
        assert handle.read() == b"DICM" + bytes(range(256))


def test_a_put_replaces_the_blob_of_its_key(blobs: BlobStore) -> None:
    blobs.put(KEY, b"first")
    blobs.put(KEY, b"second")
    with blobs.open(KEY) as handle:
        assert handle.read() == b"second"


def test_an_unknown_key_cannot_be_opened(blobs: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        blobs.open(KEY)


def test_a_deleted_blob_is_gone_and_deleting_an_absent_one_is_no_error(
    blobs: BlobStore,
) -> None:
    blobs.put(KEY, b"bytes")
    blobs.delete(KEY)
    assert not blobs.exists(KEY)
    with pytest.raises(FileNotFoundError):
        blobs.open(KEY)
    blobs.delete(KEY)
