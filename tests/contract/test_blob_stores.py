"""The contract of the blob store port (``mpi.archive.ports.BlobStore``), on the filesystem
store of the DICOM adapter, on the S3 store (against moto's standalone S3 server) and on the
in-memory fake of the unit tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from adapters.dicom.blobstore import FilesystemBlobStore
from adapters.dicom.s3 import IntegrityError, S3BlobStore
from mpi.archive import BlobStore
from tests.conftest import S3Server
from tests.fakes import FakeBlobStore

KEY = "1.2.3/1.2.3.1/1.2.3.1.1.abababababababab.dcm"


@pytest.fixture(params=["fake", "filesystem", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "fake":
        return FakeBlobStore()
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return S3BlobStore(server.new_bucket(), "nancy/archive", client=server.client())
    return FilesystemBlobStore(tmp_path / "archive", fsync=False)


@pytest.fixture
def s3(s3_server: S3Server) -> S3BlobStore:
    # Parts of 5 MiB (the S3 minimum) from 6 MiB on, so that a test can cross the threshold.
    return S3BlobStore(s3_server.new_bucket(), "nancy", client=s3_server.client(),
                       multipart_threshold=6 * 1024 * 1024, part_size=5 * 1024 * 1024)


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


def test_a_large_object_goes_up_in_parts_and_comes_back_whole(s3: S3BlobStore) -> None:
    data = bytes(range(256)) * (13 * 4096)  # 13 MiB: three parts
    s3.put(KEY, data)
    head = s3.client.head_object(Bucket=s3.bucket, Key=s3.name(KEY))
    assert "-3" in head["ETag"]  # a multipart object's ETag counts its parts
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    with s3.open(KEY) as handle:
        assert handle.read() == data


def test_an_object_changed_behind_the_archive_s_back_is_refused_on_read(s3: S3BlobStore) -> None:
    s3.put(KEY, b"DICM the original bytes")
    kept = s3.client.head_object(Bucket=s3.bucket, Key=s3.name(KEY))["Metadata"]
    # Another writer replaces the bytes but not the metadata the archive wrote.
    s3.client.put_object(Bucket=s3.bucket, Key=s3.name(KEY), Body=b"DICM other bytes",
                         Metadata=kept)
    with pytest.raises(IntegrityError):
        s3.open(KEY)


def test_objects_live_under_the_prefix_and_keys_cannot_leave_it(s3: S3BlobStore) -> None:
    s3.put(KEY, b"bytes")
    names = [o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert names == [f"nancy/{KEY}"]
    for bad in ("../other.dcm", "/absolute.dcm", "a//b.dcm", "a/./b.dcm"):
        with pytest.raises(ValueError):
            s3.put(bad, b"x")


def test_a_store_that_cannot_be_reached_is_an_oserror(s3_server: S3Server) -> None:
    import boto3
    from botocore.config import Config

    unreachable = boto3.client(
        "s3", endpoint_url="http://127.0.0.1:9", region_name="eu-west-3",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    store = S3BlobStore("archive", client=unreachable)
    with pytest.raises(OSError):
        store.put(KEY, b"bytes")
    with pytest.raises(OSError):
        store.open(KEY)
    with pytest.raises(OSError):
        store.exists(KEY)
