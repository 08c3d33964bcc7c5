"""Large objects without their bytes in memory: a body written to a temporary file in chunks
as it arrives, then mapped read-only, its parts handed on as views of the mapping (never
copied). Whoever walks a view (hashing it, writing it to the store) does so in chunks through
:func:`chunks`, which gives the pages already read back to the page cache: the process's
resident size stays about a chunk above idle whatever the object's size.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from adapters.errors import AdapterError

__all__ = ["CHUNK", "Content", "MultipartError", "SpooledBody", "chunks"]

CHUNK = 16 << 20
_WINDOW = 64 << 20

Content = bytes | memoryview
"""The bytes of an object: in memory, or a view of a mapped file."""


class MultipartError(AdapterError, ValueError):
    """Not the multipart body it claims to be."""


def _forget(view: memoryview) -> None:
    """Drop the mapped pages a view has read from the process (they stay in the page cache,
    read again on the next access): a read-only file mapping loses nothing."""
    mapping = view.obj
    if isinstance(mapping, mmap.mmap) and not mapping.closed:
        mapping.madvise(mmap.MADV_DONTNEED)


def chunks(data: Content, size: int = CHUNK) -> Iterator[memoryview]:
    """The bytes of ``data`` in views of ``size`` bytes; for a mapped file, the pages read
    are given back after each chunk."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        piece = view[start:start + size]
        try:
            yield piece
        finally:
            piece.release()
            _forget(view)


class SpooledBody:
    """A request body spooled to an anonymous temporary file (in ``folder``), mapped once
    written. Close it once its parts are no longer used."""

    def __init__(self, folder: Path | None = None) -> None:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self.file: BinaryIO = tempfile.TemporaryFile(dir=folder)
        self.size = 0
        self._mapping: mmap.mmap | None = None
        self._views: list[memoryview] = []

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.size += len(chunk)

    def copy_from(self, source: BinaryIO, offset: int) -> None:
        """Append the bytes of an open file from ``offset`` to its end, copied by the
        kernel (never through this process's memory)."""
        end = os.fstat(source.fileno()).st_size
        self.file.flush()
        while offset < end:
            sent = os.sendfile(self.file.fileno(), source.fileno(), offset,
                               min(end - offset, 1 << 30))
            if sent == 0:
                break
            offset += sent
            self.size += sent
        self.file.seek(self.size)

    def _map(self) -> mmap.mmap | None:
        if self._mapping is None and self.size:
            self.file.flush()
            self._mapping = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._mapping

    def view(self, start: int = 0, end: int | None = None) -> memoryview:
        """A read-only view of the written bytes (released on close)."""
        mapping = self._map()
        if mapping is None:
            return memoryview(b"")
        whole = memoryview(mapping)
        piece = whole[start:self.size if end is None else end]
        whole.release()
        self._views.append(piece)
        return piece

    def find(self, needle: bytes, start: int) -> int:
        """Where ``needle`` next occurs from ``start`` (-1 when it does not), read through
        windows whose pages are given back."""
        mapping = self._map()
        if mapping is None:
            return -1
        while start < self.size:
            end = min(self.size, start + _WINDOW + len(needle))
            found = mapping.find(needle, start, end)
            mapping.madvise(mmap.MADV_DONTNEED)
            if found >= 0:
                return found
            if end == self.size:
                return -1
            start = end - len(needle) + 1
        return -1

    def parts(self, boundary: str) -> list[tuple[dict[str, str], memoryview]]:
        """The parts of a multipart body: (headers with lower-case names, a view of the
        content). Raises MultipartError when the boundary never opens or closes the body."""
        delimiter = b"--" + boundary.encode("latin-1")
        positions = []
        at = self.find(delimiter, 0)
        while at >= 0:
            positions.append(at)
            at = self.find(delimiter, at + len(delimiter))
        if len(positions) < 2 or bytes(self.view(positions[-1] + len(delimiter),
                                                 positions[-1] + len(delimiter) + 2)) != b"--":
            raise MultipartError("the body is not delimited by its boundary")
        found = []
        for opening, closing in zip(positions, positions[1:], strict=False):
            start = opening + len(delimiter)
            if bytes(self.view(start, start + 2)) == b"\r\n":
                start += 2
            head_end = self.find(b"\r\n\r\n", start)
            if head_end < 0 or head_end >= closing:
                raise MultipartError("a part has no header section")
            end = closing
            if bytes(self.view(end - 2, end)) == b"\r\n" and end - 2 >= head_end + 4:
                end -= 2
            headers = {}
            for line in bytes(self.view(start, head_end)).decode("latin-1").split("\r\n"):
                name, colon, value = line.partition(":")
                if colon:
                    headers[name.strip().lower()] = value.strip()
            found.append((headers, self.view(head_end + 4, end)))
        return found

    def close(self) -> None:
        for view in self._views:
            view.release()
        self._views.clear()
        if self._mapping is not None:
            try:
                self._mapping.close()
            except BufferError:  # a view still held elsewhere: unmapped when it goes
                pass
            self._mapping = None
        self.file.close()

    def __enter__(self) -> SpooledBody:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
