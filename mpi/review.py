"""The review queue: potential duplicates the matcher would not link alone, automatic links
undone by a re-examination, and updates held because they describe another person (identity
collisions), decided by the people of identity vigilance. Every decision is kept on its task
(who, when, why) and written to the outbox; manual decisions are sticky.

A collision task is decided by ``apply-update`` (the held version replaces the record's; the
record then leaves its person when the person has other records, and is matched as a new
record would be) or ``discard-update`` (the record stays as it was); the other tasks by link,
keep-apart, merge-persons or unlink."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from mpi.errors import IdentityConflictError, InvalidInputError, UnknownIdentifierError
from mpi.events import ReviewDecided
from mpi.identity import Actor, IdentityService, IdentitySession
from mpi.model import (
    Demographics,
    Identifier,
    LinkMethod,
    ReviewDecision,
    ReviewKind,
    ReviewStatus,
    ReviewTask,
    SourceRecord,
)
from mpi.ports import UnitOfWork
from mpi.queries import PersonView, current_person, person_view

__all__ = ["ReviewView", "show_review", "decide_review", "undo_review", "COLLISION_DECISIONS"]

# The decisions of a collision task; the other kinds take the others.
COLLISION_DECISIONS = frozenset({ReviewDecision.APPLY_UPDATE, ReviewDecision.DISCARD_UPDATE})


@dataclass(frozen=True)
class ReviewView:
    """A task with the two sides to compare: the record and the candidate person."""

    task: ReviewTask
    record: SourceRecord
    record_person: PersonView | None
    candidate: PersonView | None
    candidate_record: SourceRecord | None


def show_review(uow: UnitOfWork, service: IdentityService, task_id: int) -> ReviewView:
    """Raises UnknownIdentifierError for an unknown task."""
    task = uow.reviews.get(task_id)
    if task is None:
        raise UnknownIdentifierError(f"no review task {task_id}")
    record = uow.records.get(task.record_id)
    assert record is not None and record.id is not None
    link = uow.links.for_record(record.id)
    own = current_person(uow, link.person_id) if link else None
    candidate = current_person(uow, task.person_id)
    registry = service.registry
    return ReviewView(
        task=task,
        record=record,
        record_person=person_view(uow, registry, own) if own else None,
        candidate=person_view(uow, registry, candidate) if candidate else None,
        candidate_record=(uow.records.get(task.candidate_record_id)
                          if task.candidate_record_id else None),
    )


def decide_review(uow: UnitOfWork, service: IdentityService, task_id: int,
                  decision: ReviewDecision, actor: Actor, reason: str) -> ReviewTask:
    """Apply a decision. Raises UnknownIdentifierError (no such task), InvalidInputError (task
    already decided, no reason given), IdentityConflictError (an identity rule forbids it)."""
    if not reason.strip():
        raise InvalidInputError("a review decision needs its reason")
    task = uow.reviews.get(task_id)
    if task is None:
        raise UnknownIdentifierError(f"no review task {task_id}")
    if task.status is not ReviewStatus.OPEN:
        raise InvalidInputError(f"review task {task_id} was decided already")
    if (task.kind is ReviewKind.COLLISION) != (decision in COLLISION_DECISIONS):
        raise InvalidInputError(
            "a held update is decided by apply-update or discard-update, and only it"
            if task.kind is ReviewKind.COLLISION else
            f"{decision.value} decides held updates (collision tasks) only")
    session = IdentitySession(service, uow, actor)
    record, candidate_id, record_person = _sides(session, task)
    if decision is ReviewDecision.APPLY_UPDATE:
        _apply_held(session, record, task.evidence["held"])
    elif decision is ReviewDecision.DISCARD_UPDATE:
        pass  # the record stays as it was; the task keeps the held version
    elif decision is ReviewDecision.LINK:
        if record_person != candidate_id:
            _require_compatible(session, record, candidate_id)
            session.touch(record_person)
            session.move_family(record, candidate_id, LinkMethod.MANUAL, "review: link")
        session.set_link(record, candidate_id, LinkMethod.MANUAL)
    elif decision is ReviewDecision.MERGE_PERSONS:
        if record_person != candidate_id:
            if not session.compatible(record_person, candidate_id):
                raise IdentityConflictError(
                    "these persons hold different qualified INS or records declared different")
            survivor, retired = sorted((record_person, candidate_id))
            session.merge_persons(retired, into=survivor, reason="review: merge persons")
    elif decision is ReviewDecision.KEEP_APART:
        if record_person == candidate_id:
            # Joined since the task was opened (a link, a merge): kept apart all the same,
            # the record leaves the person and is declared different from its records.
            _unlink(session, record, record_person, "review: keep apart")
            task.evidence = {**task.evidence, "left_person": True}  # undone as an unlink
        else:
            for other in session.active_records(candidate_id):
                uow.separations.add(_id(record), _id(other), "review: keep apart", actor.name)
    elif decision is ReviewDecision.UNLINK:
        _unlink(session, record, record_person, "review: unlink")
    task.status = ReviewStatus.DECIDED
    task.decision = decision
    task.decided_by = actor.name
    task.decided_at = session.now
    task.reason = reason.strip()
    uow.reviews.save(task)
    session.events.append(ReviewDecided(task_id, decision.value, actor.name, task.reason))
    session.finish()
    return task


def _sides(session: IdentitySession, task: ReviewTask) -> tuple[SourceRecord, int, int]:
    """The task's record, its candidate person as it is now, and the record's person (ids). Raises
    IdentityConflictError when the record is no longer active or the person no longer
    exists."""
    record = session.uow.records.get(task.record_id)
    if record is None or not record.is_active:
        raise IdentityConflictError("the record of this task is no longer active")
    candidate = current_person(session.uow, task.person_id)
    if candidate is None or candidate.id is None:
        raise IdentityConflictError("the candidate person of this task no longer exists")
    return record, candidate.id, session.person_of(record)


def _unlink(session: IdentitySession, record: SourceRecord, person_id: int,
            reason: str) -> None:
    """The record leaves its person for one of its own, declared different from each record
    that stays."""
    session.touch(person_id)
    remaining = [r for r in session.active_records(person_id) if r.id != record.id]
    if remaining:
        session.move_family(record, session.new_person(), LinkMethod.MANUAL, reason)
        for kept in remaining:
            session.uow.separations.add(_id(record), _id(kept), reason, session.actor.name)


def undo_review(uow: UnitOfWork, service: IdentityService, task_id: int, actor: Actor,
                reason: str) -> ReviewTask:
    """Undo a decided task: its effect is reversed and the task is open again, the undone
    decision kept in its evidence (who decided, who undid, when, why). A record linked or
    merged by the decision leaves for a person of its own; records kept apart or unlinked
    are no longer declared different (an unlinked record goes back to its former person).
    Held updates (collision tasks) are not undone: the record's versions keep what happened.
    Raises UnknownIdentifierError, InvalidInputError (open task, no reason, a collision task),
    IdentityConflictError (the record or the person no longer exists)."""
    if not reason.strip():
        raise InvalidInputError("undoing a review decision needs its reason")
    task = uow.reviews.get(task_id)
    if task is None:
        raise UnknownIdentifierError(f"no review task {task_id}")
    if task.status is not ReviewStatus.DECIDED or task.decision is None:
        raise InvalidInputError(f"review task {task_id} is not decided: nothing to undo")
    if task.decision in COLLISION_DECISIONS:
        raise InvalidInputError("a held update applied or discarded is not undone")
    session = IdentitySession(service, uow, actor)
    record, candidate_id, record_person = _sides(session, task)
    decision = task.decision
    if decision in (ReviewDecision.LINK, ReviewDecision.MERGE_PERSONS):
        session.touch(record_person)
        if [r for r in session.active_records(record_person) if r.id != record.id]:
            target = session.new_person()
            session.move_family(record, target, LinkMethod.MANUAL, "review: decision undone")
    else:  # keep apart, unlink: the pairs declared different are forgotten
        for other in session.active_records(candidate_id):
            if other.id is not None and other.id != record.id:
                uow.separations.remove(_id(record), other.id)
        left = decision is ReviewDecision.UNLINK or bool(task.evidence.get("left_person"))
        if left and record_person != candidate_id:
            _require_compatible(session, record, candidate_id)
            session.touch(record_person)
            session.move_family(record, candidate_id, LinkMethod.MANUAL,
                                "review: decision undone")
    undone = list(task.evidence.get("undone") or [])
    undone.append({"decision": decision.value, "decided_by": task.decided_by,
                   "decided_at": task.decided_at.isoformat() if task.decided_at else None,
                   "reason": task.reason, "undone_by": actor.name,
                   "undone_at": session.now.isoformat(), "undo_reason": reason.strip()})
    task.evidence = {key: value for key, value in task.evidence.items()
                     if key != "left_person"} | {"undone": undone}
    task.status = ReviewStatus.OPEN
    task.decision = None
    task.decided_by = None
    task.decided_at = None
    task.reason = None
    uow.reviews.save(task)
    session.events.append(ReviewDecided(task_id, f"undo:{decision.value}", actor.name,
                                        reason.strip()))
    session.finish()
    return task


def _apply_held(session: IdentitySession, record: SourceRecord, held: dict[str, Any]) -> None:
    """Replace a record's identity by the held version a person accepted. The record then
    describes another person than its own: when its person has other records, it leaves
    them for a person of its own (its studies go with it); either way it is then matched as
    a new record would be."""
    values = dict(held["demographics"])
    for name in ("birth_date", "death_date"):
        if values.get(name):
            values[name] = date.fromisoformat(values[name])
    values["given_names"] = tuple(values.get("given_names") or ())
    before_ins = record.qualified_ins
    record.demographics = Demographics(**values)
    record.reliability = tuple(held.get("reliability") or ())
    record.ins = Identifier.parse(held["ins"]) if held.get("ins") else None
    if held.get("last_activity"):
        record.last_activity = datetime.fromisoformat(held["last_activity"])
    record.updated_at = session.now
    session.uow.records.save(record)
    person_id = session.person_of(record)
    session.touch(person_id)
    others = [r for r in session.active_records(person_id) if r.id != record.id]
    if others:
        target = session.new_person()
        session.move_family(record, target, LinkMethod.NEW, "review: held update applied")
    if record.qualified_ins is not None and record.qualified_ins != before_ins:
        session.reconcile_ins(record)
    if others and session.person_of(record) == target:
        session.rematch(record, former=person_id)
    elif not others:
        session.rematch(record, former=-1)


def _require_compatible(session: IdentitySession, record: SourceRecord, person_id: int) -> None:
    ins = record.qualified_ins
    if ins is not None:
        for other in session.active_records(person_id):
            if other.qualified_ins not in (None, ins):
                raise IdentityConflictError(
                    "the record and the person hold different qualified INS")
    ids = [r.id for r in session.uow.records.linked_to(person_id) if r.id is not None]
    if record.id is not None and session.uow.separations.exists_between([record.id], ids):
        raise IdentityConflictError("the record was declared different from this person")


def _id(record: SourceRecord) -> int:
    if record.id is None:
        raise RuntimeError("record used before it was stored")
    return record.id
