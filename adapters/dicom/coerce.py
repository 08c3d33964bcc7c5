"""Coercion on the way out: the patient attributes of an object rewritten for the asker's
domain (PS3.3 C.12.1 OriginalAttributesSequence records what was replaced).

The stored original is never changed. A coerced copy is its header, rewritten, followed by
the original bytes from the pixel data element to the end, copied untouched: pixels are
never decoded. Coercing an object that already carries the asker's attributes changes
nothing (no new OriginalAttributesSequence item): coercion is idempotent.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from datetime import date, datetime
from io import BytesIO
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian

from mpi.archive import PatientCoercion

__all__ = ["patient_attributes", "apply_coercion", "coerced_chunks", "coerced_dataset",
           "read_header", "COERCED_KEYWORDS", "dicom_datetime"]

# The attributes coercion owns, in the order they are compared and recorded.
COERCED_KEYWORDS = (
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "OtherPatientIDsSequence",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
)
_CHUNK = 1 << 20


def dicom_datetime(when: datetime) -> str:
    """A DT value with its UTC offset."""
    text = when.strftime("%Y%m%d%H%M%S.%f")
    offset = when.strftime("%z") or "+0000"
    return text + offset


def _da(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def _qualifiers(oid: str, type_code: str) -> Sequence:
    item = Dataset()
    item.UniversalEntityID = oid
    item.UniversalEntityIDType = "ISO"
    item.IdentifierTypeCode = type_code
    return Sequence([item])


def person_name(plan: PatientCoercion) -> str:
    """PN of the golden name: FAMILY^First given name^Other given names."""
    if not plan.family_name and not plan.given_names:
        return ""
    given = plan.given_names
    parts = [plan.family_name or "", given[0] if given else "", " ".join(given[1:])]
    return "^".join(parts).rstrip("^")


def patient_attributes(plan: PatientCoercion) -> Dataset:
    """The patient module attributes of a person for one asker's domain."""
    ds = Dataset()
    ds.PatientID = plan.patient_id.value
    ds.IssuerOfPatientID = plan.issuer.namespace
    ds.IssuerOfPatientIDQualifiersSequence = _qualifiers(
        plan.issuer.oid, plan.identifier_type(plan.issuer))
    others = []
    for identifier, authority in plan.others:
        item = Dataset()
        item.PatientID = identifier.value
        item.IssuerOfPatientID = authority.namespace
        item.TypeOfPatientID = "TEXT"
        item.IssuerOfPatientIDQualifiersSequence = _qualifiers(
            authority.oid, plan.identifier_type(authority))
        others.append(item)
    ds.OtherPatientIDsSequence = Sequence(others)
    ds.PatientName = person_name(plan)
    ds.PatientBirthDate = _da(plan.birth_date)
    ds.PatientSex = plan.sex or ""
    return ds


def _comparable(dataset: Dataset, keyword: str) -> object:
    """A value of a coerced attribute in a form that compares across encodings."""
    if keyword not in dataset:
        return None
    value = dataset[keyword].value
    if keyword.endswith("Sequence"):
        return tuple(
            tuple((kw, _comparable(item, kw)) for kw in (
                "PatientID", "IssuerOfPatientID", "TypeOfPatientID", "UniversalEntityID",
                "UniversalEntityIDType", "IdentifierTypeCode",
                "IssuerOfPatientIDQualifiersSequence"))
            for item in (value or ())
        )
    text = str(value if value is not None else "").strip()
    return text or None


def _needs_unicode(plan_attributes: Dataset) -> bool:
    return any(not str(plan_attributes.get(kw, "")).isascii() for kw in ("PatientName",))


def apply_coercion(dataset: Dataset, plan: PatientCoercion, source: str,
                   when: datetime) -> bool:
    """Rewrite the patient attributes of a header for the plan; keep the replaced values in
    a new OriginalAttributesSequence item (appended to the existing ones). Returns whether
    anything changed; when nothing did, the header is left exactly as it was."""
    wanted = patient_attributes(plan)
    changed = [kw for kw in COERCED_KEYWORDS
               if _comparable(dataset, kw) != _comparable(wanted, kw)]
    if not changed:
        return False
    previous = Dataset()
    for keyword in changed:
        if keyword in dataset:
            previous[keyword] = copy.deepcopy(dataset[keyword])
    if "PatientID" in changed and "IssuerOfPatientID" not in previous:
        previous.IssuerOfPatientID = dataset.get("IssuerOfPatientID", "")
    charset = dataset.get("SpecificCharacterSet")
    if _needs_unicode(wanted) and "ISO_IR 192" not in (
            charset if isinstance(charset, list) else [charset]):
        dataset.decode()  # every text value as str, re-encoded in UTF-8 when written
        if charset is not None:
            previous.SpecificCharacterSet = charset
        dataset.SpecificCharacterSet = "ISO_IR 192"
    for keyword in changed:
        dataset[keyword] = wanted[keyword]
    item = Dataset()
    item.AttributeModificationDateTime = dicom_datetime(when)
    item.ModifyingSystem = plan.modifying_system
    item.SourceOfPreviousValues = source[:64]
    item.ReasonForTheAttributeModification = "COERCE"
    item.ModifiedAttributesSequence = Sequence([previous])
    history = list(dataset.get("OriginalAttributesSequence") or [])
    history.append(item)
    dataset.OriginalAttributesSequence = Sequence(history)
    dataset.InstanceCoercionDateTime = dicom_datetime(when)
    return True


def read_header(handle: BinaryIO) -> tuple[Dataset, int]:
    """The header of a stored object (up to the pixel data) and the byte offset where its
    pixel data element starts (the end of the file when it has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = dcmread(handle, stop_before_pixels=True)
    return dataset, handle.tell()


def coerced_chunks(handle: BinaryIO, plan: PatientCoercion, source: str,
                   when: datetime) -> Iterator[bytes]:
    """A coerced Part-10 copy of a stored object, in chunks: the rewritten header, then the
    original bytes from the pixel data on, copied as they are."""
    dataset, pixel_offset = read_header(handle)
    if dataset.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        # A deflated body cannot be spliced: decode it whole (pixels stay bytes) and re-deflate.
        handle.seek(0)
        yield _encoded(coerced_dataset(handle, plan, source, when))
        return
    apply_coercion(dataset, plan, source, when)
    yield _encoded(dataset)
    handle.seek(pixel_offset)
    while chunk := handle.read(_CHUNK):
        yield chunk


def coerced_dataset(handle: BinaryIO, plan: PatientCoercion, source: str,
                    when: datetime) -> Dataset:
    """The whole object, coerced, as a dataset (pixel data kept as the stored bytes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = dcmread(handle)
    apply_coercion(dataset, plan, source, when)
    return dataset


def _encoded(dataset: Dataset) -> bytes:
    out = BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.save_as(out, enforce_file_format=False)
    return out.getvalue()
