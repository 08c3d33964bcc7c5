"""The inbound message journal, the event outbox and the PIX notifications to deliver."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import inbound_messages, notifications, outbox_events, utc_now
from mpi.errors import ConcurrencyError
from mpi.events import Event, StoredEvent, UnreadableEvent, event_from_payload, event_payload
from mpi.model import JournalEntry, JournalStatus
from mpi.ports import PendingNotification

__all__ = ["SqlJournalRepository", "SqlNotificationRepository", "SqlOutbox"]

_PENDING = "pending"
_SENT = "sent"


def _journal_insert(insert: Any) -> Any:
    return (
        insert(inbound_messages)
        .on_conflict_do_nothing(
            index_elements=[inbound_messages.c.sender, inbound_messages.c.control_id]
        )
        .returning(inbound_messages.c.id)
    )


_INSERT_POSTGRESQL = _journal_insert(postgresql.insert)
_INSERT_SQLITE = _journal_insert(sqlite.insert)

class SqlOutbox:
    """Events wait in memory and are written by the unit of work at commit, in one statement
    (see :meth:`take_pending`); the dispatcher reads them back with :meth:`claim`."""

    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql
        self._events: list[Event] = []

    def add(self, event: Event) -> None:
        self._events.append(event)

    def added(self) -> builtins.list[Event]:
        return list(self._events)

    def take_pending(self) -> tuple[Table, list[dict[str, Any]]]:
        """The buffered events as rows, for the unit of work to write at commit."""
        now = utc_now()
        rows = [
            {"occurred_at": now, "type": event.name, "payload": event_payload(event),
             "attempts": 0}
            for event in self._events
        ]
        self._events.clear()
        return outbox_events, rows

    def discard(self) -> None:
        self._events.clear()

    def claim(self, now: datetime, limit: int) -> builtins.list[StoredEvent]:
        """Raises ValueError for a row whose type or payload is not an event this code knows
        (a row written by a newer version): the caller marks it failed."""
        table = outbox_events.c
        statement = (
            select(table.id, table.type, table.payload, table.occurred_at, table.attempts)
            .where(table.processed_at.is_(None),
                   or_(table.due_at.is_(None), table.due_at <= now))
            .order_by(table.id)
            .limit(limit)
        )
        if self._sql.is_postgresql:
            # SQLite has no row locks: its writers are serialized instead (BEGIN IMMEDIATE).
            statement = statement.with_for_update(skip_locked=True)
        claimed = []
        for row in self._sql.execute(statement):
            try:
                event = event_from_payload(row.type, row.payload)
            except (KeyError, ValueError, TypeError) as exc:
                event = UnreadableEvent(row.type, str(exc))
            claimed.append(StoredEvent(row.id, event, row.occurred_at, row.attempts))
        return claimed

    def mark_processed(self, event_ids: Iterable[int], when: datetime) -> None:
        wanted = sorted(set(event_ids))
        if wanted:
            self._sql.execute(
                update(outbox_events).where(outbox_events.c.id.in_(wanted))
                .values(processed_at=when, last_error=None)
            )

    def mark_failed(self, event_id: int, attempts: int, retry_at: datetime,
                    error: str) -> None:
        self._sql.execute(
            update(outbox_events).where(outbox_events.c.id == event_id)
            .values(attempts=attempts, due_at=retry_at, last_error=error[:2000])
        )

    def pending_count(self) -> int:
        statement = select(func.count()).select_from(outbox_events).where(
            outbox_events.c.processed_at.is_(None))
        return int(self._sql.execute(statement).scalar_one())


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
        usable)."""
        if entry.id is not None:
            raise ValueError(f"journal entry {entry.id} is already stored")
        insert = _INSERT_POSTGRESQL if self._sql.is_postgresql else _INSERT_SQLITE
        # ON CONFLICT DO NOTHING leaves the transaction usable without a savepoint.
        entry_id = self._sql.execute(insert, _journal_values(entry)).scalar_one_or_none()
        if entry_id is None:
            raise ConcurrencyError(
                f"message {entry.control_id} from {entry.sender} was journaled already"
            )
        entry.id = entry_id

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
