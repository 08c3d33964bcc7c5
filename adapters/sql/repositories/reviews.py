"""Review tasks (potential duplicates for identity vigilance) and matching model versions."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import match_models, review_tasks, utc_now
from mpi.model import ReviewDecision, ReviewKind, ReviewStatus, ReviewTask

__all__ = ["SqlReviewRepository", "SqlModelRepository"]

_t = review_tasks.c
_INSERT = insert(review_tasks).returning(_t.id)
_BY_ID = select(review_tasks).where(_t.id == bindparam("b_id"))
_OPEN_FOR_RECORD = (
    select(review_tasks)
    .where(_t.record_id == bindparam("b_record"), _t.status == ReviewStatus.OPEN.value)
    .order_by(_t.id)
)
_UPDATE = update(review_tasks).where(_t.id == bindparam("b_id"))


def _values(task: ReviewTask) -> dict[str, Any]:
    return {
        "record_id": task.record_id,
        "person_id": task.person_id,
        "candidate_record_id": task.candidate_record_id,
        "score": task.score,
        "evidence": task.evidence,
        "status": task.status.value,
        "created_at": task.created_at or utc_now(),
        "decided_at": task.decided_at,
        "decided_by": task.decided_by,
        "decision": task.decision.value if task.decision else None,
        "reason": task.reason,
        "kind": task.kind.value,
    }


def _task(row: Any) -> ReviewTask:
    return ReviewTask(
        record_id=row.record_id,
        person_id=row.person_id,
        candidate_record_id=row.candidate_record_id,
        score=row.score,
        evidence=dict(row.evidence or {}),
        status=ReviewStatus(row.status),
        created_at=row.created_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        decision=ReviewDecision(row.decision) if row.decision else None,
        reason=row.reason,
        kind=ReviewKind(row.kind),
        id=row.id,
    )


class SqlReviewRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def add(self, task: ReviewTask) -> None:
        """Insert a task, unless an open one of the same kind for the same record and person
        exists (then ``task`` takes that one's id)."""
        for existing in self.open_for_record(task.record_id):
            if existing.person_id == task.person_id and existing.kind is task.kind:
                task.id = existing.id
                return
        task.created_at = task.created_at or utc_now()
        task.id = self._sql.execute(_INSERT, _values(task)).scalar_one()

    def get(self, task_id: int) -> ReviewTask | None:
        row = self._sql.execute(_BY_ID, {"b_id": task_id}).first()
        return None if row is None else _task(row)

    def save(self, task: ReviewTask) -> None:
        """Raises ValueError for a task never stored."""
        if task.id is None:
            raise ValueError("a review task must be added before it is saved")
        if self._sql.execute(_UPDATE, {"b_id": task.id, **_values(task)}).rowcount != 1:
            raise ValueError(f"review task {task.id} is not stored")

    def list(self, status: ReviewStatus | None, offset: int,
             limit: int) -> tuple[builtins.list[ReviewTask], int]:
        condition = _t.status == status.value if status is not None else None
        count = select(func.count()).select_from(review_tasks)
        page = select(review_tasks).order_by(_t.created_at, _t.id).offset(offset).limit(limit)
        if condition is not None:
            count, page = count.where(condition), page.where(condition)
        total = int(self._sql.execute(count).scalar_one())
        return [_task(row) for row in self._sql.execute(page)], total

    def open_for_record(self, record_id: int) -> builtins.list[ReviewTask]:
        return [_task(row) for row in self._sql.execute(_OPEN_FOR_RECORD, {"b_record": record_id})]


class SqlModelRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    def active(self) -> tuple[str, dict[str, object]] | None:
        row = self._sql.execute(
            select(match_models.c.version, match_models.c.document)
            .where(match_models.c.active.is_(True))
        ).first()
        return None if row is None else (row.version, dict(row.document))

    def add(self, version: str, document: dict[str, object], activate: bool) -> None:
        if activate:
            self._sql.execute(update(match_models).values(active=False))
        self._sql.execute(insert(match_models).values(
            version=version, created_at=utc_now(), document=document, active=activate,
        ))

    def versions(self) -> builtins.list[tuple[str, datetime, bool]]:
        statement = select(match_models.c.version, match_models.c.created_at,
                           match_models.c.active).order_by(match_models.c.created_at.desc())
        return [(row.version, row.created_at, row.active) for row in self._sql.execute(statement)]
