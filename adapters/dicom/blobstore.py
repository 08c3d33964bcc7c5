"""The filesystem blob store (implements :class:`mpi.ports.BlobStore`).

A blob is written to a temporary file in its final folder, flushed to disk, then renamed over
its name: a reader sees the whole blob or nothing, even after a crash. Staged (:meth:`stage`),
the writing and flushing happen before the transaction that indexes the object, and only the
rename (and the folder's flush) within it: concurrent stores do not wait on each other's disk
writes behind the database's write lock. Keys are relative
paths made of UIDs and hashes (``study/series/sop.hash.dcm``); anything else is refused.

A blob may also be a *reference* (:meth:`reference`, ``mpi archive import --in-place``): a
symbolic link under its key to a file that stays where it lies, read through the link like any
blob. The archive owns a referenced file once it is indexed: deleting the blob (destruction,
a replaced original after compression) deletes the file it points at, then the link; a failed
transaction only withdraws the link (:meth:`ReferencedFile.withdraw`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from adapters.dicom.spool import Content, chunks

__all__ = ["FilesystemBlobStore", "ReferencedFile", "StagedFile"]

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

    def put(self, key: str, data: Content) -> None:
        staged = self.stage(key, data)
        try:
            staged.commit()
        finally:
            staged.discard()

    def stage(self, key: str, data: Content) -> StagedFile:
        """Write and flush the bytes of a key to a temporary file beside it, in chunks (a
        view of a mapped file is never read whole into memory). Raises OSError (ValueError
        for a key that could leave the root)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                for chunk in chunks(data):
                    handle.write(chunk)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException:
            _unlink(Path(temporary))
            raise
        return StagedFile(self, key, data, Path(temporary))

    def reference(self, key: str, source: Path) -> ReferencedFile:
        """A blob of ``key`` that is the file ``source`` where it lies (no copy), made visible
        by :meth:`ReferencedFile.commit`. Raises FileNotFoundError for a missing file,
        ValueError for a key that could leave the root or a file inside the store's root."""
        self.path(key)  # ValueError for a bad key
        source = Path(source).resolve(strict=True)
        if not source.is_file():
            raise FileNotFoundError(f"not a file: {source}")
        if source.is_relative_to(self.root.resolve()):
            raise ValueError(f"{source} lies in the archive's own folder")
        return ReferencedFile(self, key, source)

    def is_reference(self, key: str) -> bool:
        """Whether the blob of a key is a reference to a file outside the store."""
        return self.path(key).is_symlink()

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
        """Remove a blob; a reference takes its file along (the archive owns it), the file
        first, so that a file that cannot be deleted (OSError) keeps its link."""
        path = self.path(key)
        if path.is_symlink():
            _unlink(Path(os.readlink(path)))
        _unlink(path)

    def withdraw(self, key: str) -> None:
        """Remove a blob a failed transaction made visible: a reference's file stays."""
        _unlink(self.path(key))


class StagedFile:
    """A blob written to its temporary file (implements :class:`mpi.archive.StagedBlob`)."""

    def __init__(self, store: FilesystemBlobStore, key: str, data: Content,
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

    def withdraw(self) -> None:
        self.store.withdraw(self.key)

    def discard(self) -> None:
        if self.temporary is not None:
            _unlink(self.temporary)
            self.temporary = None


class ReferencedFile:
    """A file indexed where it lies, visible under its key once committed (implements
    :class:`mpi.archive.StagedBlob`): a symbolic link, made atomically."""

    def __init__(self, store: FilesystemBlobStore, key: str, source: Path) -> None:
        self.store = store
        self.key = key
        self.source = source

    def commit(self) -> None:
        target = self.store.path(self.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".incoming-{os.urandom(8).hex()}"
        os.symlink(self.source, temporary)
        try:
            os.replace(temporary, target)
        except BaseException:
            _unlink(temporary)
            raise
        self.store._sync_folder(target.parent)

    def withdraw(self) -> None:
        self.store.withdraw(self.key)

    def discard(self) -> None:
        """Nothing was written before the commit."""


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
