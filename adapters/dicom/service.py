"""The archive as the DICOM adapters use it: store an object, find studies, series and
instances for a query, and hand out coerced copies, each read traced in the access trail.

Shared by the DIMSE service (``scp.py``), DICOMweb (mounted by the HTTP application through
the container) and the ``mpi archive`` commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset

from adapters.dicom.blobstore import FilesystemBlobStore
from adapters.dicom.coerce import (
    apply_coercion,
    coerced_dataset,
    patient_attributes,
    read_header,
)
from adapters.dicom.compress import decoded_dataset
from adapters.dicom.header import parse_object, sha256_of
from adapters.dicom.splice import coerced_copy, spliced_dataset
from adapters.dicom.spool import Content
from adapters.errors import AdapterError
from mpi.archive import (
    ArchiveMatch,
    ArchiveQuery,
    ArchiveReader,
    ArchiveService,
    ArchiveUnitOfWork,
    BlobStore,
    PatientCoercion,
    Sender,
    StagedBlob,
    StoredInstance,
    StoreOutcome,
    StoreResult,
    asker_authority,
    blob_key,
)
from mpi.audit import AuditAction, AuditEvent
from mpi.authorities import AuthorityRegistry
from mpi.model import Authority
from mpi.ports import AuditTrail, Clock
from mpi.retry import retry_on_conflict

__all__ = ["DicomArchive", "StoreTrail", "UnsupportedInPlaceError", "match_dataset"]


class UnsupportedInPlaceError(AdapterError):
    """Files are indexed where they lie on the filesystem store only."""


def match_dataset(match: ArchiveMatch, level: str) -> Dataset:
    """Every attribute we know of one answer at this level (callers keep what was asked)."""
    ds = patient_attributes(match.plan)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    if level == "PATIENT":
        ds.NumberOfPatientRelatedStudies = len(match.studies)
        ds.NumberOfPatientRelatedSeries = sum(len(s.series) for s in match.studies)
        ds.NumberOfPatientRelatedInstances = sum(s.instance_count for s in match.studies)
        return ds
    study = match.studies[0]
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date.strftime("%Y%m%d") if study.study_date else ""
    ds.StudyTime = study.study_time or ""
    ds.AccessionNumber = study.accession_number or ""
    ds.StudyID = study.study_id or ""
    ds.StudyDescription = study.description or ""
    ds.ModalitiesInStudy = list(study.modalities)
    ds.NumberOfStudyRelatedSeries = len(study.series)
    ds.NumberOfStudyRelatedInstances = study.instance_count
    if level in ("SERIES", "IMAGE") and match.series is not None:
        ds.SeriesInstanceUID = match.series.series_instance_uid
        ds.Modality = match.series.modality or ""
        ds.SeriesNumber = match.series.series_number
        ds.SeriesDescription = match.series.description or ""
        ds.NumberOfSeriesRelatedInstances = match.series.instance_count
    if level == "IMAGE" and match.instance is not None:
        ds.SOPInstanceUID = match.instance.sop_instance_uid
        ds.SOPClassUID = match.instance.sop_class_uid
        ds.InstanceNumber = match.instance.instance_number
        ds.AvailableTransferSyntaxUID = match.instance.transfer_syntax_uid
    return ds


@dataclass
class StoreTrail:
    """The access trail of the objects stored by one association (one STOW-RS request, one
    import): an entry for the first object of each study, in the transaction that stores it
    (IHE ATNA's "DICOM Instances Transferred"), naming the sender and the patient's person.
    The instances themselves keep their sender and time of arrival in the archive."""

    channel: str
    actor: str
    authority: str | None
    source: str | None
    token_id: str | None = None
    studies: set[str] = field(default_factory=set)

    def entry(self, uow: ArchiveUnitOfWork, result: StoreResult,
              now: datetime) -> AuditEvent | None:
        if result.study_instance_uid in self.studies:
            return None
        link = uow.links.for_record(result.record_id)
        person = link.person_id if link is not None else None
        return AuditEvent(
            occurred_at=now, channel=self.channel, action=AuditAction.CREATE, actor=self.actor,
            subject=f"study {result.study_instance_uid}", outcome="success",
            authority=self.authority, source=self.source,
            persons=(person,) if person is not None else (),
            detail={"first_instance": result.sop_instance_uid,
                    "outcome": result.outcome.value},
            token_id=self.token_id)

    def traced(self, result: StoreResult) -> None:
        self.studies.add(result.study_instance_uid)


class DicomArchive:
    def __init__(self, registry: AuthorityRegistry,
                 uow_factory: Callable[..., ArchiveUnitOfWork],
                 service: ArchiveService, blobs: BlobStore, audit: AuditTrail,
                 clock: Clock, ae_title: str = "VNA") -> None:
        self.registry = registry
        self.uow_factory = uow_factory
        self.service = service
        self.reader = ArchiveReader(registry)
        self.blobs = blobs
        self.audit = audit
        self.clock = clock
        self.ae_title = ae_title
        self.bound_port: int | None = None  # set by the DIMSE server once listening

    # -- ingest --------------------------------------------------------------------------

    def store(self, data: Content, sender: Sender, trail: StoreTrail | None = None, *,
              in_place: Path | None = None) -> StoreResult:
        """Check, index and store one Part-10 object. Raises the errors of
        :func:`adapters.dicom.header.parse_object` and :meth:`ArchiveService.accept`.
        ``trail``: the access trail of the association (request, import) it arrived in.
        ``in_place``: the file ``data`` was read from, indexed where it lies instead of
        copied (filesystem store only: UnsupportedInPlaceError otherwise); the archive owns
        it from then on. ``data`` may be a view of a spooled file (a large object, never
        read whole into memory on the filesystem store)."""
        parsed = parse_object(data)
        if isinstance(data, memoryview) and not isinstance(self.blobs, FilesystemBlobStore):
            data = bytes(data)  # the S3 store sends an object from memory
        # On the filesystem, the bytes are written and flushed before the transaction, whose
        # write lock (SQLite) or advisory locks (PostgreSQL) then only cover their rename.
        # Its UIDs make the key: checked first, a malformed one is a refusal, not a bad key.
        self.service.check(parsed.header)
        key = blob_key(parsed.header, parsed.sha256)
        staged: StagedBlob | None = None
        if in_place is not None:
            if not isinstance(self.blobs, FilesystemBlobStore):
                raise UnsupportedInPlaceError(
                    "files can be indexed in place on the filesystem store only")
            if not self.blobs.exists(key):
                staged = self.blobs.reference(key, in_place)
        elif isinstance(self.blobs, FilesystemBlobStore) and not self.blobs.exists(key):
            staged = self.blobs.stage(key, data)

        def accept() -> StoreResult:
            with self.uow_factory() as uow:
                result = self.service.accept(uow, parsed.header, data, parsed.sha256, sender,
                                             staged)
                if trail is not None and result.outcome is not StoreOutcome.DUPLICATE:
                    entry = trail.entry(uow, result, self.clock.now())
                    if entry is not None:
                        uow.audit.record(entry)
                uow.commit()
                return result

        # Two associations storing the first instances of one study race for its rows.
        try:
            result = retry_on_conflict(accept)
        finally:
            if staged is not None:
                staged.discard()
        if trail is not None and result.outcome is not StoreOutcome.DUPLICATE:
            trail.traced(result)
        return result

    def already_stored(self, data: Content) -> bool:
        """Whether these exact bytes are already an instance of the archive (resumed imports)."""
        digest = sha256_of(data)
        with self.uow_factory(read_only=True) as uow:
            return uow.archive.has_content(digest)

    # -- who asks ------------------------------------------------------------------------

    def asker(self, domain: str | None) -> Authority:
        """Raises UnknownAuthorityError."""
        return asker_authority(self.registry, domain)

    # -- queries -------------------------------------------------------------------------

    def find(self, query: ArchiveQuery, asker: Authority) -> list[ArchiveMatch]:
        """Answer a query at its level, every patient attribute for the asker's domain.
        Raises UnknownAuthorityError for an issuer in the keys that is not declared."""
        with self.uow_factory(read_only=True) as uow:
            return self.reader.find(uow, query, asker)

    def instances(self, query: ArchiveQuery,
                  asker: Authority) -> list[tuple[StoredInstance, PatientCoercion]]:
        """The instances a retrieve designates (C-GET, C-MOVE, WADO-RS, export), each with
        its patient attributes for the asker. Raises UnknownAuthorityError."""
        with self.uow_factory(read_only=True) as uow:
            return self.reader.instances(uow, query, asker)

    # -- coerced copies ------------------------------------------------------------------

    def coerced_file(self, instance: StoredInstance, plan: PatientCoercion) -> Iterator[bytes]:
        """A coerced Part-10 copy, in chunks (pixel data copied, never decoded)."""
        with self.blobs.open(instance.blob_key) as handle:
            yield from coerced_copy(handle, plan, instance.source, self.clock.now())

    def coerced_dataset(self, instance: StoredInstance, plan: PatientCoercion,
                        decode: bool = False) -> Dataset:
        """A coerced copy as a dataset (for DIMSE sub-operations): as stored, or with its
        pixels decoded to Explicit VR Little Endian when ``decode`` (for a peer that does
        not take the stored syntax). Raises CompressionFailedError when it cannot be
        decoded."""
        with self.blobs.open(instance.blob_key) as handle:
            if not decode:
                return self._spliced_dataset(handle, plan, instance.source)
            dataset = decoded_dataset(handle)
        apply_coercion(dataset, plan, instance.source, self.clock.now())
        return dataset

    def _spliced_dataset(self, handle: BinaryIO, plan: PatientCoercion,
                         source: str) -> Dataset:
        now = self.clock.now()
        dataset = spliced_dataset(handle, plan, source, now)
        if dataset is None:
            handle.seek(0)
            return coerced_dataset(handle, plan, source, now)
        return dataset

    def coerced_header(self, instance: StoredInstance, plan: PatientCoercion) -> Dataset:
        """The coerced header of an instance, without pixel data (WADO-RS metadata)."""
        with self.blobs.open(instance.blob_key) as handle:
            dataset, _ = read_header(handle)
        apply_coercion(dataset, plan, instance.source, self.clock.now())
        return dataset

    # -- the access trail ----------------------------------------------------------------

    def trace(self, *, channel: str, action: AuditAction, actor: str, subject: str,
              persons: Iterable[int], authority: str | None, source: str | None,
              outcome: str = "success", detail: dict[str, Any] | None = None,
              token_id: str | None = None) -> None:
        self.audit.record(AuditEvent(
            occurred_at=self.clock.now(), channel=channel, action=action, actor=actor,
            subject=subject, outcome=outcome, authority=authority, source=source,
            persons=tuple(sorted(set(persons))), detail=detail or {}, token_id=token_id,
        ))
