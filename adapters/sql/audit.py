"""The access trail on SQL (implements :class:`mpi.ports.AuditTrail` and, inside a unit of
work, :class:`mpi.ports.AuditLog`).

A read or a refusal is written in its own short transaction on the engine, apart from the unit
of work that served the request: reads run in read-only transactions, and a trail entry must
survive a request that failed. A change is written in the transaction of the change (it and
its trail entry commit together). The trail is append-only: nothing here updates or deletes an
entry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select

from adapters.sql.tables import audit_events, audit_persons
from mpi.audit import AuditAction, AuditEvent

__all__ = ["SqlAuditTrail", "SqlAuditLog", "write_events", "PIPELINED_EVENT"]

# One entry and the persons it concerns in one statement (PostgreSQL): sent with the COMMIT of
# its unit of work, in the same round trip (see SqlAuditLog.take_pipelined).
_COLUMNS = ("occurred_at", "channel", "action", "actor", "authority", "source", "subject",
            "outcome", "detail", "roles", "token_id")
PIPELINED_EVENT = (
    f"WITH event AS (INSERT INTO audit_events ({', '.join(_COLUMNS)}) VALUES "
    f"({', '.join(f'%({c})s' for c in _COLUMNS)}) RETURNING id) "
    "INSERT INTO audit_persons (event_id, person_id) "
    "SELECT event.id, person FROM event, unnest(CAST(%(persons)s AS bigint[])) AS person"
)


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "occurred_at": event.occurred_at, "channel": event.channel,
        "action": str(event.action), "actor": event.actor, "authority": event.authority,
        "source": event.source, "subject": event.subject, "outcome": event.outcome,
        "detail": event.detail, "roles": list(event.roles) or None,
        "token_id": event.token_id,
    }


def write_events(connection: Connection, events: list[AuditEvent]) -> None:
    """Insert trail entries (and the persons each concerns) on a connection, in its current
    transaction."""
    for event in events:
        event_id = connection.execute(
            insert(audit_events).returning(audit_events.c.id), _row(event)).scalar_one()
        persons = sorted(set(event.persons))
        if persons:
            connection.execute(
                insert(audit_persons),
                [{"event_id": event_id, "person_id": person} for person in persons],
            )


class SqlAuditLog:
    """Trail entries of a unit of work, written at its commit."""

    def __init__(self) -> None:
        self._events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self._events.append(event)

    def flush(self, connection: Connection) -> None:
        events, self._events = self._events, []
        write_events(connection, events)

    def take_pipelined(self) -> list[tuple[str, dict[str, Any]]]:
        """The entries as statements for PostgreSQL's pipeline (psycopg text and parameters:
        :data:`PIPELINED_EVENT`), taken out of the buffer."""
        from psycopg.types.json import Json

        events, self._events = self._events, []
        statements = []
        for event in events:
            row = _row(event)
            row["occurred_at"] = event.occurred_at.astimezone(UTC)
            row["detail"], row["roles"] = Json(row["detail"]), Json(row["roles"])
            row["persons"] = sorted(set(event.persons))
            statements.append((PIPELINED_EVENT, row))
        return statements

    def discard(self) -> None:
        self._events.clear()


class SqlAuditTrail:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, event: AuditEvent) -> None:
        with self._engine.begin() as connection:
            write_events(connection, [event])

    def search(self, *, person_id: int | None = None, actor: str | None = None,
               limit: int = 100, since: datetime | None = None, until: datetime | None = None,
               offset: int = 0, event_id: int | None = None) -> list[AuditEvent]:
        statement = (select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
                     .offset(offset))
        if event_id is not None:
            statement = statement.where(audit_events.c.id == event_id)
        if since is not None:
            statement = statement.where(audit_events.c.occurred_at >= since)
        if until is not None:
            statement = statement.where(audit_events.c.occurred_at < until)
        if person_id is not None:
            statement = statement.where(audit_events.c.id.in_(
                select(audit_persons.c.event_id).where(audit_persons.c.person_id == person_id)
            ))
        if actor is not None:
            # As recorded (user:jdupont, dicom:CHRU) or the bare name, whatever its kind.
            statement = statement.where(or_(
                audit_events.c.actor == actor,
                audit_events.c.actor.endswith(":" + actor, autoescape=True)))
        with self._engine.connect() as connection:
            rows = connection.execute(statement).all()
            ids = [row.id for row in rows]
            touched: dict[int, list[int]] = {}
            if ids:
                for link in connection.execute(
                    select(audit_persons).where(audit_persons.c.event_id.in_(ids))
                ):
                    touched.setdefault(link.event_id, []).append(link.person_id)
        return [
            AuditEvent(
                occurred_at=row.occurred_at, channel=row.channel,
                action=AuditAction(row.action), actor=row.actor, subject=row.subject,
                outcome=row.outcome, authority=row.authority, source=row.source,
                persons=tuple(sorted(touched.get(row.id, ()))), detail=dict(row.detail or {}),
                roles=tuple(row.roles or ()), token_id=row.token_id, id=row.id,
            )
            for row in rows
        ]
