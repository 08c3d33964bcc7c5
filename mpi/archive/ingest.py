"""Accepting objects into the archive: check, index, store the bytes, and register an
unknown patient as a provisional source record that goes through the same matching as an ADT
record. Originals stay byte for byte as received."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mpi.archive.model import (
    ArchivedPatient,
    InstanceHeader,
    PatientAsReceived,
    Sender,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    StoreOutcome,
    StoreResult,
    blob_key,
    is_valid_uid,
)
from mpi.archive.ports import ArchiveUnitOfWork, BlobStore, StagedBlob
from mpi.authorities import AuthorityRegistry
from mpi.errors import (
    ForbiddenError,
    InvalidObjectError,
    StudyOwnershipError,
    UnknownAuthorityError,
)
from mpi.events import StudyStored
from mpi.identity import Actor, IdentityService, RecordData, RegisterRecord
from mpi.model import Authority, AuthorityKind, Identifier, SourceRecord

__all__ = ["ArchiveService"]


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
        issuer that is not declared or not an establishment, or when nothing names one;
        ForbiddenError when the sender speaks for another establishment."""
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
        if sender.authority is not None and authority.code != sender.authority:
            # An establishment's sender writes in its own identifier domain only.
            raise ForbiddenError(
                f"{sender.name} speaks for {sender.authority} and may not store an object "
                f"whose IssuerOfPatientID is {authority.code}")
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

    def accept(self, uow: ArchiveUnitOfWork, header: InstanceHeader,
               content: bytes | memoryview, sha256: str, sender: Sender,
               staged: StagedBlob | None = None) -> StoreResult:
        """Index an object and store its bytes (before the caller commits). An unknown
        patient becomes a provisional source record that goes through matching. ``staged``:
        its bytes already written for its key, or the file referenced where it lies (then only
        made visible here); the caller discards them after the transaction.

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
        used = wrote and staged is not None and staged.key == key
        if used:
            assert staged is not None
            staged.commit()
        elif wrote:
            self.blobs.put(key, content if isinstance(content, bytes) else bytes(content))
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
            if used:
                assert staged is not None
                staged.withdraw()
            elif wrote:
                self.blobs.delete(key)
            raise
        return StoreResult(outcome, header.sop_instance_uid, header.study_instance_uid,
                           patient.record_id, instance.version)

    def _patient(self, uow: ArchiveUnitOfWork, identifier: Identifier, header: InstanceHeader,
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

    def _study(self, uow: ArchiveUnitOfWork, header: InstanceHeader, patient: ArchivedPatient,
               now: datetime) -> StoredStudy:
        study = uow.archive.study(header.study_instance_uid)
        if study is None:
            study = StoredStudy(
                header.study_instance_uid, _id(patient), header.study_date, header.study_time,
                header.accession_number, header.study_id, header.study_description,
                first_received_at=now, last_received_at=now,
            )
            uow.archive.add_study(study)
            # Its retention is computed from the outbox (never on the ingest path).
            uow.outbox.add(StudyStored(patient.record_id, header.study_instance_uid))
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


def _id(entity: ArchivedPatient | StoredStudy | StoredSeries | SourceRecord) -> int:
    if entity.id is None:
        raise RuntimeError("entity used before it was stored")
    return entity.id
