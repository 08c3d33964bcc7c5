"""Reading objects: a Part-10 file's structure checked end to end, its header parsed by
pydicom up to the pixel data (never the pixels themselves).

pydicom stops quietly at the end of a truncated file; the archive must refuse such an object,
so :func:`check_structure` walks every top-level element (jumping over values, pixel data
fragments included) and raises when one runs past the end.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from adapters.dicom.spool import Content, chunks
from adapters.errors import AdapterError
from mpi.archive import InstanceHeader, PatientAsReceived
from mpi.errors import InvalidObjectError

__all__ = ["UnreadableObjectError", "ParsedObject", "parse_object", "part10_bytes",
           "check_structure", "dicom_date", "person_name_parts", "IMPLEMENTATION_UID"]

# Our implementation class UID (file meta of objects received over the network), under the
# fictitious arc of this project's OIDs.
IMPLEMENTATION_UID = "1.2.250.1.999.54.100.1"
IMPLEMENTATION_VERSION = "NANCY_MPI_1"

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT",
             b"SV", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


class UnreadableObjectError(AdapterError):
    """Not a DICOM object, or a truncated or malformed one."""


@dataclass(frozen=True)
class ParsedObject:
    header: InstanceHeader
    dataset: Dataset  # the header, without pixel data
    sha256: str


def part10_bytes(dataset_bytes: bytes, sop_class_uid: str, sop_instance_uid: str,
                 transfer_syntax_uid: str, source_ae: str | None = None) -> bytes:
    """A Part-10 file around a dataset received over the network, kept byte for byte."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if source_ae:
        meta.SourceApplicationEntityTitle = source_ae[:16]
    out = DicomBytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    out.write(dataset_bytes)
    return out.getvalue()


def parse_object(data: Content) -> ParsedObject:
    """Check and read a Part-10 object (in memory, or a view of a mapped file, read in
    chunks: :mod:`adapters.dicom.spool`). Raises UnreadableObjectError (not DICOM,
    truncated, malformed) and InvalidObjectError (SOP, study or series UID missing)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise UnreadableObjectError("not a DICOM Part-10 object (no DICM prefix)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source: Any = (BytesIO(data) if isinstance(data, bytes)
                           else io.BufferedReader(_ViewReader(data), 1 << 16))
            dataset = dcmread(source, stop_before_pixels=True)
        transfer_syntax = str(dataset.file_meta.get("TransferSyntaxUID", "") or "")
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, struct.error,
            OverflowError, NotImplementedError) as exc:
        raise UnreadableObjectError(f"unreadable DICOM object: {exc}") from exc
    if not transfer_syntax:
        raise UnreadableObjectError("the file meta information has no TransferSyntaxUID")
    check_structure(data, transfer_syntax)
    try:  # elements are decoded here, lazily: as broken as the reading above can be
        header = _header(dataset, transfer_syntax)
    except (ValueError, TypeError, KeyError, struct.error, OverflowError,
            NotImplementedError) as exc:
        raise UnreadableObjectError(f"unreadable attribute: {exc}") from exc
    return ParsedObject(header, dataset, sha256_of(data))


def sha256_of(data: Content) -> str:
    digest = hashlib.sha256()
    for chunk in chunks(data):
        digest.update(chunk)
    return digest.hexdigest()


class _ViewReader(io.RawIOBase):
    """A file over a view of mapped bytes, for pydicom's reader (read without copying
    more than is asked)."""

    name = "<mapped object>"

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        piece = self.view[self.position:self.position + len(buffer)]
        size = len(piece)
        buffer[:size] = piece
        self.position += size
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: len(self.view)}
        self.position = max(0, base[whence] + offset)
        return self.position

    def tell(self) -> int:
        return self.position


def check_structure(data: Content, transfer_syntax: str) -> None:
    """Walk every element of a Part-10 object, checking that each value lies within the
    bytes. Raises UnreadableObjectError for a truncated or malformed object."""
    position = _skip_meta(data)
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        import zlib

        try:
            inflated = zlib.decompressobj(-zlib.MAX_WBITS)
            body = inflated.decompress(data[position:]) + inflated.flush()
            if not inflated.eof:
                raise UnreadableObjectError("truncated deflated dataset")
        except zlib.error as exc:
            raise UnreadableObjectError(f"bad deflated dataset: {exc}") from exc
        _walk(body, 0, len(body), implicit=False, little=True)
        return
    _walk(data, position, len(data), implicit=transfer_syntax == ImplicitVRLittleEndian,
          little=transfer_syntax != ExplicitVRBigEndian)


def meta_end(data: Content) -> int:
    """Where the dataset of a Part-10 object begins, after its file meta information.
    Raises UnreadableObjectError for a truncated one."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise UnreadableObjectError("not a DICOM Part-10 object (no DICM prefix)")
    return _skip_meta(data)


def _skip_meta(data: Content) -> int:
    position = 132
    while position + 8 <= len(data):
        group, = struct.unpack_from("<H", data, position)
        if group != 0x0002:
            return position
        vr = bytes(data[position + 4:position + 6])
        if vr in _LONG_VRS:
            length, = struct.unpack_from("<I", data, position + 8)
            position += 12 + length
        else:
            length, = struct.unpack_from("<H", data, position + 6)
            position += 8 + length
    if position > len(data):
        raise UnreadableObjectError("truncated file meta information")
    return position


def _walk(data: Content, position: int, end: int, *, implicit: bool, little: bool,
          until_item_end: bool = False) -> int:
    """Jump over the elements from ``position``; returns where the walk stopped."""
    order = "<" if little else ">"
    while position < end:
        if position + 8 > end:
            raise UnreadableObjectError(f"truncated element header at byte {position}")
        group, element = struct.unpack_from(order + "HH", data, position)
        tag = (group << 16) | element
        if tag in (_ITEM_END, _SEQUENCE_END):
            position += 8
            if until_item_end and tag == _ITEM_END:
                return position
            raise UnreadableObjectError(f"unexpected delimiter at byte {position - 8}")
        if implicit or group == 0xFFFE:
            vr, (length,) = b"", struct.unpack_from(order + "I", data, position + 4)
            position += 8
        else:
            vr = bytes(data[position + 4:position + 6])
            if vr in _LONG_VRS:
                if position + 12 > end:
                    raise UnreadableObjectError(f"truncated element header at byte {position}")
                length, = struct.unpack_from(order + "I", data, position + 8)
                position += 12
            else:
                length, = struct.unpack_from(order + "H", data, position + 6)
                position += 8
        if length == _UNDEFINED:
            position = _walk_items(data, position, end, implicit=implicit or vr == b"UN",
                                   little=little, encapsulated=tag == 0x7FE00010)
            continue
        position += length
        if position > end:
            raise UnreadableObjectError(
                f"truncated: element ({group:04X},{element:04X}) runs past the end")
    if until_item_end:
        raise UnreadableObjectError("truncated: an item has no delimiter")
    return position


def _walk_items(data: Content, position: int, end: int, *, implicit: bool, little: bool,
                encapsulated: bool) -> int:
    order = "<" if little else ">"
    while True:
        if position + 8 > end:
            raise UnreadableObjectError("truncated: a sequence has no delimiter")
        group, element = struct.unpack_from(order + "HH", data, position)
        length, = struct.unpack_from(order + "I", data, position + 4)
        tag = (group << 16) | element
        position += 8
        if tag == _SEQUENCE_END:
            return position
        if tag != _ITEM:
            raise UnreadableObjectError(f"malformed sequence at byte {position - 8}")
        if length == _UNDEFINED and not encapsulated:
            position = _walk(data, position, end, implicit=implicit, little=little,
                             until_item_end=True)
            continue
        position += length
        if position > end:
            raise UnreadableObjectError("truncated: a sequence item runs past the end")


def dicom_date(value: object) -> date | None:
    """A DA value as a date; None when empty or not a valid date."""
    text = str(value or "").strip()
    if len(text) != 8 or not (text.isascii() and text.isdigit()):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def person_name_parts(value: object) -> tuple[str | None, tuple[str, ...]]:
    """(family name, given names) of a PN value (its alphabetic group)."""
    text = str(value or "").split("=")[0]
    parts = text.split("^")
    family = parts[0].strip() or None
    given = [g for g in (parts[1] if len(parts) > 1 else "").split() if g]
    given += [g for g in (parts[2] if len(parts) > 2 else "").split() if g]
    return family, tuple(given)


def _text(dataset: Dataset, keyword: str) -> str | None:
    value = dataset.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(dataset: Dataset, keyword: str) -> int | None:
    text = _text(dataset, keyword)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


def _header(dataset: Dataset, transfer_syntax: str) -> InstanceHeader:
    issuer_oid = None
    qualifiers = dataset.get("IssuerOfPatientIDQualifiersSequence")
    if qualifiers:
        issuer_oid = _text(qualifiers[0], "UniversalEntityID")
    family, given = person_name_parts(dataset.get("PatientName"))
    sex = _text(dataset, "PatientSex")
    patient = PatientAsReceived(
        patient_id=_text(dataset, "PatientID") or "",
        issuer=_text(dataset, "IssuerOfPatientID"), issuer_oid=issuer_oid,
        family_name=family, given_names=given,
        birth_date=dicom_date(dataset.get("PatientBirthDate")),
        sex=sex.upper() if sex else None,
    )
    sop_class = _text(dataset, "SOPClassUID") or str(
        dataset.file_meta.get("MediaStorageSOPClassUID", "") or "")
    missing = [k for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
               if not _text(dataset, k)]
    if missing or not sop_class:
        raise InvalidObjectError(
            f"missing {', '.join(missing or ['SOPClassUID'])}")
    return InstanceHeader(
        sop_class_uid=sop_class,
        sop_instance_uid=_text(dataset, "SOPInstanceUID") or "",
        study_instance_uid=_text(dataset, "StudyInstanceUID") or "",
        series_instance_uid=_text(dataset, "SeriesInstanceUID") or "",
        transfer_syntax_uid=transfer_syntax,
        patient=patient,
        study_date=dicom_date(dataset.get("StudyDate")),
        study_time=_text(dataset, "StudyTime"),
        accession_number=_text(dataset, "AccessionNumber"),
        study_id=_text(dataset, "StudyID"),
        study_description=_text(dataset, "StudyDescription"),
        modality=_text(dataset, "Modality"),
        series_number=_int(dataset, "SeriesNumber"),
        series_description=_text(dataset, "SeriesDescription"),
        instance_number=_int(dataset, "InstanceNumber"),
    )
