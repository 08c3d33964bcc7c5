"""The archive index on SQL (implements :class:`mpi.ports.ArchiveRepository`).

The person of a study is read through the link of the record its patient as received
designates: ``studies → archive_patients → links``. Identity changes rewrite links, never
these rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import RowMapping

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import (
    archive_instance_versions,
    archive_instances,
    archive_patients,
    archive_series,
    archive_studies,
    links,
)
from mpi.archive import (
    ArchivedPatient,
    SeriesSummary,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    StudyFilter,
    StudySummary,
)
from mpi.model import Identifier

__all__ = ["SqlArchiveRepository"]

_p, _st, _se, _i = archive_patients.c, archive_studies.c, archive_series.c, archive_instances.c

_PATIENT = select(archive_patients).where(_p.authority == bindparam("b_authority"),
                                          _p.patient_id == bindparam("b_value"))
_STUDY = select(archive_studies).where(_st.study_instance_uid == bindparam("b_uid"))
_SERIES = select(archive_series).where(_se.series_instance_uid == bindparam("b_uid"))
_INSTANCE_HIERARCHY = (
    select(archive_instances, _st.study_instance_uid, _se.series_instance_uid,
           _p.record_id)
    .join(archive_series, _se.id == _i.series_ref)
    .join(archive_studies, _st.id == _se.study_ref)
    .join(archive_patients, _p.id == _st.patient_ref)
)
_INSTANCE = _INSTANCE_HIERARCHY.where(_i.sop_instance_uid == bindparam("b_uid"))
_INSTANCE_COLUMNS = ("sop_class_uid", "transfer_syntax_uid", "instance_number", "blob_key",
                     "size", "sha256", "received_at", "source")


class SqlArchiveRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    # -- patients as received ------------------------------------------------------------

    def patient(self, identifier: Identifier) -> ArchivedPatient | None:
        row = self._sql.execute(_PATIENT, {"b_authority": identifier.authority,
                                           "b_value": identifier.value}).mappings().first()
        return None if row is None else _patient(row)

    def add_patient(self, patient: ArchivedPatient) -> None:
        patient.id = self._sql.execute(
            insert(archive_patients).returning(_p.id), _patient_row(patient)
        ).scalar_one()

    def save_patient(self, patient: ArchivedPatient) -> None:
        self._sql.execute(update(archive_patients).where(_p.id == patient.id)
                          .values(_patient_row(patient)))

    # -- studies and series --------------------------------------------------------------

    def study(self, study_uid: str) -> StoredStudy | None:
        row = self._sql.execute(_STUDY, {"b_uid": study_uid}).mappings().first()
        return None if row is None else _study(row)

    def add_study(self, study: StoredStudy) -> None:
        study.id = self._sql.execute(
            insert(archive_studies).returning(_st.id), _study_row(study)
        ).scalar_one()

    def save_study(self, study: StoredStudy) -> None:
        self._sql.execute(update(archive_studies).where(_st.id == study.id)
                          .values(_study_row(study)))

    def series(self, series_uid: str) -> StoredSeries | None:
        row = self._sql.execute(_SERIES, {"b_uid": series_uid}).mappings().first()
        if row is None:
            return None
        return StoredSeries(row["series_instance_uid"], row["study_ref"], row["modality"],
                            row["series_number"], row["description"], row["id"])

    def add_series(self, series: StoredSeries) -> None:
        series.id = self._sql.execute(insert(archive_series).returning(_se.id), {
            "series_instance_uid": series.series_instance_uid, "study_ref": series.study_id,
            "modality": series.modality, "series_number": series.series_number,
            "description": series.description,
        }).scalar_one()

    # -- instances -----------------------------------------------------------------------

    def instance(self, sop_uid: str) -> StoredInstance | None:
        row = self._sql.execute(_INSTANCE, {"b_uid": sop_uid}).mappings().first()
        return None if row is None else _instance(row)

    def add_instance(self, instance: StoredInstance) -> None:
        instance.id = self._sql.execute(
            insert(archive_instances).returning(_i.id), _instance_row(instance)
        ).scalar_one()

    def replace_instance(self, previous: StoredInstance, current: StoredInstance,
                         when: datetime) -> None:
        history = _instance_row(previous)
        history["replaced_at"] = when
        self._sql.execute(insert(archive_instance_versions), history)
        self._sql.execute(update(archive_instances).where(_i.id == previous.id)
                          .values(_instance_row(current)))
        current.id = previous.id

    def instance_history(self, sop_uid: str) -> list[StoredInstance]:
        v = archive_instance_versions.c
        rows = self._sql.execute(
            select(archive_instance_versions).where(v.sop_instance_uid == sop_uid)
            .order_by(v.version)
        ).mappings().all()
        return [_instance(row) for row in rows]

    def has_content(self, sha256: str) -> bool:
        return self._sql.execute(
            select(_i.id).where(_i.sha256 == sha256).limit(1)
        ).first() is not None

    def instances(self, study_uid: str | None = None, series_uid: str | None = None,
                  sop_uids: Iterable[str] = (), person_id: int | None = None,
                  limit: int = 100_000) -> list[StoredInstance]:
        statement = _INSTANCE_HIERARCHY
        if study_uid is not None:
            statement = statement.where(_st.study_instance_uid == study_uid)
        if series_uid is not None:
            statement = statement.where(_se.series_instance_uid == series_uid)
        wanted = list(sop_uids)
        if wanted:
            statement = statement.where(_i.sop_instance_uid.in_(wanted))
        if person_id is not None:
            statement = statement.join(links, links.c.record_id == _p.record_id).where(
                links.c.person_id == person_id)
        statement = statement.order_by(_st.study_instance_uid, _se.series_number.nulls_last(),
                                       _se.series_instance_uid,
                                       _i.instance_number.nulls_last(),
                                       _i.sop_instance_uid).limit(limit)
        return [_instance(row) for row in self._sql.execute(statement).mappings()]

    # -- queries -------------------------------------------------------------------------

    def find_studies(self, criteria: StudyFilter) -> list[StudySummary]:
        statement = (
            select(archive_studies, _p.record_id, _p.authority, _p.patient_id.label("pid"),
                   links.c.person_id)
            .join(archive_patients, _p.id == _st.patient_ref)
            .outerjoin(links, links.c.record_id == _p.record_id)
        )
        if criteria.person_ids is not None:
            statement = statement.where(links.c.person_id.in_(list(criteria.person_ids)))
        if criteria.study_uids:
            statement = statement.where(_st.study_instance_uid.in_(list(criteria.study_uids)))
        if criteria.accession_number:
            statement = statement.where(_st.accession_number == criteria.accession_number)
        if criteria.date_from is not None:
            statement = statement.where(_st.study_date >= criteria.date_from)
        if criteria.date_to is not None:
            statement = statement.where(_st.study_date <= criteria.date_to)
        if criteria.modality:
            statement = statement.where(_st.id.in_(
                select(_se.study_ref).where(_se.modality == criteria.modality)))
        # NULLS LAST spelled out: SQLite and PostgreSQL sort NULL at opposite ends, and an
        # undated study is no newer than a dated one.
        statement = statement.order_by(_st.study_date.desc().nulls_last(),
                                       _st.id.desc()).limit(criteria.limit)
        rows = self._sql.execute(statement).mappings().all()
        series = self._series_of([row["id"] for row in rows])
        return [
            StudySummary(
                study_instance_uid=row["study_instance_uid"], record_id=row["record_id"],
                received_as=Identifier(row["authority"], row["pid"]),
                study_date=row["study_date"], study_time=row["study_time"],
                accession_number=row["accession_number"], study_id=row["study_id"],
                description=row["description"], first_received_at=row["first_received_at"],
                last_received_at=row["last_received_at"],
                series=tuple(series.get(row["id"], ())), person_id=row["person_id"],
            )
            for row in rows
        ]

    def _series_of(self, study_ids: list[int]) -> dict[int, list[SeriesSummary]]:
        found: dict[int, list[SeriesSummary]] = {}
        for start in range(0, len(study_ids), 500):
            chunk = study_ids[start:start + 500]
            statement = (
                select(_se.study_ref, _se.series_instance_uid, _se.modality,
                       _se.series_number, _se.description, func.count(_i.id).label("n"))
                .outerjoin(archive_instances, _i.series_ref == _se.id)
                .where(_se.study_ref.in_(chunk))
                .group_by(_se.id, _se.study_ref, _se.series_instance_uid, _se.modality,
                          _se.series_number, _se.description)
                .order_by(_se.series_number.nulls_last(), _se.series_instance_uid)
            )
            for row in self._sql.execute(statement).mappings():
                found.setdefault(row["study_ref"], []).append(SeriesSummary(
                    row["series_instance_uid"], row["modality"], row["series_number"],
                    row["description"], row["n"]))
        return found


def _patient_row(patient: ArchivedPatient) -> dict[str, Any]:
    return {
        "authority": patient.authority, "patient_id": patient.patient_id,
        "record_id": patient.record_id, "family_name": patient.family_name,
        "given_names": list(patient.given_names), "birth_date": patient.birth_date,
        "sex": patient.sex, "last_study_date": patient.last_study_date,
        "first_received_at": patient.first_received_at,
        "last_received_at": patient.last_received_at,
    }


def _patient(row: RowMapping) -> ArchivedPatient:
    return ArchivedPatient(
        authority=row["authority"], patient_id=row["patient_id"], record_id=row["record_id"],
        family_name=row["family_name"], given_names=tuple(row["given_names"] or ()),
        birth_date=row["birth_date"], sex=row["sex"], last_study_date=row["last_study_date"],
        first_received_at=row["first_received_at"], last_received_at=row["last_received_at"],
        id=row["id"],
    )


def _study_row(study: StoredStudy) -> dict[str, Any]:
    return {
        "study_instance_uid": study.study_instance_uid, "patient_ref": study.patient_id,
        "study_date": study.study_date, "study_time": study.study_time,
        "accession_number": study.accession_number, "study_id": study.study_id,
        "description": study.description, "first_received_at": study.first_received_at,
        "last_received_at": study.last_received_at,
    }


def _study(row: RowMapping) -> StoredStudy:
    return StoredStudy(
        study_instance_uid=row["study_instance_uid"], patient_id=row["patient_ref"],
        study_date=row["study_date"], study_time=row["study_time"],
        accession_number=row["accession_number"], study_id=row["study_id"],
        description=row["description"], first_received_at=row["first_received_at"],
        last_received_at=row["last_received_at"], id=row["id"],
    )


def _instance_row(instance: StoredInstance) -> dict[str, Any]:
    row = {name: getattr(instance, name) for name in _INSTANCE_COLUMNS}
    row.update(sop_instance_uid=instance.sop_instance_uid, series_ref=instance.series_id,
               version=instance.version)
    return row


def _instance(row: RowMapping) -> StoredInstance:
    return StoredInstance(
        sop_instance_uid=row["sop_instance_uid"], sop_class_uid=row["sop_class_uid"],
        series_id=row["series_ref"], transfer_syntax_uid=row["transfer_syntax_uid"],
        blob_key=row["blob_key"], size=row["size"], sha256=row["sha256"],
        received_at=row["received_at"], source=row["source"],
        instance_number=row["instance_number"], version=row["version"],
        study_instance_uid=row.get("study_instance_uid"),
        series_instance_uid=row.get("series_instance_uid"), record_id=row.get("record_id"),
        id=row.get("id"),
    )
