"""Reading the archive: which persons and studies answer a query, and how each patient is
presented to whoever asks (the coercion plan).

A query names patients by an identifier (in the asker's domain, or the issuer it gives) or by
name, and studies, series and instances by their keys; the persons it designates are found
through the identity index, so a query by one site's IPP answers the person's studies from
every site. Every answer carries the plan of its patient for the asker's domain: its
identifier there (the master identifier when it has none), the person's other identifiers
(the INS only when qualified), and the golden name, birth date and sex. Protocols (C-FIND,
QIDO-RS, FHIR ImagingStudy, WADO-RS, C-GET/C-MOVE, export) turn these answers into their own
wire format.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from mpi.archive.model import (
    PatientCoercion,
    SeriesSummary,
    StoredInstance,
    StudyFilter,
    StudySummary,
)
from mpi.archive.ports import ArchiveUnitOfWork
from mpi.authorities import AuthorityRegistry
from mpi.errors import UnknownAuthorityError
from mpi.model import Authority, AuthorityKind, Identifier, master_id_of
from mpi.ports import PersonQuery
from mpi.queries import PersonView, current_person, person_view, resolve_person

__all__ = [
    "LEVELS",
    "ArchiveQuery",
    "ArchiveMatch",
    "ArchiveReader",
    "asker_authority",
    "coercion_for",
    "owner_views",
    "studies_of_person",
    "find_studies",
]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


@dataclass(frozen=True)
class ArchiveQuery:
    """Matching keys of a query at one level (empty ones are universal matches): what C-FIND,
    C-GET, C-MOVE, QIDO-RS and WADO-RS ask, in the archive's terms."""

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
class ArchiveMatch:
    """One answer of a query at its level, with the patient attributes for the asker."""

    plan: PatientCoercion
    studies: list[StudySummary] = field(default_factory=list)  # the patient's, or the study
    series: SeriesSummary | None = None
    instance: StoredInstance | None = None


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


def owner_views(uow: ArchiveUnitOfWork, registry: AuthorityRegistry,
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


def studies_of_person(uow: ArchiveUnitOfWork, person_id: int) -> list[StudySummary]:
    """Every study of a person across sites, newest first, with its series, modalities and
    instance counts (what FHIR ImagingStudy and QIDO-RS answer). A merged person's number
    designates its survivor's studies."""
    person = current_person(uow, person_id)
    if person is None or person.id is None:
        return []
    return uow.archive.find_studies(StudyFilter(person_ids=(person.id,)))


def find_studies(uow: ArchiveUnitOfWork, criteria: StudyFilter) -> list[StudySummary]:
    """Studies matching the criteria, newest first, each with the person it belongs to now."""
    return uow.archive.find_studies(criteria)


class ArchiveReader:
    """Plans and answers queries and retrieves over the index, for one asker's domain."""

    def __init__(self, registry: AuthorityRegistry) -> None:
        self.registry = registry

    def plans(self, uow: ArchiveUnitOfWork, record_ids: Iterable[int],
              asker: Authority) -> dict[int, PatientCoercion]:
        """The coercion plan of each record's person for the asker (one per person)."""
        views = owner_views(uow, self.registry, record_ids)
        plans: dict[int, PatientCoercion] = {}
        by_person: dict[int, PatientCoercion] = {}
        for record_id, view in views.items():
            person_id = view.person.id or 0
            if person_id not in by_person:
                by_person[person_id] = coercion_for(self.registry, view, asker)
            plans[record_id] = by_person[person_id]
        return plans

    def persons(self, uow: ArchiveUnitOfWork, query: ArchiveQuery,
                asker: Authority) -> tuple[int, ...] | None:
        """The persons a query's patient keys designate (None: no patient key given). A
        PatientID is read in the domain of the issuer the query gives, else the asker's.
        Raises UnknownAuthorityError for an issuer that is not declared."""
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

    def find(self, uow: ArchiveUnitOfWork, query: ArchiveQuery,
             asker: Authority) -> list[ArchiveMatch]:
        """Answer a query at its level, every patient attribute for the asker's domain.
        Raises UnknownAuthorityError for an issuer in the keys that is not declared."""
        persons = self.persons(uow, query, asker)
        if persons == ():
            return []
        studies = uow.archive.find_studies(StudyFilter(
            person_ids=persons, study_uids=query.study_uids,
            accession_number=query.accession_number, date_from=query.date_from,
            date_to=query.date_to, modality=query.modality, limit=query.limit))
        plans = self.plans(uow, [s.record_id for s in studies], asker)
        studies = [s for s in studies if s.record_id in plans]
        if query.level == "PATIENT":
            by_person: dict[int, ArchiveMatch] = {}
            for study in studies:
                plan = plans[study.record_id]
                by_person.setdefault(plan.person_id, ArchiveMatch(plan)).studies.append(study)
            return list(by_person.values())
        if query.level == "STUDY":
            return [ArchiveMatch(plans[s.record_id], [s]) for s in studies]
        matches = []
        for study in studies:
            for series in study.series:
                if query.series_uids and series.series_instance_uid not in query.series_uids:
                    continue
                if query.level == "SERIES" and query.modality and (
                        not fnmatch.fnmatchcase(series.modality or "", query.modality)):
                    continue
                if query.level == "SERIES":
                    matches.append(ArchiveMatch(plans[study.record_id], [study], series))
                    continue
                for instance in uow.archive.instances(
                        study_uid=study.study_instance_uid,
                        series_uid=series.series_instance_uid, sop_uids=query.sop_uids):
                    matches.append(ArchiveMatch(plans[study.record_id], [study], series,
                                                instance))
        return matches[:query.limit]

    def instances(self, uow: ArchiveUnitOfWork, query: ArchiveQuery,
                  asker: Authority) -> list[tuple[StoredInstance, PatientCoercion]]:
        """The instances a retrieve designates (C-GET, C-MOVE, WADO-RS, export), each with
        its patient attributes for the asker. Raises UnknownAuthorityError."""
        persons = self.persons(uow, query, asker)
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
                found += uow.archive.instances(series_uid=series_uid, sop_uids=query.sop_uids)
        elif persons:
            for person_id in persons:
                found += uow.archive.instances(person_id=person_id)
        plans = self.plans(uow, [i.record_id for i in found if i.record_id], asker)
        result = []
        for instance in found:
            plan = plans.get(instance.record_id or 0)
            if plan is None or (persons is not None and plan.person_id not in persons):
                continue
            result.append((instance, plan))
        return result
