"""The archive domain: studies, series and instances as received, whose patient they are,
and how a patient is presented to whoever asks.

A stored study points at the source record it arrived with (its authority and PatientID, the
*patient as received*); the person is found through that record's link at read time. A merge,
an identifier change, a link or an unlink therefore moves every study at the cost of a few
link rows, and no stored object is ever rewritten. Originals stay byte for byte as received.

Coercion (:func:`coercion_for`) computes, from the index, the patient attributes an object
carries on the way out for the asker's identifier domain; the DICOM adapter applies them to
the header and streams the pixel data through untouched.

Errors::

    MPIError
    ├── InvalidInputError
    │   └── InvalidObjectError       an object lacks what the archive needs (UIDs, PatientID)
    └── IdentityConflictError
        └── StudyOwnershipError      an instance names a study that belongs to another patient
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Callable, Iterable

from mpi.authorities import AuthorityRegistry
from mpi.errors import (
    ConcurrencyError,
    IdentityConflictError,
    InvalidInputError,
    UnknownAuthorityError,
)
from mpi.identity import Actor, IdentityService, RecordData, RegisterRecord
from mpi.model import Authority, AuthorityKind, Identifier, master_id_of
from mpi.ports import BlobStore, UnitOfWork
from mpi.queries import PersonView, current_person, person_view

__all__ = [
    "InvalidObjectError",
    "StudyOwnershipError",
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
    "ArchiveService",
    "accept_with_retries",
    "blob_key",
    "is_valid_uid",
    "coercion_for",
    "asker_authority",
    "studies_of_person",
    "find_studies",
    "owner_views",
]


class InvalidObjectError(InvalidInputError):
    """An object lacks what the archive needs: SOP, study or series UIDs, or a PatientID."""


class StudyOwnershipError(IdentityConflictError):
    """An instance names a study already stored for another patient as received."""


_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(uid: str | None) -> bool:
    """A DICOM UID: dot-separated numbers without leading zeros, at most 64 characters."""
    return bool(uid) and len(uid) <= 64 and _UID.match(uid) is not None  # type: ignore[arg-type]


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


# -- ingest ----------------------------------------------------------------------------------


def blob_key(header: InstanceHeader, sha256: str) -> str:
    """Where an object's bytes live: by study and series, the content hash in the name, so
    that a new version of an instance never overwrites the previous one."""
    return (f"{header.study_instance_uid}/{header.series_instance_uid}/"
            f"{header.sop_instance_uid}.{sha256[:16]}.dcm")


class ArchiveService:
    """Accepts objects into the archive. Stateless apart from its configuration."""

    def __init__(self, registry: AuthorityRegistry, identity: IdentityService,
                 blobs: BlobStore, now: Callable[[], datetime]) -> None:
        self.registry = registry
        self.identity = identity
        self.blobs = blobs
        self.now = now

    def domain_of(self, header: InstanceHeader, sender: Sender) -> Authority:
        """The establishment an object's PatientID belongs to: its IssuerOfPatientID (and
        qualifiers) when present, else the sender's. Raises UnknownAuthorityError for an
        issuer that is not declared or not an establishment, or when nothing names one."""
        patient = header.patient
        if patient.issuer or patient.issuer_oid:
            authority = self.registry.find(namespace=patient.issuer, oid=patient.issuer_oid)
        elif sender.authority is not None:
            authority = self.registry.by_code(sender.authority)
        else:
            raise UnknownAuthorityError(
                f"{sender.name} speaks for no establishment and the object has no "
                "IssuerOfPatientID")
        if authority.kind is not AuthorityKind.ESTABLISHMENT:
            raise UnknownAuthorityError(
                f"IssuerOfPatientID {authority.code} is not an establishment's domain")
        return authority

    def check(self, header: InstanceHeader) -> None:
        """Raises InvalidObjectError when a UID is missing or malformed, or the PatientID
        is empty."""
        for name in ("sop_class_uid", "sop_instance_uid", "study_instance_uid",
                     "series_instance_uid", "transfer_syntax_uid"):
            if not is_valid_uid(getattr(header, name)):
                raise InvalidObjectError(f"{name} missing or not a valid UID: "
                                         f"{getattr(header, name)!r}")
        if not header.patient.patient_id.strip():
            raise InvalidObjectError("the object has no PatientID")

    def accept(self, uow: UnitOfWork, header: InstanceHeader, content: bytes, sha256: str,
               sender: Sender) -> StoreResult:
        """Index an object and store its bytes (before the caller commits). An unknown
        patient becomes a provisional source record that goes through matching.

        Raises InvalidObjectError, UnknownAuthorityError, StudyOwnershipError; ForbiddenError
        and the identity errors of registration propagate. On any error after the bytes were
        written, they are removed again: nothing partial stays."""
        self.check(header)
        domain = self.domain_of(header, sender)
        identifier = Identifier(domain.code, header.patient.patient_id.strip())
        now = self.now()
        uow.lock([f"study:{header.study_instance_uid}", f"sop:{header.sop_instance_uid}"])
        existing = uow.archive.instance(header.sop_instance_uid)
        if existing is not None and existing.sha256 == sha256:
            return StoreResult(StoreOutcome.DUPLICATE, header.sop_instance_uid,
                               header.study_instance_uid, existing.record_id or 0,
                               existing.version)
        patient = self._patient(uow, identifier, header, sender, now)
        study = self._study(uow, header, patient, now)
        series = uow.archive.series(header.series_instance_uid)
        if series is None:
            series = StoredSeries(header.series_instance_uid, _id(study), header.modality,
                                  header.series_number, header.series_description)
            uow.archive.add_series(series)
        elif series.study_id != study.id:
            raise InvalidObjectError(
                f"series {header.series_instance_uid} belongs to another study")
        key = blob_key(header, sha256)
        instance = StoredInstance(
            sop_instance_uid=header.sop_instance_uid, sop_class_uid=header.sop_class_uid,
            series_id=_id(series), transfer_syntax_uid=header.transfer_syntax_uid,
            blob_key=key, size=len(content), sha256=sha256, received_at=now,
            source=sender.name, instance_number=header.instance_number,
        )
        wrote = not self.blobs.exists(key)
        if wrote:
            self.blobs.put(key, content)
        try:
            if existing is None:
                uow.archive.add_instance(instance)
                outcome = StoreOutcome.STORED
            else:
                if existing.series_id != series.id:
                    raise InvalidObjectError(
                        f"instance {header.sop_instance_uid} was stored in another series")
                instance.version = existing.version + 1
                uow.archive.replace_instance(existing, instance, now)
                outcome = StoreOutcome.REPLACED
        except BaseException:
            if wrote:
                self.blobs.delete(key)
            raise
        return StoreResult(outcome, header.sop_instance_uid, header.study_instance_uid,
                           patient.record_id, instance.version)

    def _patient(self, uow: UnitOfWork, identifier: Identifier, header: InstanceHeader,
                 sender: Sender, now: datetime) -> ArchivedPatient:
        received = header.patient
        patient = uow.archive.patient(identifier)
        if patient is None:
            record = uow.records.by_identifier(identifier)
            if record is None:
                # The archive writes on behalf of its sender, which may create records in its
                # own domain only: an object naming another establishment's unknown patient
                # is refused (ForbiddenError), as an ADT message from that sender would be.
                record = self.identity.register(
                    uow, RegisterRecord(_provisional_record(identifier, received)),
                    Actor(f"archive:{sender.name}", sender.authority),
                )
            patient = ArchivedPatient(identifier.authority, identifier.value, _id(record),
                                      first_received_at=now)
            _remember(patient, received, header, now)
            uow.archive.add_patient(patient)
        else:
            _remember(patient, received, header, now)
            uow.archive.save_patient(patient)
        return patient

    def _study(self, uow: UnitOfWork, header: InstanceHeader, patient: ArchivedPatient,
               now: datetime) -> StoredStudy:
        study = uow.archive.study(header.study_instance_uid)
        if study is None:
            study = StoredStudy(
                header.study_instance_uid, _id(patient), header.study_date, header.study_time,
                header.accession_number, header.study_id, header.study_description,
                first_received_at=now, last_received_at=now,
            )
            uow.archive.add_study(study)
            return study
        if study.patient_id != patient.id:
            raise StudyOwnershipError(
                f"study {header.study_instance_uid} is stored for another patient than "
                f"{patient.authority}|{patient.patient_id}")
        study.last_received_at = now
        uow.archive.save_study(study)
        return study


def _provisional_record(identifier: Identifier, received: PatientAsReceived) -> RecordData:
    demographics: dict[str, object] = {}
    if received.family_name:
        demographics["birth_family_name"] = received.family_name
    if received.given_names:
        demographics["given_names"] = received.given_names
    if received.birth_date:
        demographics["birth_date"] = received.birth_date
    if received.sex:
        demographics["sex"] = {"M": "M", "F": "F"}.get(received.sex, "U")
    return RecordData(identifier, demographics, reliability=("PROV",),
                      location="(0010,0020)")


def _remember(patient: ArchivedPatient, received: PatientAsReceived, header: InstanceHeader,
              now: datetime) -> None:
    patient.family_name = received.family_name or patient.family_name
    patient.given_names = received.given_names or patient.given_names
    patient.birth_date = received.birth_date or patient.birth_date
    patient.sex = received.sex or patient.sex
    if header.study_date and (patient.last_study_date is None
                              or header.study_date > patient.last_study_date):
        patient.last_study_date = header.study_date
    patient.last_received_at = now


def accept_with_retries(service: ArchiveService, uow_factory: Callable[[], UnitOfWork],
                        header: InstanceHeader, content: bytes, sha256: str, sender: Sender,
                        attempts: int = 5) -> StoreResult:
    """Accept and commit in one unit of work, retried whole when a concurrent transaction got
    in the way (two associations storing the first instances of one study)."""
    for attempt in range(attempts):
        try:
            with uow_factory() as uow:
                result = service.accept(uow, header, content, sha256, sender)
                uow.commit()
                return result
        except ConcurrencyError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# -- reading and coercion --------------------------------------------------------------------


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


def asker_authority(registry: AuthorityRegistry, domain: str | None) -> Authority:
    """The domain an asker speaks for, given as a code, namespace or OID; the master domain
    when none is given. Raises UnknownAuthorityError for an undeclared one."""
    if domain is None or not domain.strip():
        return registry.master
    return registry.named(domain)


def coercion_for(registry: AuthorityRegistry, view: PersonView,
                 asker: Authority) -> PatientCoercion:
    """Patient attributes for the asker's domain: its identifier of the person (the master
    identifier when it has none), every other identifier (the INS only when qualified, as
    ``view.identifiers`` holds it), and the golden name, birth date and sex."""
    assert view.person.id is not None
    identifiers = sorted(view.identifiers)
    mine = [i for i in identifiers if i.authority == asker.code]
    if mine and asker.kind is not AuthorityKind.MASTER:
        chosen, issuer = mine[0], asker
    else:
        chosen = Identifier(registry.master.code, master_id_of(view.person.id))
        issuer = registry.master
    others = tuple(
        (i, registry.by_code(i.authority)) for i in identifiers if i != chosen
    )
    d = view.demographics
    sex = {"M": "M", "F": "F", None: None}.get(d.sex, "O")
    return PatientCoercion(
        patient_id=chosen, issuer=issuer, others=others,
        family_name=d.birth_family_name or d.used_family_name, given_names=d.given_names,
        birth_date=d.birth_date, sex=sex, person_id=view.person.id, death_date=d.death_date,
    )


def owner_views(uow: UnitOfWork, registry: AuthorityRegistry,
                record_ids: Iterable[int]) -> dict[int, PersonView]:
    """The person view of each record's current person (records without one left out)."""
    views: dict[int, PersonView] = {}
    by_person: dict[int, PersonView] = {}
    for record_id in set(record_ids):
        link = uow.links.for_record(record_id)
        if link is None:
            continue
        person = current_person(uow, link.person_id)
        if person is None or person.id is None:
            continue
        if person.id not in by_person:
            by_person[person.id] = person_view(uow, registry, person)
        views[record_id] = by_person[person.id]
    return views


def studies_of_person(uow: UnitOfWork, person_id: int) -> list[StudySummary]:
    """Every study of a person across sites, newest first, with its series, modalities and
    instance counts (what FHIR ImagingStudy and QIDO-RS answer). A merged person's number
    designates its survivor's studies."""
    person = current_person(uow, person_id)
    if person is None or person.id is None:
        return []
    return uow.archive.find_studies(StudyFilter(person_ids=(person.id,)))


def find_studies(uow: UnitOfWork, criteria: StudyFilter) -> list[StudySummary]:
    """Studies matching the criteria, newest first, each with the person it belongs to now."""
    return uow.archive.find_studies(criteria)


def _id(entity: object) -> int:
    value = getattr(entity, "id", None)
    if value is None:
        raise RuntimeError("entity used before it was stored")
    return int(value)

