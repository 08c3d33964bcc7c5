"""The archive's entities: objects as received, the index of patients, studies, series and
instances, study summaries for queries, and the patient attributes an object carries on the
way out (a coercion plan). Plain data: no use case, no port."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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
    "StudyFacts",
    "Retention",
    "RetentionRow",
    "LegalHold",
    "ProposalStatus",
    "ItemOutcome",
    "ProposalItem",
    "Approval",
    "DestructionProposal",
    "Tombstone",
    "Reassignment",
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
    # Lossless compression: the SHA-256 of the file as received, and of its decoded pixels
    # (what a later decode must give again), once the stored file is a compressed copy.
    original_sha256: str | None = None
    pixel_sha256: str | None = None
    # Set when a fixity check found the file changed or missing.
    fixity_failed_at: datetime | None = None
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




# -- the legal lifecycle ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecordDates:
    """What the retention rule reads of one patient record, read for a batch of records at
    once: enough for a record that was neither merged into another nor survived a merge (the
    others are read one by one, following their merges)."""

    record_id: int
    retired_into: int | None
    has_retired: bool  # records were merged into this one
    last_activity: datetime | None
    birth_date: date | None
    death_date: date | None
    person_active: bool | None  # the linked person's (None: not linked)
    person_death_date: date | None  # the earliest death of the person's active records


@dataclass(frozen=True)
class StudyFacts:
    """What the retention of one study is computed from, as the index holds it."""

    study_id: int
    study_instance_uid: str
    record_id: int  # the record of the patient as received
    establishment: str  # the authority of that record: whose medical record the study is
    patient_id: str  # the establishment's IPP
    patient_birth_date: date | None
    study_date: date | None
    first_received_at: datetime
    last_received_at: datetime
    size_bytes: int
    instances: int


@dataclass(frozen=True)
class Retention:
    """When a study's retention ends (R.1112-7), and why."""

    study_id: int
    establishment: str
    expires_on: date
    basis: str
    last_visit: date | None
    computed_at: datetime


@dataclass(frozen=True)
class RetentionRow:
    """One line of the retention report: a study, its end of retention, whether it is held."""

    study_instance_uid: str
    establishment: str
    patient: str
    expires_on: date | None
    basis: str | None
    last_visit: date | None
    study_date: date | None
    size_bytes: int
    instances: int
    person_id: int | None
    held: bool = False


@dataclass
class LegalHold:
    """A claim that suspends destruction: of a person (every study of theirs, at every site)
    or of one study."""

    reason: str
    reference: str
    placed_by: str
    placed_at: datetime
    person_id: int | None = None
    study_instance_uid: str | None = None
    released_by: str | None = None
    released_at: datetime | None = None
    release_reason: str | None = None
    id: int | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None


class ProposalStatus(StrEnum):
    PROPOSED = "proposed"  # waiting for the DIM's opinion and the director's decision
    APPROVED = "approved"  # both approvals given: waiting for the archives' visa
    VISAED = "visaed"  # the departmental archives' visa recorded: may be destroyed
    DESTROYING = "destroying"  # destruction started (run it again to finish)
    DESTROYED = "destroyed"


class ItemOutcome(StrEnum):
    PENDING = "pending"
    DESTROYED = "destroyed"
    KEPT = "kept"  # checked again at destruction and kept (a new stay, a hold, a new study)


@dataclass
class ProposalItem:
    """One line of the elimination list (bordereau d'élimination)."""

    study_instance_uid: str
    patient: str
    study_date: date | None
    last_visit: date | None
    expires_on: date
    basis: str
    size_bytes: int
    instances: int
    outcome: ItemOutcome = ItemOutcome.PENDING
    outcome_reason: str | None = None


@dataclass(frozen=True)
class Approval:
    role: str  # dim or director
    approved_by: str
    approved_at: datetime
    roles_verified: bool  # False while the caller's roles are not known (names only)


@dataclass
class DestructionProposal:
    establishment: str
    as_of: date
    proposed_by: str
    proposed_at: datetime
    items: list[ProposalItem] = field(default_factory=list)
    status: ProposalStatus = ProposalStatus.PROPOSED
    approvals: list[Approval] = field(default_factory=list)
    visa_reference: str | None = None
    visa_by: str | None = None
    visa_at: datetime | None = None
    destroyed_by: str | None = None
    destroyed_at: datetime | None = None
    id: int | None = None

    def approval(self, role: str) -> Approval | None:
        return next((a for a in self.approvals if a.role == role), None)


@dataclass(frozen=True)
class Tombstone:
    """What remains of a destroyed study: what it was, when it went and on whose decision,
    never the patient's demographics. ``files`` holds, per instance, every file it had
    (version, transfer syntax, size, SHA-256)."""

    study_instance_uid: str
    establishment: str
    study_date: date | None
    first_received_at: datetime
    last_received_at: datetime
    instances: int
    size_bytes: int
    series: tuple[str, ...]
    files: tuple[dict[str, object], ...]
    proposal_id: int
    decision: dict[str, object]  # proposer, approvals, visa
    destroyed_by: str
    destroyed_at: datetime
    id: int | None = None


@dataclass(frozen=True)
class Reassignment:
    """A study moved from one patient as received to another (IOCM "incorrect worklist
    entry"): no file rewritten, kept in the study's history, undone by reassigning back."""

    study_instance_uid: str
    from_patient: Identifier
    to_patient: Identifier
    by: str
    reason: str
    at: datetime
    id: int | None = None
