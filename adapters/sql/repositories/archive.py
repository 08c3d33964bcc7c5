"""The archive index on SQL (implements :class:`mpi.ports.ArchiveRepository`).

The person of a study is read through the link of the record its patient as received
designates: ``studies → archive_patients → links``. Identity changes rewrite links, never
these rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import (
    archive_blob_deletions,
    archive_instance_versions,
    archive_instances,
    archive_patients,
    archive_reassignments,
    archive_retention,
    archive_series,
    archive_studies,
    links,
    persons,
    source_records,
)
from mpi.archive import (
    ArchivedPatient,
    CompressionCriteria,
    NewContent,
    PendingDeletion,
    Reassignment,
    RecordDates,
    Retention,
    RetentionRow,
    SeriesSummary,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    StudyFacts,
    StudyFilter,
    StudySummary,
)
from mpi.model import Identifier

__all__ = ["SqlArchiveRepository"]

_p, _st, _se, _i = archive_patients.c, archive_studies.c, archive_series.c, archive_instances.c

# Which records of a batch a retention recomputation concerns (built once: the outbox calls it
# for every identity event, and most records of a feed have neither studies nor merges).
_merged_in = source_records.alias("merged_in")
_RETENTION_CONCERNED = select(source_records.c.id).where(
    source_records.c.id.in_(bindparam("ids", expanding=True)),
    or_(source_records.c.retired_into.is_not(None),
        exists().where(_p.record_id == source_records.c.id),
        exists().where(_merged_in.c.retired_into == source_records.c.id)))

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
# The columns of the current content only (not kept in the history of versions).
_CONTENT_STATE = {"original_sha256": None, "pixel_sha256": None, "compressed_at": None,
                  "compression_error": None, "compression_failed_at": None,
                  "fixity_checked_at": None, "fixity_failed_at": None}
_r, _d = archive_retention.c, archive_blob_deletions.c
def _sizes(*where: Any) -> Any:
    """Instances and bytes per study (current versions), of the studies ``where`` selects
    (every study without it: a filtered one never aggregates the whole archive)."""
    return (select(_se.study_ref.label("study_ref"), func.count(_i.id).label("instances"),
                   func.coalesce(func.sum(_i.size), 0).label("size_bytes"))
            .join(archive_instances, _i.series_ref == _se.id)
            .where(*where).group_by(_se.study_ref).subquery())


_SIZES = _sizes()


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
                          .values({**_instance_row(current), **_CONTENT_STATE}))
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


    # -- retention -----------------------------------------------------------------------

    def retention_facts(self, record_ids: Iterable[int]) -> list[StudyFacts]:
        wanted = sorted(set(record_ids))
        found: list[StudyFacts] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            sizes = _sizes(_se.study_ref.in_(
                select(_st.id).join(archive_patients, _p.id == _st.patient_ref)
                .where(_p.record_id.in_(chunk))))
            statement = (
                select(_st.id, _st.study_instance_uid, _st.study_date, _st.first_received_at,
                       _st.last_received_at, _p.record_id, _p.authority, _p.patient_id,
                       _p.birth_date, func.coalesce(sizes.c.size_bytes, 0).label("size"),
                       func.coalesce(sizes.c.instances, 0).label("n"))
                .join(archive_patients, _p.id == _st.patient_ref)
                .outerjoin(sizes, sizes.c.study_ref == _st.id)
                .where(_p.record_id.in_(chunk))
            )
            for row in self._sql.execute(statement).mappings():
                found.append(StudyFacts(
                    row["id"], row["study_instance_uid"], row["record_id"], row["authority"],
                    row["patient_id"], row["birth_date"], row["study_date"],
                    row["first_received_at"], row["last_received_at"], int(row["size"]),
                    int(row["n"])))
        return sorted(found, key=lambda f: f.study_id)

    def retention_concerned(self, record_ids: Iterable[int]) -> set[int]:
        wanted = sorted(set(record_ids))
        found: set[int] = set()
        for start in range(0, len(wanted), 500):
            found.update(self._sql.execute(
                _RETENTION_CONCERNED, {"ids": wanted[start:start + 500]}).scalars())
        return found

    def retention_dates(self, record_ids: Iterable[int]) -> list[RecordDates]:
        wanted = sorted(set(record_ids))
        r, link, person = source_records.c, links.c, persons.c
        child = source_records.alias("child")
        found: list[RecordDates] = []
        for start in range(0, len(wanted), 500):
            rows = self._sql.execute(
                select(r.id, r.retired_into, r.last_activity, r.birth_date, r.death_date,
                       exists().where(child.c.retired_into == r.id).label("has_retired"),
                       link.person_id, person.status.label("person_status"))
                .outerjoin(links, link.record_id == r.id)
                .outerjoin(persons, person.id == link.person_id)
                .where(r.id.in_(wanted[start:start + 500])).order_by(r.id)).mappings().all()
            # The earliest death among each person's active records, in a second query
            # (grouped, from the persons' links: no subquery per record to plan badly).
            person_ids = sorted({row["person_id"] for row in rows if row["person_id"]})
            deaths: dict[int, date] = {}
            if person_ids:
                for death in self._sql.execute(
                        select(link.person_id.label("person"),
                               func.min(r.death_date).label("death"))
                        .join(source_records, r.id == link.record_id)
                        .where(link.person_id.in_(person_ids), r.status == "active",
                               r.death_date.is_not(None))
                        .group_by(link.person_id)).mappings():
                    deaths[death["person"]] = death["death"]
            for row in rows:
                status = row["person_status"]
                found.append(RecordDates(
                    row["id"], row["retired_into"], bool(row["has_retired"]),
                    row["last_activity"], row["birth_date"], row["death_date"],
                    None if status is None else status == "active",
                    deaths.get(row["person_id"])))
        return found

    def archived_record_ids(self, after: int, limit: int) -> list[int]:
        return list(self._sql.execute(
            select(_p.record_id).where(_p.record_id > after).distinct()
            .order_by(_p.record_id).limit(limit)).scalars())

    def save_retention(self, rows: Iterable[Retention]) -> None:
        values = {r.study_id: {"study_ref": r.study_id, "establishment": r.establishment,
                               "expires_on": r.expires_on, "basis": r.basis,
                               "last_visit": r.last_visit, "computed_at": r.computed_at}
                  for r in rows}
        if not values:
            return
        ids = sorted(values)
        for start in range(0, len(ids), 500):
            self._sql.execute(delete(archive_retention).where(
                _r.study_ref.in_(ids[start:start + 500])))
        self._sql.execute(insert(archive_retention), [values[i] for i in ids])

    def retention_report(self, establishment: str | None = None,
                         expiring_by: date | None = None, study_uids: Iterable[str] = (),
                         limit: int = 1_000_000) -> list[RetentionRow]:
        statement = (
            select(_st.study_instance_uid, _st.study_date, _p.authority, _p.patient_id,
                   _r.expires_on, _r.basis, _r.last_visit, links.c.person_id,
                   func.coalesce(_SIZES.c.size_bytes, 0).label("size"),
                   func.coalesce(_SIZES.c.instances, 0).label("n"))
            .join(archive_patients, _p.id == _st.patient_ref)
            .outerjoin(archive_retention, _r.study_ref == _st.id)
            .outerjoin(_SIZES, _SIZES.c.study_ref == _st.id)
            .outerjoin(links, links.c.record_id == _p.record_id)
        )
        if establishment is not None:
            statement = statement.where(_p.authority == establishment)
        if expiring_by is not None:
            statement = statement.where(_r.expires_on <= expiring_by)
        wanted = list(study_uids)
        if wanted:
            statement = statement.where(_st.study_instance_uid.in_(wanted))
        statement = statement.order_by(_r.expires_on.asc().nulls_last(),
                                       _st.study_instance_uid).limit(limit)
        return [RetentionRow(
            study_instance_uid=row["study_instance_uid"], establishment=row["authority"],
            patient=row["patient_id"], expires_on=row["expires_on"], basis=row["basis"],
            last_visit=row["last_visit"], study_date=row["study_date"],
            size_bytes=int(row["size"]), instances=int(row["n"]), person_id=row["person_id"],
        ) for row in self._sql.execute(statement).mappings()]

    def uncomputed_record_ids(self, establishment: str | None = None) -> list[int]:
        statement = (select(_p.record_id).distinct()
                     .join(archive_studies, _st.patient_ref == _p.id)
                     .outerjoin(archive_retention, _r.study_ref == _st.id)
                     .where(_r.study_ref.is_(None)).order_by(_p.record_id))
        if establishment is not None:
            statement = statement.where(_p.authority == establishment)
        return list(self._sql.execute(statement).scalars())

    # -- destruction ---------------------------------------------------------------------

    def instance_files(self, study_uid: str) -> list[StoredInstance]:
        current = self.instances(study_uid=study_uid)
        v = archive_instance_versions.c
        earlier = self._sql.execute(
            select(archive_instance_versions, _se.series_instance_uid)
            .join(archive_series, _se.id == v.series_ref)
            .join(archive_studies, _st.id == _se.study_ref)
            .where(_st.study_instance_uid == study_uid)).mappings().all()
        files = current + [_instance(row) for row in earlier]
        return sorted(files, key=lambda f: (f.sop_instance_uid, f.version))

    def delete_study(self, study_uid: str) -> None:
        study_id = self._sql.execute(
            select(_st.id).where(_st.study_instance_uid == study_uid)).scalar()
        if study_id is None:
            return
        series_ids = select(_se.id).where(_se.study_ref == study_id)
        v = archive_instance_versions.c
        self._sql.execute(delete(archive_instance_versions).where(v.series_ref.in_(series_ids)))
        self._sql.execute(delete(archive_instances).where(_i.series_ref.in_(series_ids)))
        self._sql.execute(delete(archive_series).where(_se.study_ref == study_id))
        self._sql.execute(delete(archive_retention).where(_r.study_ref == study_id))
        self._sql.execute(delete(archive_reassignments).where(
            archive_reassignments.c.study_ref == study_id))
        self._sql.execute(delete(archive_studies).where(_st.id == study_id))

    def queue_blob_deletions(self, keys: Iterable[str], reason: str, when: datetime) -> None:
        rows = [{"blob_key": key, "reason": reason, "queued_at": when} for key in keys]
        if rows:
            self._sql.execute(insert(archive_blob_deletions), rows)

    def pending_deletions(self, limit: int) -> list[PendingDeletion]:
        rows = self._sql.execute(select(archive_blob_deletions).order_by(_d.id).limit(limit))
        return [PendingDeletion(r.id, r.blob_key, r.reason) for r in rows]

    def forget_deletions(self, ids: Iterable[int]) -> None:
        wanted = list(ids)
        if wanted:
            self._sql.execute(delete(archive_blob_deletions).where(_d.id.in_(wanted)))

    def blob_in_use(self, key: str) -> bool:
        v = archive_instance_versions.c
        return (self._sql.execute(select(_i.id).where(_i.blob_key == key).limit(1)).first()
                is not None or self._sql.execute(
                    select(v.id).where(v.blob_key == key).limit(1)).first() is not None)

    # -- compression and fixity ----------------------------------------------------------

    def _due(self, criteria: CompressionCriteria) -> Any:
        statement = (_INSTANCE_HIERARCHY
                     .where(_i.received_at < criteria.received_before,
                            _i.transfer_syntax_uid.in_(list(criteria.from_syntaxes)),
                            _i.compression_failed_at.is_(None)))
        if criteria.modalities:
            statement = statement.where(_se.modality.in_(list(criteria.modalities)))
        if criteria.sop_classes:
            statement = statement.where(_i.sop_class_uid.in_(list(criteria.sop_classes)))
        return statement

    def compression_candidates(self, criteria: CompressionCriteria,
                               limit: int) -> list[StoredInstance]:
        statement = self._due(criteria).order_by(_i.received_at, _i.id).limit(limit)
        return [_instance(row) for row in self._sql.execute(statement).mappings()]

    def compression_backlog(self, criteria: CompressionCriteria) -> tuple[int, int]:
        due = self._due(criteria).subquery()
        row = self._sql.execute(
            select(func.count().label("n"),
                   func.coalesce(func.sum(due.c.size), 0).label("bytes")).select_from(due)
        ).mappings().one()
        return int(row["n"]), int(row["bytes"])

    def switch_content(self, sop_uid: str, expected_sha256: str, new: NewContent) -> bool:
        result = self._sql.execute(
            update(archive_instances)
            .where(_i.sop_instance_uid == sop_uid, _i.sha256 == expected_sha256)
            .values(blob_key=new.blob_key, transfer_syntax_uid=new.transfer_syntax_uid,
                    size=new.size, sha256=new.sha256, original_sha256=new.original_sha256,
                    pixel_sha256=new.pixel_sha256, compressed_at=new.compressed_at,
                    fixity_checked_at=None, fixity_failed_at=None))
        return bool(result.rowcount == 1)

    def mark_compression_failed(self, sop_uid: str, reason: str, when: datetime) -> None:
        self._sql.execute(update(archive_instances).where(_i.sop_instance_uid == sop_uid)
                          .values(compression_error=reason[:2000], compression_failed_at=when))

    def compression_failures(self) -> list[tuple[str, str, datetime]]:
        rows = self._sql.execute(
            select(_i.sop_instance_uid, _i.compression_error, _i.compression_failed_at)
            .where(_i.compression_failed_at.is_not(None)).order_by(_i.sop_instance_uid))
        return [(r.sop_instance_uid, r.compression_error or "", r.compression_failed_at)
                for r in rows]

    def fixity_due(self, limit: int) -> list[StoredInstance]:
        statement = _INSTANCE_HIERARCHY.order_by(_i.fixity_checked_at.asc().nulls_first(),
                                                 _i.id).limit(limit)
        return [_instance(row) for row in self._sql.execute(statement).mappings()]

    def record_fixity(self, checked: Iterable[str], failed: Iterable[str],
                      when: datetime) -> None:
        bad = set(failed)
        good = [uid for uid in set(checked) if uid not in bad]
        for uids, flag in ((sorted(good), None), (sorted(bad), when)):
            for start in range(0, len(uids), 500):
                self._sql.execute(update(archive_instances)
                                  .where(_i.sop_instance_uid.in_(uids[start:start + 500]))
                                  .values(fixity_checked_at=when, fixity_failed_at=flag))

    def fixity_failures(self) -> list[StoredInstance]:
        statement = _INSTANCE_HIERARCHY.where(_i.fixity_failed_at.is_not(None)).order_by(
            _i.sop_instance_uid)
        return [_instance(row) for row in self._sql.execute(statement).mappings()]

    # -- corrections ---------------------------------------------------------------------

    def move_study(self, study_uid: str, to_patient_id: int) -> None:
        self._sql.execute(update(archive_studies).where(_st.study_instance_uid == study_uid)
                          .values(patient_ref=to_patient_id))

    def add_reassignment(self, reassignment: Reassignment) -> None:
        study_id = self._sql.execute(select(_st.id).where(
            _st.study_instance_uid == reassignment.study_instance_uid)).scalar_one()
        refs = {}
        for name, who in (("from", reassignment.from_patient), ("to", reassignment.to_patient)):
            refs[name] = self._sql.execute(select(_p.id).where(
                _p.authority == who.authority, _p.patient_id == who.value)).scalar_one()
        self._sql.execute(insert(archive_reassignments), {
            "study_ref": study_id, "from_patient_ref": refs["from"],
            "to_patient_ref": refs["to"], "reassigned_by": reassignment.by,
            "reason": reassignment.reason, "reassigned_at": reassignment.at})

    def reassignments(self, study_uid: str) -> list[Reassignment]:
        a = archive_reassignments.c
        source, target = archive_patients.alias("source"), archive_patients.alias("target")
        rows = self._sql.execute(
            select(a.id, a.reassigned_by, a.reason, a.reassigned_at,
                   source.c.authority.label("fa"), source.c.patient_id.label("fp"),
                   target.c.authority.label("ta"), target.c.patient_id.label("tp"))
            .join(archive_studies, _st.id == a.study_ref)
            .join(source, source.c.id == a.from_patient_ref)
            .join(target, target.c.id == a.to_patient_ref)
            .where(_st.study_instance_uid == study_uid).order_by(a.id)).mappings()
        return [Reassignment(study_uid, Identifier(r["fa"], r["fp"]),
                             Identifier(r["ta"], r["tp"]), r["reassigned_by"], r["reason"],
                             r["reassigned_at"], r["id"]) for r in rows]


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
        original_sha256=row.get("original_sha256"), pixel_sha256=row.get("pixel_sha256"),
        fixity_failed_at=row.get("fixity_failed_at"),
        study_instance_uid=row.get("study_instance_uid"),
        series_instance_uid=row.get("series_instance_uid"), record_id=row.get("record_id"),
        id=row.get("id"),
    )
