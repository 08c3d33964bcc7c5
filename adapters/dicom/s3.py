"""The S3 blob store (implements :class:`mpi.archive.BlobStore`): the archive's objects in an
S3-compatible object store (AWS S3, MinIO, Ceph RGW, Scality...), for an archive bigger than a
filesystem, or shared by several servers.

``MPI_ARCHIVE_URL=s3://bucket/prefix`` chooses it; the endpoint and credentials come from the
usual AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, or a profile), read by boto3 itself.

An S3 PUT is atomic (readers see the whole object or none), so there is no temporary name
to rename. Objects above ``multipart_threshold`` go up in parts (boto3's transfer manager).
The SHA-256 of every object is sent with it, checked by the store where it supports S3's
additional checksums, and kept in the object's metadata; each read checks it again, so a
corrupted or truncated object is an error, never silently served.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tempfile
from typing import Any, BinaryIO
from urllib.parse import urlsplit

__all__ = ["S3BlobStore", "IntegrityError", "parse_s3_url"]

_KEY = re.compile(r"^[0-9A-Za-z.\-]+(/[0-9A-Za-z.\-]+)*$")
_SPOOL = 16 * 1024 * 1024  # a read bigger than this goes to a temporary file, not memory
_CHUNK = 1024 * 1024
DIGEST = "sha256"  # the metadata entry that keeps the object's SHA-256 (hexadecimal)


class IntegrityError(OSError):
    """An object's bytes do not match the SHA-256 it was stored with."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ("bucket", "some/prefix"). Raises ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/prefix address: {url!r}")
    return parts.netloc, parts.path.strip("/")


def _is_missing(error: Exception) -> bool:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3BlobStore:
    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None,
                 multipart_threshold: int = 64 * 1024 * 1024,
                 part_size: int = 16 * 1024 * 1024) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else boto3.client("s3")
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                        multipart_chunksize=part_size, use_threads=False)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3BlobStore:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **options)

    def name(self, key: str) -> str:
        """The object name of a key. Raises ValueError for a key that is not a blob key."""
        if not _KEY.match(key) or any(part in ("", ".", "..") for part in key.split("/")):
            raise ValueError(f"not a blob key: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        digest = hashlib.sha256(data)
        extra: dict[str, Any] = {"Metadata": {DIGEST: digest.hexdigest()},
                                 "ContentType": "application/dicom"}
        try:
            if len(data) < self._transfer.multipart_threshold:
                self.client.put_object(
                    Bucket=self.bucket, Key=self.name(key), Body=data,
                    ChecksumSHA256=base64.b64encode(digest.digest()).decode("ascii"), **extra)
            else:
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, self.name(key),
                                           ExtraArgs=extra, Config=self._transfer)
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"the object store refused {key}: {exc}") from exc

    def open(self, key: str) -> BinaryIO:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.name(key))
        except ClientError as exc:
            if _is_missing(exc):
                raise FileNotFoundError(key) from None
            raise OSError(f"the object store could not read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise OSError(f"the object store could not read {key}: {exc}") from exc
        expected = answer.get("Metadata", {}).get(DIGEST)
        copy = tempfile.SpooledTemporaryFile(max_size=_SPOOL)
        digest = hashlib.sha256()
        body = answer["Body"]
        try:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                digest.update(chunk)
                copy.write(chunk)
        finally:
            body.close()
        if expected is not None and digest.hexdigest() != expected:
            copy.close()
            raise IntegrityError(f"{key}: its bytes do not match the SHA-256 it was stored "
                                 "with")
        copy.seek(0)
        return copy  # type: ignore[return-value]  # a binary file object

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.name(key))
        except (BotoCoreError, ClientError) as exc:
            if _is_missing(exc):
                return False
            raise OSError(f"the object store could not look up {key}: {exc}") from exc
        return True

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.name(key))
        except (BotoCoreError, ClientError) as exc:
            if not _is_missing(exc):
                raise OSError(f"the object store could not delete {key}: {exc}") from exc
