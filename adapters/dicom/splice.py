"""Coercion by splicing: a coerced copy built from the stored bytes, with only the elements
coercion touches encoded anew.

A coerced copy made by pydicom (the whole header parsed, rewritten and encoded again) is what
the archive answers; most of that work is spent on elements that come out as they went in.
Here the top-level elements of the header are located by walking their tags and lengths; the
few that pydicom would encode differently from the stored bytes (the patient attributes
coercion reads and writes, the OriginalAttributesSequence, the character set, and the
sequences of undefined length pydicom parses on reading) are handed to pydicom as a small
dataset, coerced and encoded with the file's encoding; every other element is copied as
stored, in tag order, and the pixel data follows straight from the blob.

The result is the very bytes of the pydicom path. Where splicing cannot promise that (a
deflated or big endian body, a private or unknown transfer syntax, tags out of order or
repeated, a value that runs past the end, a character set that coercion has to change, or
pydicom reading the handed elements otherwise than the walk did), :func:`spliced_header`
answers None and the caller takes the pydicom path.
"""

from __future__ import annotations

import struct
import threading
import warnings
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.charset import default_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from adapters.dicom.coerce import (
    COERCED_KEYWORDS,
    apply_coercion,
    coerced_chunks,
    dicom_datetime,
)
from mpi.archive import PatientCoercion

__all__ = ["SplicedHeader", "coerced_copy", "spliced_header", "spliced_chunks",
           "spliced_dataset"]

_READ = 1 << 16
_CHUNK = 1 << 20
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# Where pydicom's reading stops before pixels (pydicom.filereader._at_pixel_data).
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR",
                       b"UT", b"SV", b"UV"})
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS",
                        b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL",
                        b"US"})
_ANY_VR = _SHORT_VRS | _LONG_VRS
_CHARSET_TAG = 0x00080005
# The elements apply_coercion reads or writes, besides the character set.
_TOUCHED = frozenset(
    [tag_for_keyword(keyword) for keyword in COERCED_KEYWORDS]
    + [tag_for_keyword("OriginalAttributesSequence"),
       tag_for_keyword("InstanceCoercionDateTime")])


# How the walk found a top-level element: written back by pydicom as stored, or read by
# pydicom into something it encodes anew (a value of undefined length is parsed as a
# sequence; an empty value is read as a value to convert, a UN one taking its known VR).
_VERBATIM, _UNDEFINED_LENGTH, _EMPTY = "verbatim", "undefined length", "empty"


class _Unsafe(Exception):
    """Splicing could differ from the pydicom path: take that path."""


@dataclass(frozen=True)
class SplicedHeader:
    """A coerced Part-10 header (preamble, file meta, every element before the pixel data)
    and where the stored object's pixel data starts (its end when it has none)."""

    header: bytes
    pixel_offset: int


class _Buffer:
    """The stored object's first bytes, read on demand from its handle."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.data = bytearray()
        self.eof = False

    def need(self, end: int) -> bool:
        """Whether the bytes up to ``end`` are there (reading more when they are not)."""
        while len(self.data) < end and not self.eof:
            chunk = self.handle.read(max(_READ, end - len(self.data)))
            if not chunk:
                self.eof = True
            self.data += chunk
        return len(self.data) >= end


def spliced_header(handle: BinaryIO, plan: PatientCoercion, source: str,
                   when: datetime) -> SplicedHeader | None:
    """The coerced header of a stored object by splicing, or None when the pydicom path must
    make it. The handle is left anywhere: the caller seeks to ``pixel_offset``."""
    try:
        return _splice(_Buffer(handle), plan, source, when)
    except (_Unsafe, struct.error):
        return None


def coerced_copy(handle: BinaryIO, plan: PatientCoercion, source: str,
                 when: datetime) -> Iterator[bytes]:
    """A coerced Part-10 copy of a stored object, in chunks: spliced where that gives the
    bytes of :func:`adapters.dicom.coerce.coerced_chunks`, made by the latter elsewhere."""
    header = spliced_header(handle, plan, source, when)
    if header is None:
        handle.seek(0)
        yield from coerced_chunks(handle, plan, source, when)
        return
    yield from spliced_chunks(handle, header)


def spliced_chunks(handle: BinaryIO, header: SplicedHeader) -> Iterator[bytes]:
    """The coerced copy: the spliced header, then the stored bytes from the pixel data on."""
    yield header.header
    handle.seek(header.pixel_offset)
    while chunk := handle.read(_CHUNK):
        yield chunk


def spliced_dataset(handle: BinaryIO, plan: PatientCoercion, source: str,
                    when: datetime) -> Dataset | None:
    """The coerced copy as a dataset read back from its spliced bytes (None: take the pydicom
    path). Its elements stay as encoded: a DIMSE peer is sent them as they are, pixel data
    included, instead of encoded again."""
    header = spliced_header(handle, plan, source, when)
    if header is None:
        return None
    handle.seek(header.pixel_offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(BytesIO(header.header + handle.read()))


def _splice(buffer: _Buffer, plan: PatientCoercion, source: str,
            when: datetime) -> SplicedHeader:
    if not buffer.need(132) or buffer.data[128:132] != b"DICM":
        raise _Unsafe
    head, position, syntax = _file_meta(buffer)
    if (syntax in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian)
            or not syntax.is_transfer_syntax or syntax.is_private):
        raise _Unsafe
    implicit = syntax == ImplicitVRLittleEndian
    elements, pixel_offset = _top_level(buffer, position, implicit)
    data = bytes(buffer.data)
    charset = b"".join(data[start:end] for tag, start, end, _ in elements
                       if tag == _CHARSET_TAG)
    touched = [(tag, start, end) for tag, start, end, _ in elements
               if tag in _TOUCHED or tag == _CHARSET_TAG]
    encoded = _coerced(data, touched, implicit, plan, source, when)
    handed = list(touched)
    for tag, start, end, kind in elements:
        if kind is _VERBATIM or tag in _TOUCHED or tag == _CHARSET_TAG:
            continue
        if charset and tag < _CHARSET_TAG:
            raise _Unsafe  # read before the character set is known
        encoded[tag] = _reencoded(implicit, charset, data[start:end], tag)
        handed.append((tag, start, end))
    handed_tags = {tag for tag, _, _ in handed}
    parts: list[tuple[int, bytes]] = [
        (tag, data[start:end]) for tag, start, end, _ in elements
        if tag not in handed_tags and not (tag & 0xFFFF == 0 and tag >> 16 > 6)]
    parts.extend(encoded.items())
    parts.sort(key=lambda part: part[0])
    return SplicedHeader(head + b"".join(value for _, value in parts), pixel_offset)


def _file_meta(buffer: _Buffer) -> tuple[bytes, int, UID]:
    """The preamble and file meta as pydicom writes them again, where the dataset starts,
    and the transfer syntax."""
    position = 132
    while True:
        if not buffer.need(position + 8):
            raise _Unsafe
        group, = struct.unpack_from("<H", buffer.data, position)
        if group != 0x0002:
            break
        vr = bytes(buffer.data[position + 4:position + 6])
        if vr in _LONG_VRS:
            if not buffer.need(position + 12):
                raise _Unsafe
            length, = struct.unpack_from("<I", buffer.data, position + 8)
            if length == _UNDEFINED:
                raise _Unsafe
            position += 12 + length
        elif vr in _SHORT_VRS:
            length, = struct.unpack_from("<H", buffer.data, position + 6)
            position += 8 + length
        else:
            raise _Unsafe
    if not buffer.need(position):
        raise _Unsafe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = _read_file_meta_info(BytesIO(bytes(buffer.data[132:position])))
        out = DicomBytesIO()
        out.is_implicit_VR, out.is_little_endian = False, True
        out.write(bytes(buffer.data[:132]))
        if meta:
            write_file_meta_info(out, meta, enforce_standard=False)
    syntax = meta.get("TransferSyntaxUID")
    if not syntax:
        raise _Unsafe
    return out.getvalue(), position, UID(str(syntax))


def _top_level(buffer: _Buffer, position: int,
               implicit: bool) -> tuple[list[tuple[int, int, int, str]], int]:
    """The top-level elements before the pixel data, each as (tag, start, end, kind), and
    where the walk stopped."""
    elements: list[tuple[int, int, int, str]] = []
    append = elements.append
    unpack = struct.unpack_from
    data = buffer.data
    previous = -1
    if implicit and buffer.need(position + 6) and bytes(
            data[position + 4:position + 6]) in _ANY_VR:
        raise _Unsafe  # maybe an explicit body under an implicit syntax: pydicom guesses
    while position < len(data) or buffer.need(position + 1):
        if position + 12 > len(data) and not buffer.need(position + 8):
            raise _Unsafe
        group, element = unpack("<HH", data, position)
        tag = (group << 16) | element
        if tag in _PIXEL_TAGS:
            return elements, position
        if tag <= previous or group in (0x0000, 0x0002, 0xFFFE):
            raise _Unsafe
        previous = tag
        start = position
        vr = b""
        if implicit:
            length, = unpack("<I", data, position + 4)
            position += 8
        else:
            vr = bytes(data[position + 4:position + 6])
            if vr in _SHORT_VRS:
                length, = unpack("<H", data, position + 6)
                position += 8
            elif vr in _LONG_VRS:
                if not buffer.need(position + 12):
                    raise _Unsafe
                length, = unpack("<I", data, position + 8)
                position += 12
            else:
                raise _Unsafe  # pydicom would guess the encoding again: not ours to follow
        if length == _UNDEFINED:
            position = _skip_items(buffer, position, implicit or vr == b"UN")
            append((tag, start, position, _UNDEFINED_LENGTH))
            continue
        position += length
        if position > len(data) and not buffer.need(position):
            raise _Unsafe
        append((tag, start, position, _VERBATIM if length else _EMPTY))
    return elements, position


def _skip_items(buffer: _Buffer, position: int, implicit: bool) -> int:
    """Past the items of a value of undefined length and its sequence delimiter."""
    while True:
        if not buffer.need(position + 8):
            raise _Unsafe
        tag = (struct.unpack_from("<H", buffer.data, position)[0] << 16) | struct.unpack_from(
            "<H", buffer.data, position + 2)[0]
        length, = struct.unpack_from("<I", buffer.data, position + 4)
        position += 8
        if tag == _SEQUENCE_END:
            if length:
                raise _Unsafe
            return position
        if tag != _ITEM:
            raise _Unsafe
        if length == _UNDEFINED:
            position = _skip_item_elements(buffer, position, implicit)
            continue
        position += length
        if not buffer.need(position):
            raise _Unsafe


def _skip_item_elements(buffer: _Buffer, position: int, implicit: bool) -> int:
    """Past the elements of an item of undefined length and its item delimiter."""
    while True:
        if not buffer.need(position + 8):
            raise _Unsafe
        group, element = struct.unpack_from("<HH", buffer.data, position)
        tag = (group << 16) | element
        if tag == _ITEM_END:
            length, = struct.unpack_from("<I", buffer.data, position + 4)
            if length:
                raise _Unsafe
            return position + 8
        if tag in (_ITEM, _SEQUENCE_END):
            raise _Unsafe
        if implicit:
            length, = struct.unpack_from("<I", buffer.data, position + 4)
            position += 8
            vr = b""
        else:
            vr = bytes(buffer.data[position + 4:position + 6])
            if vr in _LONG_VRS:
                if not buffer.need(position + 12):
                    raise _Unsafe
                length, = struct.unpack_from("<I", buffer.data, position + 8)
                position += 12
            elif vr in _SHORT_VRS:
                length, = struct.unpack_from("<H", buffer.data, position + 6)
                position += 8
            else:
                raise _Unsafe
        if length == _UNDEFINED:
            position = _skip_items(buffer, position, implicit or vr == b"UN")
            continue
        position += length
        if not buffer.need(position):
            raise _Unsafe


class _Recent:
    """A bounded map of the most recently used answers."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self.lock:
            value = self.entries.get(key)
            if value is not None:
                self.entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


# The coerced elements of the objects of one study for one domain are the same but for the
# time of the coercion: they are made once and the time written into a copy.
_COERCED = _Recent(4096)
_REENCODED = _Recent(16384)


def _coerced(data: bytes, touched: list[tuple[int, int, int]], implicit: bool,
             plan: PatientCoercion, source: str, when: datetime) -> dict[int, bytes]:
    stored = b"".join(data[start:end] for _, start, end in touched)
    key = (implicit, stored, plan, source)
    stamp = dicom_datetime(when).encode()
    cached = _COERCED.get(key)
    if cached is not None:
        made_at, elements = cached
        if len(made_at) == len(stamp):
            return {tag: value.replace(made_at, stamp) for tag, value in elements.items()}
    elements = _coerced_elements(data, touched, implicit, plan, source, when)
    # Only where the time appears in nothing but the two values coercion writes.
    if sum(value.count(stamp) for value in elements.values()) in (0, 2) and not any(
            stamp in data[start:end] for _, start, end in touched):
        _COERCED.put(key, (stamp, elements))
    return dict(elements)


def _reencoded(implicit: bool, charset: bytes, stored: bytes, tag: int) -> bytes:
    """An element pydicom reads into a value and encodes anew, as it encodes it."""
    key = (implicit, charset, stored)
    cached: bytes | None = _REENCODED.get(key)
    if cached is not None:
        return cached
    raw = charset + stored
    stream = BytesIO(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = read_dataset(stream, implicit, True)
        if stream.tell() != len(raw) or tag not in dataset or len(dataset) != (
                2 if charset else 1):
            raise _Unsafe
        dataset.set_original_encoding(implicit, True, dataset._character_set)
        out = DicomBytesIO()
        out.is_implicit_VR, out.is_little_endian = implicit, True
        write_data_element(out, dataset.get_item(tag),
                           dataset.get("SpecificCharacterSet", default_encoding))
    encoded = out.getvalue()
    _REENCODED.put(key, encoded)
    return encoded


def _coerced_elements(data: bytes, handed: list[tuple[int, int, int]], implicit: bool,
                      plan: PatientCoercion, source: str,
                      when: datetime) -> dict[int, bytes]:
    """The handed elements read by pydicom, coerced, and each encoded as pydicom's writer
    encodes it in a whole dataset."""
    raw = b"".join(data[start:end] for _, start, end in handed)
    stream = BytesIO(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = read_dataset(stream, implicit, True)
    if stream.tell() != len(raw) or set(dataset.keys()) != {tag for tag, _, _ in handed}:
        raise _Unsafe  # pydicom read these bytes otherwise than the walk
    dataset.set_original_encoding(implicit, True, dataset._character_set)
    charset_before = dataset.get("SpecificCharacterSet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply_coercion(dataset, plan, source, when)
        if dataset.get("SpecificCharacterSet") != charset_before:
            raise _Unsafe  # every text value re-encoded in the new character set
        encodings = dataset.get("SpecificCharacterSet", default_encoding)
        encoded = {}
        for tag in dataset.keys():
            out = DicomBytesIO()
            out.is_implicit_VR, out.is_little_endian = implicit, True
            write_data_element(out, dataset.get_item(tag), encodings)
            encoded[int(tag)] = out.getvalue()
    return encoded
