"""The filesystem blob store (implements :class:`mpi.ports.BlobStore`).

A blob is written to a temporary file in its final folder, flushed to disk, then renamed over
its name: a reader sees the whole blob or nothing, even after a crash. Staged (:meth:`stage`),
the writing and flushing happen before the transaction that indexes the object, and only the
rename (and the folder's flush) within it: concurrent stores do not wait on each other's disk
writes behind the database's write lock. Keys are relative
paths made of UIDs and hashes (``study/series/sop.hash.dcm``); anything else is refused.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["FilesystemBlobStore", "StagedFile"]

_KEY = re.compile(r"^[0-9A-Za-z.\-]+(/[0-9A-Za-z.\-]+)*$")


class FilesystemBlobStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync

    def path(self, key: str) -> Path:
        """The file of a key. Raises ValueError for a key that could leave the root."""
        if not _KEY.match(key) or any(part in ("", ".", "..") for part in key.split("/")):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        staged = self.stage(key, data)
        try:
            staged.commit()
        finally:
            staged.discard()

    def stage(self, key: str, data: bytes) -> StagedFile:
        """Write and flush the bytes of a key to a temporary file beside it. Raises OSError
        (ValueError for a key that could leave the root)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException:
            _unlink(Path(temporary))
            raise
        return StagedFile(self, key, data, Path(temporary))

    def _sync_folder(self, folder: Path) -> None:
        if self.fsync:
            descriptor = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass


class StagedFile:
    """A blob written to its temporary file (implements :class:`mpi.archive.StagedBlob`)."""

    def __init__(self, store: FilesystemBlobStore, key: str, data: bytes,
                 temporary: Path) -> None:
        self.store = store
        self.key = key
        self.data = data
        self.temporary: Path | None = temporary

    def commit(self) -> None:
        if self.temporary is None:  # renamed already, then deleted by a failed transaction
            self.temporary = self.store.stage(self.key, self.data).temporary
            assert self.temporary is not None
        target = self.store.path(self.key)
        os.replace(self.temporary, target)
        self.temporary = None
        self.store._sync_folder(target.parent)

    def discard(self) -> None:
        if self.temporary is not None:
            _unlink(self.temporary)
            self.temporary = None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
