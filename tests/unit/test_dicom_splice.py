"""Coercion by splicing (adapters.dicom.splice) gives the very bytes of the pydicom path
(adapters.dicom.coerce.coerced_chunks): on every Part-10 file bundled with pydicom and on
objects written byte by byte for the cases pydicom re-encodes (odd lengths, empty values of
UN, sequences of undefined length, group lengths, elements after the pixel data, an earlier
OriginalAttributesSequence); and where splicing could differ (deflated, big endian, tags out
of order, a character set coercion changes) it steps aside and the pydicom path answers."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from pynetdicom.dsutils import encode

from adapters.dicom.coerce import coerced_chunks, coerced_dataset
from adapters.dicom.splice import coerced_copy, spliced_chunks, spliced_dataset, spliced_header
from mpi.archive import PatientCoercion
from tests.unit.test_dicom_coercion import plan

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def part10(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        with path.open("rb") as handle:
            if handle.read(132)[128:] == b"DICM":
                found.append(path)
    return found


BUNDLED = part10(sorted(p for p in TEST_FILES.glob("**/*") if p.is_file()))


def slow(data: bytes, coercion: PatientCoercion, when: datetime = WHEN) -> bytes:
    return b"".join(coerced_chunks(BytesIO(data), coercion, "CHRU", when))


def spliced(data: bytes, coercion: PatientCoercion, when: datetime = WHEN) -> bytes | None:
    handle = BytesIO(data)
    header = spliced_header(handle, coercion, "CHRU", when)
    return None if header is None else b"".join(spliced_chunks(handle, header))


def answered(data: bytes, coercion: PatientCoercion, when: datetime = WHEN) -> bytes:
    return b"".join(coerced_copy(BytesIO(data), coercion, "CHRU", when))


# -- objects written byte by byte ---------------------------------------------------------

def element(tag: int, vr: str, value: bytes, *, implicit: bool = False,
            undefined: bool = False) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    length = 0xFFFFFFFF if undefined else len(value)
    if implicit:
        return head + struct.pack("<I", length) + value
    if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"):
        return head + vr.encode() + b"\0\0" + struct.pack("<I", length) + value
    return head + vr.encode() + struct.pack("<H", length) + value


def item(body: bytes, *, undefined: bool = True) -> bytes:
    if undefined:
        return struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + body + struct.pack(
            "<HHI", 0xFFFE, 0xE00D, 0)
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


SEQUENCE_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def written(body: bytes, syntax: str = ExplicitVRLittleEndian, *,
            deflate: bool = False) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = UID("1.2.3.4.5")
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = UID("1.2.3.999")
    out = DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    if deflate:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = compressor.compress(body) + compressor.flush()
        body += b"\0" * (len(body) % 2)
    return out.getvalue() + body


def header_elements(implicit: bool = False, *, name: bytes = b"DUPOND^LEA",
                    patient_id: bytes = b"100") -> list[bytes]:
    """A secondary capture header with values of odd length, an empty UN, a private
    sequence of undefined length, a defined-length sequence, a group length."""
    e = lambda tag, vr, value, **kw: element(tag, vr, value, implicit=implicit, **kw)  # noqa: E731
    code = e(0x00080100, "SH", b"T-1234") + e(0x00080102, "SH", b"SRT ")
    return [
        e(0x00080005, "CS", b"ISO_IR 100"),
        e(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.7\0"),
        e(0x00080018, "UI", b"1.2.3.4.5"),  # odd length, kept as it came
        e(0x00080050, "SH", b""),
        e(0x00081030, "LO", b"CT THORAX"),
        e(0x00082218, "SQ", item(code, undefined=False), undefined=False),
        e(0x00100010, "PN", name),
        e(0x00100020, "LO", patient_id),  # odd length
        e(0x00100021, "LO", b"CHRU"),
        e(0x00100030, "DA", b"19900506"),
        e(0x00100040, "CS", b"F "),
        e(0x00110010, "LO", b"ACME 1.1"),
        e(0x00111001, "UN", b""),
        e(0x00111002, "SQ", item(e(0x00111003, "LO", b"NESTED")) + SEQUENCE_END,
          undefined=True),
        e(0x0020000D, "UI", b"1.2.3\0"),
        e(0x0020000E, "UI", b"1.2.3.1\0"),
        e(0x00280000, "UL", struct.pack("<I", 44)),  # a retired group length
        e(0x00280002, "US", struct.pack("<H", 1)),
        e(0x00280010, "US", struct.pack("<H", 2)),
        e(0x00280011, "US", struct.pack("<H", 2)),
        e(0x00280100, "US", struct.pack("<H", 8)),
    ]


NATIVE_PIXELS = element(0x7FE00010, "OB", b"\x01\x02\x03\x04")
TRAILING_PADDING = element(0xFFFCFFFC, "OB", b"\0" * 6)


def encapsulated_pixels() -> bytes:
    return (struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0" + struct.pack("<I", 0xFFFFFFFF)
            + item(b"", undefined=False) + item(b"\xff\xd8\xff\xd9", undefined=False)
            + SEQUENCE_END)


CRAFTED = {
    "explicit, odd lengths, sequences": written(b"".join(header_elements()) + NATIVE_PIXELS),
    "implicit": written(b"".join(header_elements(True)) + element(
        0x7FE00010, "OW", b"\x01\x02\x03\x04", implicit=True), ImplicitVRLittleEndian),
    "encapsulated, padding after the pixels": written(
        b"".join(header_elements()) + encapsulated_pixels() + TRAILING_PADDING,
        JPEGBaseline8Bit),
    "no pixel data": written(b"".join(header_elements())),
    "odd-length name": written(b"".join(header_elements(name=b"DUPOND^LE"))
                               + NATIVE_PIXELS),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_object_is_spliced_into_the_bytes_of_the_pydicom_path(name: str) -> None:
    data = CRAFTED[name]
    reference = slow(data, plan())
    assert reference != data  # something was coerced
    assert spliced(data, plan()) == reference
    assert answered(data, plan()) == reference


def test_a_second_coercion_keeps_the_earlier_original_attributes_item() -> None:
    once = slow(CRAFTED["explicit, odd lengths, sequences"], plan())
    other = plan(patient_id=plan().others[0][0], issuer=plan().others[0][1])
    later = WHEN + timedelta(days=1)
    assert spliced(once, other, later) == slow(once, other, later)


def test_what_already_carries_the_asker_s_attributes_comes_out_as_pydicom_writes_it() -> None:
    once = slow(CRAFTED["implicit"], plan())
    assert spliced(once, plan()) == slow(once, plan())


def test_the_time_of_each_coercion_is_its_own_when_the_plan_is_reused() -> None:
    data = CRAFTED["explicit, odd lengths, sequences"]
    for step in range(3):
        when = WHEN + timedelta(minutes=step, microseconds=step)
        assert spliced(data, plan(), when) == slow(data, plan(), when)


def test_another_study_of_the_same_patient_is_not_given_the_first_one_s_values() -> None:
    first = CRAFTED["explicit, odd lengths, sequences"]
    second = written(b"".join(header_elements(name=b"DURAND^LEA", patient_id=b"101"))
                     + NATIVE_PIXELS)
    assert spliced(first, plan()) == slow(first, plan())
    assert spliced(second, plan()) == slow(second, plan())


@pytest.mark.parametrize("path", BUNDLED, ids=lambda path: path.name)
def test_every_bundled_object_is_answered_with_the_bytes_of_the_pydicom_path(
        path: Path) -> None:
    data = path.read_bytes()
    try:
        reference = slow(data, plan())
    except Exception as exc:  # what pydicom cannot write fails as it did
        assert spliced(data, plan()) is None
        with pytest.raises(type(exc)):
            answered(data, plan())
        return
    out = spliced(data, plan())
    assert out is None or out == reference
    assert answered(data, plan()) == reference


@pytest.mark.parametrize("name", [
    "CT_small.dcm",  # explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR little endian
    "MR_small_jp2klossless.dcm",  # encapsulated
    "MR_small_RLE.dcm",
    "rtplan.dcm",  # nested sequences
    "SC_rgb_small_odd.dcm",  # odd dimensions
])
def test_the_usual_objects_are_spliced(name: str) -> None:
    data = (TEST_FILES / name).read_bytes()
    assert spliced(data, plan()) == slow(data, plan())


def fallback_cases() -> dict[str, bytes]:
    body = b"".join(header_elements()) + NATIVE_PIXELS
    elements = header_elements()
    elements[1], elements[2] = elements[2], elements[1]
    return {
        "deflated": written(body, DeflatedExplicitVRLittleEndian, deflate=True),
        "deflated, bundled": (TEST_FILES / "image_dfl.dcm").read_bytes(),
        "big endian, bundled": (TEST_FILES / "MR_small_bigendian.dcm").read_bytes(),
        "tags out of order": written(b"".join(elements) + NATIVE_PIXELS),
        "a value past the end": written(b"".join(header_elements()))[:-3],
        "private transfer syntax": written(body, "1.2.3.4.5.6.7"),
    }


@pytest.mark.parametrize("name", sorted(fallback_cases()))
def test_where_splicing_could_differ_the_pydicom_path_answers(name: str) -> None:
    data = fallback_cases()[name]
    assert spliced(data, plan()) is None
    try:
        reference = slow(data, plan())
    except Exception:  # the pydicom path refuses it as it always did
        with pytest.raises(Exception):  # noqa: B017
            answered(data, plan())
        return
    assert answered(data, plan()) == reference


def test_a_name_that_needs_another_character_set_takes_the_pydicom_path() -> None:
    data = CRAFTED["explicit, odd lengths, sequences"]
    unicode = plan(family_name="DUPONT-ŁUKASZ")
    assert spliced(data, unicode) is None
    reference = slow(data, unicode)
    assert b"ISO_IR 192" in reference
    assert answered(data, unicode) == reference


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm",
                                  "MR_small_jp2klossless.dcm", "rtplan.dcm"])
def test_a_dimse_peer_is_sent_the_bytes_the_pydicom_path_sends(name: str) -> None:
    data = (TEST_FILES / name).read_bytes()
    dataset = spliced_dataset(BytesIO(data), plan(), "CHRU", WHEN)
    assert dataset is not None
    today = coerced_dataset(BytesIO(data), plan(), "CHRU", WHEN)
    implicit = today.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert encode(dataset, implicit, True) == encode(today, implicit, True)


def test_a_dimse_peer_of_a_deflated_object_is_left_to_the_pydicom_path() -> None:
    data = (TEST_FILES / "image_dfl.dcm").read_bytes()
    assert spliced_dataset(BytesIO(data), plan(), "CHRU", WHEN) is None
