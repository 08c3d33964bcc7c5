"""Links (record → person) and separations (records declared different persons)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import links, separations, utc_now
from mpi.model import Link, LinkMethod

__all__ = ["SqlLinkRepository", "SqlSeparationRepository"]

_FOR_RECORD = select(links).where(links.c.record_id == bindparam("b_id"))
_OF_PERSON = select(links).where(links.c.person_id == bindparam("b_id")).order_by(links.c.record_id)
_CHANGED = ("person_id", "method", "score", "evidence", "decided_by", "decided_at")


def _upsert(insert: Any) -> Any:
    statement = insert(links)
    return statement.on_conflict_do_update(
        index_elements=[links.c.record_id],
        set_={name: statement.excluded[name] for name in _CHANGED},
    )


_UPSERT_POSTGRESQL = _upsert(postgresql.insert)
_UPSERT_SQLITE = _upsert(sqlite.insert)

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
        row = self._sql.execute(_FOR_RECORD, {"b_id": record_id}).first()
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
        # One atomic statement: two writers of the same record's link cannot both insert.
        upsert = _UPSERT_POSTGRESQL if self._sql.is_postgresql else _UPSERT_SQLITE
        self._sql.execute(upsert, {"record_id": link.record_id, **changes})

    def of_person(self, person_id: int) -> list[Link]:
        return [_link_from_row(row) for row in self._sql.execute(_OF_PERSON, {"b_id": person_id})]


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


