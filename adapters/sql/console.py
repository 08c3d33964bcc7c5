"""The console's read-only aggregations over the index's tables (counts by establishment and
month, the review queue's filters, the interfaces' traffic): what no use case of the core
computes, answered by one SQL query each so that a page stays fast on a large index."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.engine import Engine

from adapters.sql.tables import (
    archive_patients,
    archive_reassignments,
    archive_studies,
    audit_events,
    inbound_messages,
    links,
    review_tasks,
    source_records,
)

__all__ = ["ConsoleQueries"]

_t, _r = review_tasks.c, source_records.c


def _month(engine: Engine, column: Any) -> ColumnElement[str]:
    if engine.dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


def review_queue(engine: Engine, now: datetime, establishment: str | None,
                 min_age_days: int | None, band: tuple[float | None, float | None],
                 offset: int, limit: int) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """One page of open tasks (oldest first; of an establishment, at least so many days old,
    scored within ``band``, each bound optional) with their record's establishment, the total
    matching the filter, and the tasks matching the age and band by establishment (the
    filter's counts)."""
    conditions: list[ColumnElement[bool]] = [_t.status == "open"]
    if min_age_days:
        conditions.append(_t.created_at <= now - timedelta(days=min_age_days))
    low, high = band
    if low is not None:
        conditions.append(_t.score >= low)
    if high is not None:
        conditions.append(_t.score < high)
    joined = review_tasks.join(source_records, _r.id == _t.record_id)
    page = and_(*conditions, *([_r.authority == establishment] if establishment else []))
    with engine.connect() as connection:
        rows = connection.execute(
            select(_t.id, _t.kind, _t.score, _t.created_at, _t.person_id, _r.authority,
                   _r.value, _r.birth_family_name, _r.given_names, _r.birth_date)
            .select_from(joined).where(page).order_by(_t.created_at, _t.id)
            .offset(offset).limit(limit)).mappings().all()
        # One grouped query gives the counts by establishment and the total.
        counts = {str(a): int(n) for a, n in connection.execute(
            select(_r.authority, func.count()).select_from(joined)
            .where(and_(*conditions)).group_by(_r.authority))}
    total = counts.get(establishment, 0) if establishment else sum(counts.values())
    return [dict(row) for row in rows], total, counts


def person_tasks(engine: Engine, person_id: int, record_ids: list[int]) -> list[dict[str, Any]]:
    """The decided review tasks about a person or its records, newest first."""
    concerned = _t.person_id == person_id
    if record_ids:
        concerned = concerned | _t.record_id.in_(record_ids)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(
            select(review_tasks).where(concerned).order_by(_t.id.desc()).limit(200)
        ).mappings()]


def reassignments(engine: Engine, record_ids: list[int]) -> list[dict[str, Any]]:
    """Studies moved to or from these records' patients (who, when, why), newest first."""
    if not record_ids:
        return []
    a, source, target = archive_reassignments.c, archive_patients.alias("source"), \
        archive_patients.alias("target")
    statement = (
        select(archive_studies.c.study_instance_uid, a.reassigned_by, a.reason, a.reassigned_at,
               source.c.authority.label("from_authority"),
               source.c.patient_id.label("from_patient"),
               target.c.authority.label("to_authority"), target.c.patient_id.label("to_patient"))
        .select_from(archive_reassignments
                     .join(archive_studies, archive_studies.c.id == a.study_ref)
                     .join(source, source.c.id == a.from_patient_ref)
                     .join(target, target.c.id == a.to_patient_ref))
        .where(source.c.record_id.in_(record_ids) | target.c.record_id.in_(record_ids))
        .order_by(a.id.desc()).limit(200))
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(statement).mappings()]


def indicators(engine: Engine, now: datetime, months: int = 12) -> dict[str, Any]:
    """Identity-vigilance figures by establishment and month over the last ``months``."""
    since = now - timedelta(days=31 * months)
    joined = review_tasks.join(source_records, _r.id == _t.record_id)
    created_month = _month(engine, _t.created_at)
    decided_month = _month(engine, _t.decided_at)
    link_month = _month(engine, links.c.decided_at)
    table: dict[tuple[str, str], dict[str, int]] = {}

    def cell(authority: str, month: str) -> dict[str, int]:
        return table.setdefault((authority, month), {"created": 0, "resolved": 0, "auto": 0})

    with engine.connect() as connection:
        for authority, month, n in connection.execute(
                select(_r.authority, created_month, func.count()).select_from(joined)
                .where(_t.created_at >= since, _t.kind != "collision")
                .group_by(_r.authority, created_month)):
            cell(authority, month)["created"] = int(n)
        for authority, month, n in connection.execute(
                select(_r.authority, decided_month, func.count()).select_from(joined)
                .where(_t.decided_at >= since, _t.status == "decided",
                       _t.kind != "collision")
                .group_by(_r.authority, decided_month)):
            cell(authority, month)["resolved"] = int(n)
        for authority, month, n in connection.execute(
                select(_r.authority, link_month, func.count())
                .select_from(links.join(source_records, _r.id == links.c.record_id))
                .where(links.c.decided_at >= since, links.c.method == "auto")
                .group_by(_r.authority, link_month)):
            cell(authority, month)["auto"] = int(n)
        establishments: dict[str, dict[str, Any]] = {}
        for authority, total, qualified in connection.execute(
                select(_r.authority, func.count(),
                       func.sum(case((_r.ins_qualified.is_(True), 1), else_=0)))
                .where(_r.status == "active").group_by(_r.authority)):
            establishments[authority] = {"records": int(total),
                                         "ins_rate": (int(qualified or 0) / int(total))
                                         if total else 0.0,
                                         "queue": 0, "oldest": None, "collisions": 0}
        for authority, kind, n, oldest in connection.execute(
                select(_r.authority, _t.kind, func.count(), func.min(_t.created_at))
                .select_from(joined).where(_t.status == "open")
                .group_by(_r.authority, _t.kind)):
            entry = establishments.setdefault(authority, {
                "records": 0, "ins_rate": 0.0, "queue": 0, "oldest": None, "collisions": 0})
            entry["queue"] += int(n)
            if kind == "collision":
                entry["collisions"] += int(n)
            if oldest is not None:
                age = (now - _aware(oldest)).days
                entry["oldest"] = max(entry["oldest"] or 0, age)
    rows = [{"establishment": a, "month": m, **v} for (a, m), v in sorted(table.items())]
    return {"months": rows, "establishments": establishments}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def score_sample(engine: Engine, limit: int = 2000) -> list[float]:
    """The probabilities of the most recent scored decisions: automatic links and review
    tasks (what the matcher weighed), newest first."""
    with engine.connect() as connection:
        linked = [float(s) for (s,) in connection.execute(
            select(links.c.score).where(links.c.score.is_not(None))
            .order_by(links.c.decided_at.desc()).limit(limit))]
        reviewed = [float(s) for (s,) in connection.execute(
            select(_t.score).where(_t.score.is_not(None))
            .order_by(_t.created_at.desc()).limit(limit))]
    return (linked + reviewed)[:limit * 2]


def traffic(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Messages by sender, event and outcome: HL7 v2 from the journal, DICOM and FHIR from
    the access trail (the AE title or the client named as actor)."""
    m = inbound_messages.c
    a = audit_events.c
    with engine.connect() as connection:
        hl7 = [dict(row) for row in connection.execute(
            select(m.sender, m.message_type, m.status, func.count().label("count"))
            .group_by(m.sender, m.message_type, m.status)
            .order_by(m.sender, m.message_type, m.status)).mappings()]
        others = [dict(row) for row in connection.execute(
            select(a.channel, a.actor, a.action, a.outcome, func.count().label("count"))
            .where(a.channel.in_(("dicom", "dicomweb", "fhir")))
            .group_by(a.channel, a.actor, a.action, a.outcome)
            .order_by(a.channel, a.actor, a.action, a.outcome)).mappings()]
    return {"hl7": hl7, "dicom": [r for r in others if r["channel"] in ("dicom", "dicomweb")],
            "fhir": [r for r in others if r["channel"] == "fhir"]}


def journal_sample(engine: Engine, per_sender: int) -> dict[str, list[tuple[int, str]]]:
    """The latest journaled HL7 v2 messages of each sender (id, raw), ``per_sender`` each."""
    m = inbound_messages.c
    found: dict[str, list[tuple[int, str]]] = {}
    with engine.connect() as connection:
        senders = [s for (s,) in connection.execute(
            select(m.sender).where(m.sender.is_not(None)).distinct())]
        for sender in senders:
            found[sender] = [(int(i), str(raw)) for i, raw in connection.execute(
                select(m.id, m.raw).where(m.sender == sender).order_by(m.id.desc())
                .limit(per_sender))]
    return found


class ConsoleQueries:
    """The console's aggregations on one database (what the container hands the console).
    The indicators, monthly figures over the whole index, are computed at most once every
    ``indicators_ttl`` seconds (the page says when)."""

    def __init__(self, engine: Engine, indicators_ttl: float = 60.0) -> None:
        self.engine = engine
        self.indicators_ttl = indicators_ttl
        self._indicators: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def review_queue(self, now: datetime, establishment: str | None, min_age_days: int | None,
                     band: tuple[float | None, float | None], offset: int,
                     limit: int) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
        return review_queue(self.engine, now, establishment, min_age_days, band, offset, limit)

    def person_tasks(self, person_id: int, record_ids: list[int]) -> list[dict[str, Any]]:
        return person_tasks(self.engine, person_id, record_ids)

    def reassignments(self, record_ids: list[int]) -> list[dict[str, Any]]:
        return reassignments(self.engine, record_ids)

    def indicators(self, now: datetime, months: int = 12) -> dict[str, Any]:
        """The figures of :func:`indicators`, with ``computed_at``: computed again when the
        last ones are older than the time to live."""
        with self._lock:
            kept = self._indicators
            if kept is not None and time.monotonic() - kept[0] < self.indicators_ttl:
                return kept[1]
            figures = {**indicators(self.engine, now, months), "computed_at": now}
            self._indicators = (time.monotonic(), figures)
            return figures

    def score_sample(self, limit: int = 2000) -> list[float]:
        return score_sample(self.engine, limit)

    def traffic(self) -> dict[str, list[dict[str, Any]]]:
        return traffic(self.engine)

    def journal_sample(self, per_sender: int) -> dict[str, list[tuple[int, str]]]:
        return journal_sample(self.engine, per_sender)
