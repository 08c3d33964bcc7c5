"""The archive's entities: objects as received, the index of patients, studies, series and
instances, study summaries for queries, and the patient attributes an object carries on the
way out (a coercion plan). Plain data: no use case, no port."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from mpi.model import Authority, Identifier

__all__ = [
    "PatientAsReceived",
    "InstanceHeader",
    "Sender",
    "StoreOutcome",
    "StoreResult",
    "ArchivedPatient",
    "StoredStudy",
    "StoredSeries",
    "StoredInstance",
    "SeriesSummary",
    "StudySummary",
    "StudyFilter",
    "PatientCoercion",
    "blob_key",
    "is_valid_uid",
]

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(uid: str | None) -> bool:
    """A DICOM UID: dot-separated numbers without leading zeros, at most 64 characters."""
    if not uid or len(uid) > 64:
        return False
    return _UID.match(uid) is not None


@dataclass(frozen=True)
class PatientAsReceived:
    """The patient attributes of an object, as its sender wrote them."""

    patient_id: str
    issuer: str | None = None  # (0010,0021) IssuerOfPatientID
    issuer_oid: str | None = None  # (0010,0024) > (0040,0032) UniversalEntityID
    family_name: str | None = None
    given_names: tuple[str, ...] = ()
    birth_date: date | None = None
    sex: str | None = None  # DICOM M, F, O


@dataclass(frozen=True)
class InstanceHeader:
    """What the archive reads from an object's header (never its pixel data)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    patient: PatientAsReceived
    study_date: date | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_id: str | None = None
    study_description: str | None = None
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    instance_number: int | None = None


@dataclass(frozen=True)
class Sender:
    """Who handed an object over: a calling AE title, a DICOMweb client, an import. The
    authority is the domain it speaks for (None when it speaks for none)."""

    name: str
    authority: str | None


class StoreOutcome(StrEnum):
    STORED = "stored"  # a new instance
    DUPLICATE = "duplicate"  # the same bytes again: acknowledged, nothing written
    REPLACED = "replaced"  # new content for a known SOP Instance UID: newest kept, old in history


@dataclass(frozen=True)
class StoreResult:
    outcome: StoreOutcome
    sop_instance_uid: str
    study_instance_uid: str
    record_id: int
    version: int


@dataclass
class ArchivedPatient:
    """A patient as received: one (authority, PatientID), the source record it designates,
    and the demographics and dates the objects carried (for retention)."""

    authority: str
    patient_id: str
    record_id: int
    family_name: str | None = None
    given_names: tuple[str, ...] = ()
    birth_date: date | None = None
    sex: str | None = None
    last_study_date: date | None = None
    first_received_at: datetime | None = None
    last_received_at: datetime | None = None
    id: int | None = None


@dataclass
class StoredStudy:
    study_instance_uid: str
    patient_id: int  # the ArchivedPatient row
    study_date: date | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_id: str | None = None
    description: str | None = None
    first_received_at: datetime | None = None
    last_received_at: datetime | None = None
    id: int | None = None


@dataclass
class StoredSeries:
    series_instance_uid: str
    study_id: int
    modality: str | None = None
    series_number: int | None = None
    description: str | None = None
    id: int | None = None


@dataclass
class StoredInstance:
    sop_instance_uid: str
    sop_class_uid: str
    series_id: int
    transfer_syntax_uid: str
    blob_key: str
    size: int
    sha256: str
    received_at: datetime
    source: str
    instance_number: int | None = None
    version: int = 1
    # Filled by reads that join the hierarchy.
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    record_id: int | None = None
    id: int | None = None


@dataclass(frozen=True)
class SeriesSummary:
    series_instance_uid: str
    modality: str | None
    series_number: int | None
    description: str | None
    instance_count: int


@dataclass(frozen=True)
class StudySummary:
    """A study as a query answers it (C-FIND, QIDO-RS, FHIR ImagingStudy): its attributes,
    its series with their modalities and instance counts, and whose it is."""

    study_instance_uid: str
    record_id: int
    received_as: Identifier  # the patient as received (authority, PatientID)
    study_date: date | None
    study_time: str | None
    accession_number: str | None
    study_id: str | None
    description: str | None
    first_received_at: datetime | None
    last_received_at: datetime | None
    series: tuple[SeriesSummary, ...] = ()
    person_id: int | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(sorted({s.modality for s in self.series if s.modality}))

    @property
    def instance_count(self) -> int:
        return sum(s.instance_count for s in self.series)


@dataclass(frozen=True)
class StudyFilter:
    """Study search criteria; empty ones are ignored. ``person_ids`` restricts to the studies
    of these persons (through the links of the records the studies arrived with)."""

    person_ids: tuple[int, ...] | None = None
    study_uids: tuple[str, ...] = ()
    accession_number: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    modality: str | None = None
    limit: int = 1000



def blob_key(header: InstanceHeader, sha256: str) -> str:
    """Where an object's bytes live: by study and series, the content hash in the name, so
    that a new version of an instance never overwrites the previous one."""
    return (f"{header.study_instance_uid}/{header.series_instance_uid}/"
            f"{header.sop_instance_uid}.{sha256[:16]}.dcm")



@dataclass(frozen=True)
class PatientCoercion:
    """The patient attributes an object carries on the way out, for one asker's domain."""

    patient_id: Identifier
    issuer: Authority
    others: tuple[tuple[Identifier, Authority], ...]
    family_name: str | None
    given_names: tuple[str, ...]
    birth_date: date | None
    sex: str | None  # DICOM M, F, O or None
    person_id: int
    death_date: date | None = None
    modifying_system: str = "NANCY-MPI"

    def identifier_type(self, authority: Authority) -> str:
        """(0040,0035) IdentifierTypeCode of an identifier of that domain."""
        return "INS" if authority.is_national else "PI"


