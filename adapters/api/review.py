"""The review queue over HTTP (/api/review): list, show, decide. Only people holding the
identity-vigilance role see it; a decision names the person who took it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from adapters.http.deps import ContainerDep, audit, requires_role
from adapters.http.errors import http_error
from mpi.audit import AuditAction
from mpi.errors import MPIError, UnknownIdentifierError
from mpi.identity import Actor
from mpi.model import ReviewDecision, ReviewStatus, ReviewTask, SourceRecord
from mpi.queries import PersonView
from mpi.retry import retry_on_conflict
from mpi.review import decide_review, show_review
from mpi.security import Principal, Role

__all__ = ["router"]

router = APIRouter(prefix="/api/review", tags=["review"])

# A person of the identity-vigilance cell (cellule d'identitovigilance).
Vigilance = Annotated[Principal, Depends(requires_role(Role.IDENTITY_VIGILANCE))]
# A task number the databases can hold (64-bit): a larger one is a bad parameter, not a crash.
TaskId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class DecisionIn(BaseModel):
    decision: ReviewDecision
    reason: str = Field(min_length=1, max_length=2000)


def task_json(task: ReviewTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": task.status.value,
        "kind": task.kind.value,
        "record_id": task.record_id,
        "person_id": task.person_id,
        "candidate_record_id": task.candidate_record_id,
        "score": task.score,
        "evidence": task.evidence,
        "created_at": task.created_at.isoformat() if task.created_at else None,
        "decided_at": task.decided_at.isoformat() if task.decided_at else None,
        "decided_by": task.decided_by,
        "decision": task.decision.value if task.decision else None,
        "reason": task.reason,
    }


def record_json(record: SourceRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "id": record.id,
        "identifier": str(record.identifier),
        "status": record.status.value,
        "reliability": list(record.reliability),
        "ins": str(record.qualified_ins) if record.qualified_ins else None,
        "demographics": record.demographics.as_dict(),
    }


def person_json(view: PersonView | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        "id": view.person.id,
        "identifiers": [str(i) for i in view.identifiers],
        "demographics": view.demographics.as_dict(),
        "records": [record_json(r) for r in view.records],
    }


@router.get("", summary="Review tasks, oldest first")
def list_tasks(
    request: Request,
    container: ContainerDep,
    user: Vigilance,
    status: ReviewStatus | None = ReviewStatus.OPEN,
    offset: int = Query(0, ge=0, le=2**63 - 1),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    with container.uow_factory(read_only=True) as uow:
        tasks, total = uow.reviews.list(status, offset, limit)
    audit(request, channel="api", action=AuditAction.SEARCH,
          persons={t.person_id for t in tasks if t.person_id is not None})
    return {"total": total, "offset": offset, "tasks": [task_json(t) for t in tasks]}


@router.get("/{task_id}", summary="A task, with the record and the candidate side by side")
def show_task(task_id: TaskId, request: Request, container: ContainerDep,
              user: Vigilance) -> dict[str, Any]:
    with container.uow_factory(read_only=True) as uow:
        try:
            view = show_review(uow, container.identity, task_id)
        except UnknownIdentifierError as exc:
            raise http_error(exc) from None
    persons = {p.person.id for p in (view.record_person, view.candidate) if p is not None}
    audit(request, channel="api", action=AuditAction.READ,
          persons={p for p in persons if p is not None}, detail={"review_task": task_id})
    return {
        "task": task_json(view.task),
        "record": record_json(view.record),
        "record_person": person_json(view.record_person),
        "candidate": person_json(view.candidate),
        "candidate_record": record_json(view.candidate_record),
    }


@router.post("/{task_id}/decision", summary="Decide a task (audited: who, when, why)")
def decide_task(task_id: TaskId, body: DecisionIn, request: Request, container: ContainerDep,
                user: Vigilance) -> dict[str, Any]:
    actor = Actor(user.actor_name, user.establishment)

    def decide() -> ReviewTask:
        with container.uow_factory() as uow:
            decided = decide_review(uow, container.identity, task_id, body.decision, actor,
                                    body.reason)
            uow.commit()
            return decided

    try:
        task = retry_on_conflict(decide)
    except MPIError as exc:
        raise http_error(exc) from None
    audit(request, channel="api", action=AuditAction.UPDATE,
          persons={p for p in (task.person_id,) if p is not None},
          detail={"review_task": task_id, "decision": body.decision.value})
    return task_json(task)
