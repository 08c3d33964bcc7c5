"""The repositories of the SQL unit of work: SQLAlchemy Core statements on one connection.

Every statement goes through :class:`adapters.sql.engine.SqlConnection`, which turns database
errors meaning "another transaction got in the way" into ConcurrencyError. Nothing is cached:
each unit of work reads what it needs.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    distinct,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import RowMapping

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import (
    inbound_messages,
    links,
    notifications,
    outbox_events,
    persons,
    separations,
    source_record_versions,
    source_records,
)
from mpi.errors import ConcurrencyError
from mpi.events import Event, event_payload
from mpi.model import (
    DEMOGRAPHIC_FIELDS,
    Demographics,
    Identifier,
    JournalEntry,
    JournalStatus,
    Link,
    LinkMethod,
    Person,
    PersonStatus,
    RecordStatus,
    SourceRecord,
    person_id_of_master_id,
)
from mpi.normalize import search_key
from mpi.ports import PendingNotification, PersonQuery

__all__ = [
    "SqlJournalRepository",
    "SqlLinkRepository",
    "SqlNotificationRepository",
    "SqlOutbox",
    "SqlPersonRepository",
    "SqlRecordRepository",
    "SqlSeparationRepository",
]

_PENDING = "pending"
_SENT = "sent"


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- records -------------------------------------------------------------------------------


def _key(text: str | None) -> str | None:
    return search_key(text) or None


def _record_values(record: SourceRecord, version: int) -> dict[str, Any]:
    demographics = record.demographics
    values: dict[str, Any] = {name: getattr(demographics, name) for name in DEMOGRAPHIC_FIELDS}
    values["given_names"] = list(demographics.given_names)
    first_given = demographics.given_names[0] if demographics.given_names else None
    values.update(
        authority=record.identifier.authority,
        value=record.identifier.value,
        status=record.status.value,
        retired_into=record.retired_into,
        ins_authority=record.ins.authority if record.ins else None,
        ins_value=record.ins.value if record.ins else None,
        ins_qualified=record.qualified_ins is not None,
        reliability=" ".join(record.reliability),
        birth_name_key=_key(demographics.birth_family_name),
        used_name_key=_key(demographics.used_family_name),
        given_key=_key(first_given),
        city_key=_key(demographics.city),
        last_activity=record.last_activity,
        updated_at=record.updated_at,
        version=version,
    )
    return values


def _record_from_row(row: RowMapping) -> SourceRecord:
    fields = {name: row[name] for name in DEMOGRAPHIC_FIELDS}
    fields["given_names"] = tuple(row["given_names"] or ())
    ins = None
    if row["ins_authority"] is not None and row["ins_value"] is not None:
        ins = Identifier(row["ins_authority"], row["ins_value"])
    return SourceRecord(
        identifier=Identifier(row["authority"], row["value"]),
        demographics=Demographics(**fields),
        ins=ins,
        reliability=tuple(row["reliability"].split()),
        status=RecordStatus(row["status"]),
        retired_into=row["retired_into"],
        last_activity=row["last_activity"],
        updated_at=row["updated_at"],
        version=row["version"],
        id=row["id"],
    )


def _snapshot(record: SourceRecord) -> dict[str, Any]:
    return {
        "identifier": str(record.identifier),
        "status": record.status.value,
        "retired_into": record.retired_into,
        "ins": str(record.ins) if record.ins else None,
        "reliability": list(record.reliability),
        "demographics": record.demographics.as_dict(),
        "last_activity": record.last_activity.isoformat() if record.last_activity else None,
    }


class SqlRecordRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def _many(self, *conditions: ColumnElement[bool]) -> list[SourceRecord]:
        statement = select(source_records).where(*conditions).order_by(source_records.c.id)
        return [_record_from_row(row._mapping) for row in self._sql.execute(statement)]

    def get(self, record_id: int) -> SourceRecord | None:
        found = self._many(source_records.c.id == record_id)
        return found[0] if found else None

    def by_identifier(self, identifier: Identifier) -> SourceRecord | None:
        found = self._many(
            source_records.c.authority == identifier.authority,
            source_records.c.value == identifier.value,
        )
        return found[0] if found else None

    def add(self, record: SourceRecord) -> None:
        """Insert a new record as version 1. Raises ValueError for a record already stored,
        ConcurrencyError when another transaction stored the same identifier first."""
        if record.id is not None:
            raise ValueError(f"record {record.id} is already stored")
        statement = (
            insert(source_records)
            .values(_record_values(record, version=1))
            .returning(source_records.c.id)
        )
        record.id = self._sql.execute(statement).scalar_one()
        record.version = 1
        self._write_version(record)

    def save(self, record: SourceRecord) -> None:
        """Store the next version. Raises ValueError for a record never stored,
        ConcurrencyError when the stored version is no longer the one that was read."""
        if record.id is None:
            raise ValueError("a record must be added before it is saved")
        next_version = record.version + 1
        statement = (
            update(source_records)
            .where(source_records.c.id == record.id, source_records.c.version == record.version)
            .values(_record_values(record, version=next_version))
        )
        if self._sql.execute(statement).rowcount != 1:
            raise ConcurrencyError(
                f"record {record.id} changed since version {record.version} was read"
            )
        record.version = next_version
        self._write_version(record)

    def _write_version(self, record: SourceRecord) -> None:
        # The core stamps updated_at with its clock on every change: the history uses it.
        self._sql.execute(
            insert(source_record_versions).values(
                record_id=record.id,
                version=record.version,
                recorded_at=record.updated_at or utc_now(),
                data=_snapshot(record),
            )
        )

    def with_qualified_ins(self, ins: Identifier) -> list[SourceRecord]:
        return self._many(
            source_records.c.ins_authority == ins.authority,
            source_records.c.ins_value == ins.value,
            source_records.c.ins_qualified == true(),
            source_records.c.status == RecordStatus.ACTIVE.value,
        )

    def retired_into(self, record_id: int) -> list[SourceRecord]:
        return self._many(source_records.c.retired_into == record_id)

    def linked_to(self, person_id: int) -> list[SourceRecord]:
        statement = (
            select(source_records)
            .join(links, links.c.record_id == source_records.c.id)
            .where(links.c.person_id == person_id)
            .order_by(source_records.c.id)
        )
        return [_record_from_row(row._mapping) for row in self._sql.execute(statement)]

    def history(self, record_id: int) -> list[dict[str, object]]:
        statement = (
            select(
                source_record_versions.c.version,
                source_record_versions.c.recorded_at,
                source_record_versions.c.data,
            )
            .where(source_record_versions.c.record_id == record_id)
            .order_by(source_record_versions.c.version)
        )
        return [
            {**row.data, "version": row.version, "recorded_at": row.recorded_at}
            for row in self._sql.execute(statement)
        ]


# -- persons and search --------------------------------------------------------------------


def _person_from_row(row: Any) -> Person:
    return Person(
        status=PersonStatus(row.status),
        merged_into=row.merged_into,
        created_at=row.created_at,
        id=row.id,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text_criterion(value: str | None, *columns: Any) -> ColumnElement[bool] | None:
    """Folded equality with any of the key columns; a trailing ``*`` makes it a prefix.
    None when the value has nothing searchable left (then it is ignored)."""
    if not value:
        return None
    text = value.strip()
    prefix = text.endswith("*")
    key = search_key(text.rstrip("*"))
    if not key:
        return None
    if prefix:
        pattern = _escape_like(key) + "%"
        return or_(*(column.like(pattern, escape="\\") for column in columns))
    return or_(*(column == key for column in columns))


class SqlPersonRepository:
    def __init__(self, sql: SqlConnection, master_authority: str) -> None:
        self._sql = sql
        self._master_authority = master_authority

    def get(self, person_id: int) -> Person | None:
        row = self._sql.execute(select(persons).where(persons.c.id == person_id)).first()
        return None if row is None else _person_from_row(row)

    def add(self, person: Person) -> None:
        """Insert a new person (``created_at`` defaults to now). Raises ValueError for a person
        already stored."""
        if person.id is not None:
            raise ValueError(f"person {person.id} is already stored")
        created_at = person.created_at or utc_now()
        statement = (
            insert(persons)
            .values(
                status=person.status.value, merged_into=person.merged_into, created_at=created_at
            )
            .returning(persons.c.id)
        )
        person.id = self._sql.execute(statement).scalar_one()
        person.created_at = created_at

    def save(self, person: Person) -> None:
        """Raises ValueError for a person never stored."""
        statement = (
            update(persons)
            .where(persons.c.id == person.id)
            .values(status=person.status.value, merged_into=person.merged_into)
        )
        if person.id is None or self._sql.execute(statement).rowcount != 1:
            raise ValueError(f"person {person.id} is not stored")

    def search(self, query: PersonQuery, offset: int, limit: int) -> tuple[list[int], int]:
        criteria = self._criteria(query)
        if not criteria:
            return [], 0
        joined = source_records.join(links, links.c.record_id == source_records.c.id).join(
            persons, persons.c.id == links.c.person_id
        )
        where = and_(
            source_records.c.status == RecordStatus.ACTIVE.value,
            persons.c.status == PersonStatus.ACTIVE.value,
            *criteria,
        )
        total = self._sql.execute(
            select(func.count(distinct(links.c.person_id))).select_from(joined).where(where)
        ).scalar_one()
        if total <= offset or limit <= 0:
            return [], total
        page = (
            select(links.c.person_id)
            .select_from(joined)
            .where(where)
            .distinct()
            .order_by(links.c.person_id)
            .offset(offset)
            .limit(limit)
        )
        return list(self._sql.execute(page).scalars()), total

    def _criteria(self, query: PersonQuery) -> list[ColumnElement[bool]]:
        records = source_records.c
        optional = [
            _text_criterion(query.family, records.birth_name_key, records.used_name_key),
            _text_criterion(query.given, records.given_key),
            _text_criterion(query.city, records.city_key),
        ]
        criteria = [criterion for criterion in optional if criterion is not None]
        if query.birth_date is not None:
            criteria.append(records.birth_date == query.birth_date)
        if query.sex:
            criteria.append(records.sex == query.sex)
        if query.postcode:
            criteria.append(records.postcode == query.postcode.strip())
        if query.identifier is not None:
            criteria.append(self._identifier_criterion(query.identifier))
        return criteria

    def _identifier_criterion(self, identifier: Identifier) -> ColumnElement[bool]:
        records = source_records.c
        options = [
            and_(records.authority == identifier.authority, records.value == identifier.value),
            and_(
                records.ins_authority == identifier.authority,
                records.ins_value == identifier.value,
                records.ins_qualified == true(),
            ),
        ]
        if identifier.authority == self._master_authority:
            person_id = person_id_of_master_id(identifier.value)
            if person_id is not None:
                options.append(links.c.person_id == person_id)
        return or_(*options)


# -- links and separations -----------------------------------------------------------------


def _link_from_row(row: Any) -> Link:
    return Link(
        record_id=row.record_id,
        person_id=row.person_id,
        method=LinkMethod(row.method),
        score=row.score,
        evidence=dict(row.evidence or {}),
        decided_by=row.decided_by,
        decided_at=row.decided_at,
    )


class SqlLinkRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def for_record(self, record_id: int) -> Link | None:
        row = self._sql.execute(select(links).where(links.c.record_id == record_id)).first()
        return None if row is None else _link_from_row(row)

    def save(self, link: Link) -> None:
        """Insert or replace the link of ``link.record_id`` (``decided_at`` defaults to now)."""
        if link.decided_at is None:
            link.decided_at = utc_now()
        changes = {
            "person_id": link.person_id,
            "method": link.method.value,
            "score": link.score,
            "evidence": link.evidence,
            "decided_by": link.decided_by,
            "decided_at": link.decided_at,
        }
        statement = self._sql.insert(links).values(record_id=link.record_id, **changes)
        # One atomic statement: two writers of the same record's link cannot both insert.
        statement = statement.on_conflict_do_update(
            index_elements=[links.c.record_id],
            set_={name: statement.excluded[name] for name in changes},
        )
        self._sql.execute(statement)

    def of_person(self, person_id: int) -> list[Link]:
        statement = select(links).where(links.c.person_id == person_id).order_by(links.c.record_id)
        return [_link_from_row(row) for row in self._sql.execute(statement)]


class SqlSeparationRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def add(self, first: int, second: int, reason: str, decided_by: str) -> None:
        """Declare two records different people; nothing changes when they already are.
        Raises ValueError when both are the same record."""
        if first == second:
            raise ValueError(f"record {first} cannot be separated from itself")
        low, high = sorted((first, second))
        statement = self._sql.insert(separations).values(
            first_record=low,
            second_record=high,
            reason=reason,
            decided_by=decided_by,
            decided_at=utc_now(),
        )
        self._sql.execute(
            statement.on_conflict_do_nothing(
                index_elements=[separations.c.first_record, separations.c.second_record]
            )
        )

    def remove(self, first: int, second: int) -> None:
        low, high = sorted((first, second))
        self._sql.execute(
            delete(separations).where(
                separations.c.first_record == low, separations.c.second_record == high
            )
        )

    def exists_between(self, first_ids: Iterable[int], second_ids: Iterable[int]) -> bool:
        firsts, seconds = sorted(set(first_ids)), sorted(set(second_ids))
        if not firsts or not seconds:
            return False
        column_a, column_b = separations.c.first_record, separations.c.second_record
        statement = (
            select(separations.c.id)
            .where(
                or_(
                    and_(column_a.in_(firsts), column_b.in_(seconds)),
                    and_(column_a.in_(seconds), column_b.in_(firsts)),
                )
            )
            .limit(1)
        )
        return self._sql.execute(statement).first() is not None


# -- outbox and notifications (buffered until commit) --------------------------------------


class SqlOutbox:
    """Events wait in memory and are written by :meth:`flush` (at commit) in one statement."""

    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql
        self._events: list[Event] = []

    def add(self, event: Event) -> None:
        self._events.append(event)

    def flush(self) -> None:
        """Write the buffered events. Raises ConcurrencyError on a conflict."""
        if not self._events:
            return
        now = utc_now()
        rows = [
            {"occurred_at": now, "type": event.name, "payload": event_payload(event)}
            for event in self._events
        ]
        self._sql.execute(insert(outbox_events), rows)
        self._events.clear()

    def discard(self) -> None:
        self._events.clear()


class SqlNotificationRepository:
    """PIX notifications to send, buffered until commit.

    At most one pending row per consumer and person: a change of identifiers joins the pending
    notification (the sender reads the identifiers when it sends). The check is one query at
    flush time rather than a unique index, because a pending row that a worker has claimed is
    already being sent with the identifiers it read: on PostgreSQL the query skips rows locked
    by a worker (SKIP LOCKED) so a new row is written for them, and it locks the rows it joins
    so that no worker sends them before this transaction commits. Two writers may still both
    insert for the same person; a duplicate notification is harmless, a lost one is not.
    """

    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql
        self._due: dict[tuple[str, int], datetime] = {}

    def enqueue(self, consumer: str, person_id: int, due: datetime) -> None:
        key = (consumer, person_id)
        self._due[key] = min(due, self._due.get(key, due))

    def flush(self) -> None:
        """Write the buffered notifications. Raises ConcurrencyError on a conflict."""
        if not self._due:
            return
        table = notifications.c
        statement = select(table.consumer, table.person_id).where(
            table.status == _PENDING,
            table.consumer.in_(sorted({consumer for consumer, _ in self._due})),
            table.person_id.in_(sorted({person for _, person in self._due})),
        )
        if self._sql.is_postgresql:
            statement = statement.with_for_update(skip_locked=True)
        pending = {(row.consumer, row.person_id) for row in self._sql.execute(statement)}
        now = utc_now()
        rows = [
            {
                "consumer": consumer,
                "person_id": person_id,
                "status": _PENDING,
                "attempts": 0,
                "due_at": due,
                "created_at": now,
            }
            for (consumer, person_id), due in sorted(self._due.items())
            if (consumer, person_id) not in pending
        ]
        if rows:
            self._sql.execute(insert(notifications), rows)
        self._due.clear()

    def discard(self) -> None:
        self._due.clear()

    def claim_due(self, consumer: str, now: datetime, limit: int) -> list[PendingNotification]:
        self.flush()
        table = notifications.c
        statement = (
            select(table.id, table.consumer, table.person_id, table.attempts)
            .where(table.consumer == consumer, table.status == _PENDING, table.due_at <= now)
            .order_by(table.due_at, table.id)
            .limit(limit)
        )
        if self._sql.is_postgresql:
            # SQLite has no row locks: its writers are serialized instead (BEGIN IMMEDIATE).
            statement = statement.with_for_update(skip_locked=True)
        return [
            PendingNotification(row.id, row.consumer, row.person_id, row.attempts)
            for row in self._sql.execute(statement)
        ]

    def mark_sent(self, notification_id: int, when: datetime) -> None:
        self._sql.execute(
            update(notifications)
            .where(notifications.c.id == notification_id)
            .values(status=_SENT, sent_at=when)
        )

    def mark_failed(
        self, notification_id: int, attempts: int, retry_at: datetime, error: str
    ) -> None:
        self._sql.execute(
            update(notifications)
            .where(notifications.c.id == notification_id)
            .values(attempts=attempts, due_at=retry_at, last_error=error)
        )

    def pending_count(self, consumer: str) -> int:
        self.flush()
        statement = (
            select(func.count())
            .select_from(notifications)
            .where(notifications.c.consumer == consumer, notifications.c.status == _PENDING)
        )
        return int(self._sql.execute(statement).scalar_one())


# -- journal -------------------------------------------------------------------------------


def _journal_values(entry: JournalEntry) -> dict[str, Any]:
    return {
        "channel": entry.channel,
        "received_at": entry.received_at,
        "sender": entry.sender,
        "control_id": entry.control_id,
        "message_type": entry.message_type,
        "raw": entry.raw,
        "status": entry.status.value,
        "ack_code": entry.ack_code,
        "error_code": entry.error_code,
        "error_text": entry.error_text,
        "reply": entry.reply,
        "replays": entry.replays,
    }


def _journal_from_row(row: Any) -> JournalEntry:
    return JournalEntry(
        channel=row.channel,
        raw=row.raw,
        received_at=row.received_at,
        status=JournalStatus(row.status),
        sender=row.sender,
        control_id=row.control_id,
        message_type=row.message_type,
        ack_code=row.ack_code,
        error_code=row.error_code,
        error_text=row.error_text,
        reply=row.reply,
        replays=row.replays,
        id=row.id,
    )


class SqlJournalRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def find(self, sender: str | None, control_id: str | None) -> JournalEntry | None:
        if sender is None or control_id is None:
            return None  # NULL never equals NULL: such messages cannot be recognized again
        row = self._sql.execute(
            select(inbound_messages).where(
                inbound_messages.c.sender == sender, inbound_messages.c.control_id == control_id
            )
        ).first()
        return None if row is None else _journal_from_row(row)

    def add(self, entry: JournalEntry) -> None:
        """Insert an entry. Raises ValueError for an entry already stored, ConcurrencyError
        when the same sender and control ID were journaled first (the transaction stays
        usable: the insert runs in a SAVEPOINT)."""
        if entry.id is not None:
            raise ValueError(f"journal entry {entry.id} is already stored")
        statement = (
            insert(inbound_messages).values(_journal_values(entry)).returning(inbound_messages.c.id)
        )
        with self._sql.savepoint():
            entry.id = self._sql.execute(statement).scalar_one()

    def save(self, entry: JournalEntry) -> None:
        """Raises ValueError for an entry never stored."""
        statement = (
            update(inbound_messages)
            .where(inbound_messages.c.id == entry.id)
            .values(_journal_values(entry))
        )
        if entry.id is None or self._sql.execute(statement).rowcount != 1:
            raise ValueError(f"journal entry {entry.id} is not stored")

    def get(self, entry_id: int) -> JournalEntry | None:
        row = self._sql.execute(
            select(inbound_messages).where(inbound_messages.c.id == entry_id)
        ).first()
        return None if row is None else _journal_from_row(row)

    def list(
        self, statuses: Iterable[JournalStatus] | None = None, limit: int = 100
    ) -> builtins.list[JournalEntry]:
        statement = select(inbound_messages).order_by(inbound_messages.c.id.desc()).limit(limit)
        if statuses is not None:
            wanted = sorted(JournalStatus(status).value for status in statuses)
            if not wanted:
                return []
            statement = statement.where(inbound_messages.c.status.in_(wanted))
        return [_journal_from_row(row) for row in self._sql.execute(statement)]
