"""The archive as the DICOM adapters use it: store an object, find studies, series and
instances for a query, and hand out coerced copies, each read traced in the access trail.

Shared by the DIMSE service (``scp.py``), DICOMweb (mounted by the HTTP application through
the container) and the ``mpi archive`` commands.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

from pydicom.dataset import Dataset

from adapters.dicom.blobstore import FilesystemBlobStore
from adapters.dicom.coerce import coerced_chunks, coerced_dataset, patient_attributes, read_header
from adapters.dicom.header import parse_object
from mpi.archive import (
    ArchiveService,
    PatientCoercion,
    SeriesSummary,
    Sender,
    StoredInstance,
    StoreResult,
    StudyFilter,
    StudySummary,
    accept_with_retries,
    asker_authority,
    coercion_for,
    owner_views,
)
from mpi.audit import AuditAction, AuditEvent
from mpi.authorities import AuthorityRegistry
from mpi.errors import UnknownAuthorityError
from mpi.model import Authority, Identifier
from mpi.ports import AuditTrail, Clock, PersonQuery, UnitOfWork
from mpi.queries import resolve_person

__all__ = ["DicomArchive", "Query", "Match", "LEVELS"]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


@dataclass(frozen=True)
class Query:
    """Matching keys of a C-FIND or QIDO-RS query (empty ones are universal matches)."""

    level: str
    patient_id: str | None = None
    issuer: str | None = None
    issuer_oid: str | None = None
    patient_name: str | None = None
    study_uids: tuple[str, ...] = ()
    accession_number: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    modality: str | None = None
    series_uids: tuple[str, ...] = ()
    sop_uids: tuple[str, ...] = ()
    limit: int = 1000


@dataclass
class Match:
    """One answer of a query, at its level, with the patient attributes for the asker."""

    plan: PatientCoercion
    studies: list[StudySummary] = field(default_factory=list)  # the patient's or the study
    series: SeriesSummary | None = None
    instance: StoredInstance | None = None

    def dataset(self, level: str) -> Dataset:
        """Every attribute we know at this level (callers keep what was asked for)."""
        ds = patient_attributes(self.plan)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = level
        if level == "PATIENT":
            ds.NumberOfPatientRelatedStudies = len(self.studies)
            ds.NumberOfPatientRelatedSeries = sum(len(s.series) for s in self.studies)
            ds.NumberOfPatientRelatedInstances = sum(s.instance_count for s in self.studies)
            return ds
        study = self.studies[0]
        ds.StudyInstanceUID = study.study_instance_uid
        ds.StudyDate = study.study_date.strftime("%Y%m%d") if study.study_date else ""
        ds.StudyTime = study.study_time or ""
        ds.AccessionNumber = study.accession_number or ""
        ds.StudyID = study.study_id or ""
        ds.StudyDescription = study.description or ""
        ds.ModalitiesInStudy = list(study.modalities)
        ds.NumberOfStudyRelatedSeries = len(study.series)
        ds.NumberOfStudyRelatedInstances = study.instance_count
        if level in ("SERIES", "IMAGE") and self.series is not None:
            ds.SeriesInstanceUID = self.series.series_instance_uid
            ds.Modality = self.series.modality or ""
            ds.SeriesNumber = self.series.series_number
            ds.SeriesDescription = self.series.description or ""
            ds.NumberOfSeriesRelatedInstances = self.series.instance_count
        if level == "IMAGE" and self.instance is not None:
            ds.SOPInstanceUID = self.instance.sop_instance_uid
            ds.SOPClassUID = self.instance.sop_class_uid
            ds.InstanceNumber = self.instance.instance_number
            ds.AvailableTransferSyntaxUID = self.instance.transfer_syntax_uid
        return ds


class DicomArchive:
    def __init__(self, registry: AuthorityRegistry, uow_factory: Callable[..., UnitOfWork],
                 service: ArchiveService, blobs: FilesystemBlobStore, audit: AuditTrail,
                 clock: Clock, ae_title: str = "VNA") -> None:
        self.registry = registry
        self.uow_factory = uow_factory
        self.service = service
        self.blobs = blobs
        self.audit = audit
        self.clock = clock
        self.ae_title = ae_title
        self.bound_port: int | None = None  # set by the DIMSE server once listening

    # -- ingest --------------------------------------------------------------------------

    def store(self, data: bytes, sender: Sender) -> StoreResult:
        """Check, index and store one Part-10 object. Raises the errors of
        :func:`adapters.dicom.header.parse_object` and :meth:`ArchiveService.accept`."""
        parsed = parse_object(data)
        return accept_with_retries(self.service, self.uow_factory, parsed.header, data,
                                   parsed.sha256, sender)

    def already_stored(self, data: bytes) -> bool:
        """Whether these exact bytes are already an instance of the archive (resumed imports)."""
        digest = hashlib.sha256(data).hexdigest()
        with self.uow_factory(read_only=True) as uow:
            return uow.archive.has_content(digest)

    # -- who asks ------------------------------------------------------------------------

    def asker(self, domain: str | None) -> Authority:
        """Raises UnknownAuthorityError."""
        return asker_authority(self.registry, domain)

    def _plans(self, uow: UnitOfWork, record_ids: Iterable[int],
               asker: Authority) -> dict[int, PatientCoercion]:
        views = owner_views(uow, self.registry, record_ids)
        plans: dict[int, PatientCoercion] = {}
        by_person: dict[int, PatientCoercion] = {}
        for record_id, view in views.items():
            person_id = view.person.id or 0
            if person_id not in by_person:
                by_person[person_id] = coercion_for(self.registry, view, asker)
            plans[record_id] = by_person[person_id]
        return plans

    def _persons(self, uow: UnitOfWork, query: Query, asker: Authority) -> tuple[int, ...] | None:
        """The persons a query's patient keys designate (None: no patient key given)."""
        wanted: set[int] | None = None
        if query.patient_id and "*" not in query.patient_id and "?" not in query.patient_id:
            if query.issuer or query.issuer_oid:
                domain = self.registry.find(namespace=query.issuer, oid=query.issuer_oid)
            else:
                domain = asker
            try:
                person = resolve_person(uow, self.registry,
                                        Identifier(domain.code, query.patient_id.strip()))
            except UnknownAuthorityError:
                person = None
            wanted = {person.id} if person is not None and person.id is not None else set()
        if query.patient_name and query.patient_name.strip("*"):
            family, _, given = query.patient_name.partition("^")
            found, _ = uow.persons.search(PersonQuery(family=family or None,
                                                      given=given.split("^")[0] or None),
                                          0, query.limit)
            wanted = set(found) if wanted is None else wanted & set(found)
        return None if wanted is None else tuple(sorted(wanted))

    # -- queries -------------------------------------------------------------------------

    def find(self, query: Query, asker: Authority) -> list[Match]:
        """Answer a query at its level, every patient attribute for the asker's domain.
        Raises UnknownAuthorityError for an issuer in the keys that is not declared."""
        with self.uow_factory(read_only=True) as uow:
            persons = self._persons(uow, query, asker)
            if persons == ():
                return []
            studies = uow.archive.find_studies(StudyFilter(
                person_ids=persons, study_uids=query.study_uids,
                accession_number=query.accession_number, date_from=query.date_from,
                date_to=query.date_to, modality=query.modality, limit=query.limit))
            plans = self._plans(uow, [s.record_id for s in studies], asker)
            studies = [s for s in studies if s.record_id in plans]
            if query.level == "PATIENT":
                by_person: dict[int, Match] = {}
                for study in studies:
                    plan = plans[study.record_id]
                    by_person.setdefault(plan.person_id, Match(plan)).studies.append(study)
                return list(by_person.values())
            if query.level == "STUDY":
                return [Match(plans[s.record_id], [s]) for s in studies]
            matches = []
            for study in studies:
                for series in study.series:
                    if query.series_uids and series.series_instance_uid not in query.series_uids:
                        continue
                    if query.level == "SERIES" and query.modality and (
                            not fnmatch.fnmatchcase(series.modality or "", query.modality)):
                        continue
                    if query.level == "SERIES":
                        matches.append(Match(plans[study.record_id], [study], series))
                        continue
                    for instance in uow.archive.instances(
                            study_uid=study.study_instance_uid,
                            series_uid=series.series_instance_uid, sop_uids=query.sop_uids):
                        matches.append(Match(plans[study.record_id], [study], series, instance))
            return matches[:query.limit]

    def instances(self, query: Query, asker: Authority) -> list[tuple[StoredInstance,
                                                                         PatientCoercion]]:
        """The instances a retrieve designates (C-GET, C-MOVE, WADO-RS, export), each with
        its patient attributes for the asker. Raises UnknownAuthorityError."""
        with self.uow_factory(read_only=True) as uow:
            persons = self._persons(uow, query, asker)
            if persons == ():
                return []
            found: list[StoredInstance] = []
            if query.study_uids:
                for study_uid in query.study_uids:
                    for series_uid in query.series_uids or (None,):
                        found += uow.archive.instances(study_uid=study_uid, series_uid=series_uid,
                                                       sop_uids=query.sop_uids)
            elif query.series_uids or query.sop_uids:
                for series_uid in query.series_uids or (None,):
                    found += uow.archive.instances(series_uid=series_uid,
                                                   sop_uids=query.sop_uids)
            elif persons:
                for person_id in persons:
                    found += uow.archive.instances(person_id=person_id)
            plans = self._plans(uow, [i.record_id for i in found if i.record_id], asker)
            result = []
            for instance in found:
                plan = plans.get(instance.record_id or 0)
                if plan is None or (persons is not None and plan.person_id not in persons):
                    continue
                result.append((instance, plan))
            return result

    # -- coerced copies ------------------------------------------------------------------

    def coerced_file(self, instance: StoredInstance, plan: PatientCoercion) -> Iterator[bytes]:
        """A coerced Part-10 copy, in chunks (pixel data copied, never decoded)."""
        with self.blobs.open(instance.blob_key) as handle:
            yield from coerced_chunks(handle, plan, instance.source, self.clock.now())

    def coerced_dataset(self, instance: StoredInstance, plan: PatientCoercion) -> Dataset:
        """A coerced copy as a dataset (for DIMSE sub-operations)."""
        with self.blobs.open(instance.blob_key) as handle:
            return coerced_dataset(handle, plan, instance.source, self.clock.now())

    def coerced_header(self, instance: StoredInstance, plan: PatientCoercion) -> Dataset:
        """The coerced header of an instance, without pixel data (WADO-RS metadata)."""
        from adapters.dicom.coerce import apply_coercion

        with self.blobs.open(instance.blob_key) as handle:
            dataset, _ = read_header(handle)
        apply_coercion(dataset, plan, instance.source, self.clock.now())
        return dataset

    # -- the access trail ----------------------------------------------------------------

    def trace(self, *, channel: str, action: AuditAction, actor: str, subject: str,
              persons: Iterable[int], authority: str | None, source: str | None,
              outcome: str = "success", detail: dict[str, Any] | None = None) -> None:
        self.audit.record(AuditEvent(
            occurred_at=self.clock.now(), channel=channel, action=action, actor=actor,
            subject=subject, outcome=outcome, authority=authority, source=source,
            persons=tuple(sorted(set(persons))), detail=detail or {},
        ))
