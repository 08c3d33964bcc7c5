"""The archive's legal lifecycle: who may act, legal holds, destruction proposals (the
"bordereau d'élimination") with their approvals and the departmental archives' visa, the
destruction itself with its tombstones, and the correction of a study filed under the wrong
patient.

Every role check is here, in :func:`authorize` and :func:`approve`: the adapters name the
actor (``--by`` on the command line, ``X-Remote-User`` over HTTP) and pass the roles they
know, or None while roles are not known (no authentication yet). The separation of duties
holds on names in every case (two approvers, different people, neither the proposer) and on
roles once they are known (one ``dim``, one ``director``; the others ``archivist``,
``identity-vigilance``).

Destruction is crash-safe and idempotent. Each study goes in one transaction that checks it
again, writes its tombstone, journals every file it had for deletion and removes its index
rows; the files are then deleted from the journal, which is forgotten only once they are
gone. At every moment each file of the archive is referenced by an index row or by the
journal, and running an interrupted destruction again finishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from mpi.archive.model import (
    Approval,
    ArchivedPatient,
    DestructionProposal,
    ItemOutcome,
    LegalHold,
    ProposalItem,
    ProposalStatus,
    Reassignment,
    RetentionRow,
    StudyFilter,
    Tombstone,
)
from mpi.archive.ports import ArchiveUnitOfWork, BlobStore
from mpi.archive.retention import RetentionPolicy, recompute_retention
from mpi.errors import (
    ForbiddenError,
    InvalidInputError,
    LifecycleStateError,
    MissingFieldError,
    UnknownIdentifierError,
)
from mpi.events import StudyDestroyed, StudyReassigned
from mpi.model import Identifier
from mpi.queries import current_person, resolve_record

__all__ = [
    "totals_by_year",
    "ARCHIVIST", "DIM", "DIRECTOR", "IDENTITY_VIGILANCE", "Staff", "authorize",
    "place_hold", "release_hold", "retention_report", "propose_destruction", "approve",
    "record_visa", "DestructionReport", "destroy_proposal", "purge_deletions",
    "reassign_study", "bordereau_rows", "BORDEREAU_COLUMNS",
]

ARCHIVIST = "archivist"
DIM = "dim"  # département d'information médicale: gives its opinion first
DIRECTOR = "director"  # the establishment's director: decides after the DIM's opinion
IDENTITY_VIGILANCE = "identity-vigilance"
APPROVAL_ORDER = (DIM, DIRECTOR)


@dataclass(frozen=True)
class Staff:
    """Who acts on the lifecycle: a user name, and the roles that user holds, or None while
    the roles are not known (then only the name-based rules apply)."""

    name: str
    roles: frozenset[str] | None = None


def authorize(staff: Staff, role: str) -> None:
    """Raises ForbiddenError when the actor is unnamed, or known not to hold ``role``."""
    if not staff.name.strip():
        raise ForbiddenError("a lifecycle action needs the name of who does it")
    if staff.roles is not None and role not in staff.roles:
        raise ForbiddenError(f"{staff.name} does not hold the role {role}")


# -- legal holds -----------------------------------------------------------------------------


def place_hold(uow: ArchiveUnitOfWork, staff: Staff, *, reason: str, reference: str,
               now: datetime, person_id: int | None = None,
               study_uid: str | None = None) -> LegalHold:
    """Suspend destruction for a person (every study of theirs) or one study. Raises
    ForbiddenError (role archivist), InvalidInputError (neither or both named),
    MissingFieldError (no reason or reference), UnknownIdentifierError (no such person or
    study)."""
    authorize(staff, ARCHIVIST)
    if (person_id is None) == (study_uid is None):
        raise InvalidInputError("a hold names a person or a study, one of the two")
    _require(reason, "reason")
    _require(reference, "reference")
    if person_id is not None:
        person = current_person(uow, person_id)
        if person is None or person.id is None:
            raise UnknownIdentifierError(f"no person {person_id}")
        person_id = person.id
    if study_uid is not None and uow.archive.study(study_uid) is None:
        raise UnknownIdentifierError(f"no study {study_uid} in the archive")
    hold = LegalHold(reason.strip(), reference.strip(), staff.name, now, person_id=person_id,
                     study_instance_uid=study_uid)
    uow.lifecycle.add_hold(hold)
    return hold


def release_hold(uow: ArchiveUnitOfWork, staff: Staff, hold_id: int, *, reason: str,
                 now: datetime, policy: RetentionPolicy) -> LegalHold:
    """Lift a hold and recompute the retention of the studies it covered. Raises
    ForbiddenError (role archivist), UnknownIdentifierError, LifecycleStateError (released
    already), MissingFieldError."""
    authorize(staff, ARCHIVIST)
    _require(reason, "reason")
    hold = uow.lifecycle.hold(hold_id)
    if hold is None:
        raise UnknownIdentifierError(f"no hold {hold_id}")
    if not hold.active:
        raise LifecycleStateError(f"hold {hold_id} was released already")
    hold.released_by, hold.released_at, hold.release_reason = staff.name, now, reason.strip()
    uow.lifecycle.save_hold(hold)
    person = current_person(uow, hold.person_id) if hold.person_id is not None else None
    criteria = (StudyFilter(person_ids=(person.id or 0,), limit=1_000_000)
                if person is not None
                else StudyFilter(study_uids=(hold.study_instance_uid or "",)))
    records = {s.record_id for s in uow.archive.find_studies(criteria)}
    recompute_retention(uow, policy, records, now)
    return hold


@dataclass(frozen=True)
class _Holds:
    persons: dict[int, int]  # current person id -> hold id
    studies: dict[str, int]  # study UID -> hold id

    def of(self, row: RetentionRow) -> int | None:
        if row.study_instance_uid in self.studies:
            return self.studies[row.study_instance_uid]
        return self.persons.get(row.person_id) if row.person_id is not None else None


def _active_holds(uow: ArchiveUnitOfWork) -> _Holds:
    persons: dict[int, int] = {}
    studies: dict[str, int] = {}
    for hold in uow.lifecycle.holds(active_only=True):
        assert hold.id is not None
        if hold.person_id is not None:
            person = current_person(uow, hold.person_id)  # a merge carries the hold along
            if person is not None and person.id is not None:
                persons.setdefault(person.id, hold.id)
        if hold.study_instance_uid is not None:
            studies.setdefault(hold.study_instance_uid, hold.id)
    return _Holds(persons, studies)


def retention_report(uow: ArchiveUnitOfWork, establishment: str | None = None,
                     expiring_by: date | None = None,
                     study_uids: tuple[str, ...] = ()) -> list[RetentionRow]:
    """Every study (of one establishment; these studies) with its end of retention and
    whether a hold covers it, by date of expiry; only those expiring on or before
    ``expiring_by`` when given."""
    holds = _active_holds(uow)
    rows = uow.archive.retention_report(establishment, expiring_by, study_uids)
    return [_with_hold(row, holds.of(row) is not None) for row in rows]


def _with_hold(row: RetentionRow, held: bool) -> RetentionRow:
    from dataclasses import replace

    return replace(row, held=held)


# -- proposals, approvals, visa --------------------------------------------------------------


def propose_destruction(uow: ArchiveUnitOfWork, staff: Staff, establishment: str,
                        as_of: date, now: datetime,
                        policy: RetentionPolicy) -> DestructionProposal:
    """List every study of the establishment whose retention has ended by ``as_of`` and that
    no hold covers (retention computed afresh for them first). Raises ForbiddenError (role
    archivist), LifecycleStateError (nothing to destroy)."""
    authorize(staff, ARCHIVIST)
    due = uow.archive.retention_report(establishment, as_of)
    stale = set(uow.archive.uncomputed_record_ids(establishment))
    recompute_retention(uow, policy, stale | {_record_of(uow, r) for r in due}, now)
    rows = [r for r in retention_report(uow, establishment, as_of) if not r.held]
    if not rows:
        raise LifecycleStateError(
            f"no study of {establishment} has reached the end of its retention by "
            f"{as_of.isoformat()} without a hold")
    proposal = DestructionProposal(establishment, as_of, staff.name, now, items=[
        ProposalItem(r.study_instance_uid, r.patient, r.study_date, r.last_visit,
                     r.expires_on or as_of, r.basis or "", r.size_bytes, r.instances)
        for r in rows
    ])
    uow.lifecycle.add_proposal(proposal)
    return proposal


def _record_of(uow: ArchiveUnitOfWork, row: RetentionRow) -> int:
    [study] = uow.archive.find_studies(StudyFilter(study_uids=(row.study_instance_uid,)))
    return study.record_id


def _proposal(uow: ArchiveUnitOfWork, proposal_id: int) -> DestructionProposal:
    proposal = uow.lifecycle.proposal(proposal_id)
    if proposal is None:
        raise UnknownIdentifierError(f"no destruction proposal {proposal_id}")
    return proposal


def approve(uow: ArchiveUnitOfWork, staff: Staff, proposal_id: int, now: datetime,
            role: str | None = None) -> DestructionProposal:
    """Record one approval: the DIM's opinion first, then the director's decision, by two
    different people, neither of them the proposer. ``role`` names which one this is; by
    default the role the actor holds that is still missing (while roles are not known: the
    next one in order). Raises ForbiddenError (separation of duties, role), LifecycleStateError
    (not waiting for approval, director before DIM), UnknownIdentifierError."""
    proposal = _proposal(uow, proposal_id)
    if proposal.status is not ProposalStatus.PROPOSED:
        raise LifecycleStateError(f"proposal {proposal_id} is {proposal.status.value}: it "
                                  "waits for no approval")
    if staff.name == proposal.proposed_by:
        raise ForbiddenError(f"{staff.name} proposed it and cannot approve it")
    if any(a.approved_by == staff.name for a in proposal.approvals):
        raise ForbiddenError(f"{staff.name} approved it already: a second person must")
    missing = [r for r in APPROVAL_ORDER if proposal.approval(r) is None]
    if role is None:
        held = [r for r in missing if staff.roles is None or r in staff.roles]
        if not held:
            raise ForbiddenError(f"{staff.name} holds none of the missing roles "
                                 f"({', '.join(missing)})")
        role = held[0]
    if role not in missing:
        raise LifecycleStateError(f"the {role} approval of proposal {proposal_id} is given "
                                  "already" if role in APPROVAL_ORDER else
                                  f"{role} is not an approval role")
    if role == DIRECTOR and proposal.approval(DIM) is None:
        raise LifecycleStateError("the director decides after the DIM's opinion")
    authorize(staff, role)
    proposal.approvals.append(Approval(role, staff.name, now, staff.roles is not None))
    if all(proposal.approval(r) is not None for r in APPROVAL_ORDER):
        proposal.status = ProposalStatus.APPROVED
    uow.lifecycle.save_proposal(proposal)
    return proposal


def record_visa(uow: ArchiveUnitOfWork, staff: Staff, proposal_id: int, reference: str,
                now: datetime) -> DestructionProposal:
    """Record the departmental archives' visa on an approved proposal. Raises ForbiddenError
    (role archivist), LifecycleStateError (not approved), MissingFieldError."""
    authorize(staff, ARCHIVIST)
    _require(reference, "reference")
    proposal = _proposal(uow, proposal_id)
    if proposal.status is not ProposalStatus.APPROVED:
        raise LifecycleStateError(f"proposal {proposal_id} is {proposal.status.value}: the "
                                  "visa comes after the DIM's and the director's approvals")
    proposal.visa_reference, proposal.visa_by, proposal.visa_at = reference.strip(), \
        staff.name, now
    proposal.status = ProposalStatus.VISAED
    uow.lifecycle.save_proposal(proposal)
    return proposal


BORDEREAU_COLUMNS = ("study_instance_uid", "patient", "study_date", "last_visit",
                     "expires_on", "basis", "instances", "size_bytes", "outcome",
                     "outcome_reason")


def totals_by_year(rows: list[RetentionRow]) -> list[dict[str, Any]]:
    """A retention report summed by the year each study's retention ends: studies, bytes,
    and how many are held ("not computed" for studies whose end is not known yet)."""
    years: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = str(row.expires_on.year) if row.expires_on else "not computed"
        entry = years.setdefault(key, {"year": key, "studies": 0, "size_bytes": 0, "held": 0})
        entry["studies"] += 1
        entry["size_bytes"] += row.size_bytes
        entry["held"] += int(row.held)
    return [years[k] for k in sorted(years)]


def bordereau_rows(proposal: DestructionProposal) -> list[dict[str, object]]:
    """The elimination list of a proposal, one row per study (CSV, console)."""
    return [{
        "study_instance_uid": i.study_instance_uid, "patient": i.patient,
        "study_date": i.study_date.isoformat() if i.study_date else "",
        "last_visit": i.last_visit.isoformat() if i.last_visit else "",
        "expires_on": i.expires_on.isoformat(), "basis": i.basis, "instances": i.instances,
        "size_bytes": i.size_bytes, "outcome": i.outcome.value,
        "outcome_reason": i.outcome_reason or "",
    } for i in proposal.items]


# -- destruction -----------------------------------------------------------------------------


@dataclass
class DestructionReport:
    proposal_id: int
    destroyed: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # study UID, why
    files_deleted: int = 0


# Called once per study destroyed, with the study and its person (for the audit trail).
Observer = Callable[[str, int | None], None]


def destroy_proposal(uow_factory: Callable[..., ArchiveUnitOfWork], blobs: BlobStore,
                     staff: Staff, proposal_id: int, now: Callable[[], datetime],
                     policy: RetentionPolicy,
                     observer: Observer | None = None) -> DestructionReport:
    """Destroy the studies of an approved and visaed proposal, each checked again first (a
    new stay, a hold or new objects since the proposal keep it). Run again after an
    interruption, it finishes the work. Raises ForbiddenError (role archivist),
    LifecycleStateError (not visaed), UnknownIdentifierError; OSError from the blob store
    (the journal keeps what remains to delete)."""
    authorize(staff, ARCHIVIST)
    with uow_factory() as uow:
        proposal = _proposal(uow, proposal_id)
        if proposal.status not in (ProposalStatus.VISAED, ProposalStatus.DESTROYING,
                                   ProposalStatus.DESTROYED):
            raise LifecycleStateError(
                f"proposal {proposal_id} is {proposal.status.value}: only an approved proposal "
                "with the archives' visa is destroyed")
        if proposal.status is ProposalStatus.VISAED:
            proposal.status = ProposalStatus.DESTROYING
            proposal.destroyed_by = staff.name
            uow.lifecycle.save_proposal(proposal)
            uow.commit()
    report = DestructionReport(proposal_id)
    for item in proposal.items:
        if item.outcome is ItemOutcome.PENDING:
            _destroy_one(uow_factory, proposal_id, item.study_instance_uid, staff, now(),
                         policy, observer)
    report.files_deleted = purge_deletions(uow_factory, blobs)
    with uow_factory() as uow:
        proposal = _proposal(uow, proposal_id)
        if proposal.status is not ProposalStatus.DESTROYED:
            proposal.status = ProposalStatus.DESTROYED
            proposal.destroyed_at = now()
            uow.lifecycle.save_proposal(proposal)
            uow.commit()
    for item in proposal.items:
        if item.outcome is ItemOutcome.DESTROYED:
            report.destroyed.append(item.study_instance_uid)
        elif item.outcome is ItemOutcome.KEPT:
            report.kept.append((item.study_instance_uid, item.outcome_reason or ""))
    return report


def _destroy_one(uow_factory: Callable[..., ArchiveUnitOfWork], proposal_id: int,
                 study_uid: str, staff: Staff, now: datetime, policy: RetentionPolicy,
                 observer: Observer | None) -> None:
    with uow_factory() as uow:
        uow.lock([f"study:{study_uid}"])
        proposal = _proposal(uow, proposal_id)
        item = next(i for i in proposal.items if i.study_instance_uid == study_uid)
        if item.outcome is not ItemOutcome.PENDING:
            return
        reason, person_id = _reason_to_keep(uow, proposal, study_uid, now, policy)
        if reason is not None:
            item.outcome, item.outcome_reason = ItemOutcome.KEPT, reason
            uow.lifecycle.save_proposal(proposal)
            uow.commit()
            return
        study = uow.archive.study(study_uid)
        assert study is not None
        files = uow.archive.instance_files(study_uid)
        current = {f.sop_instance_uid: f for f in files}
        uow.lifecycle.add_tombstone(Tombstone(
            study_instance_uid=study_uid, establishment=proposal.establishment,
            study_date=study.study_date,
            first_received_at=study.first_received_at or now,
            last_received_at=study.last_received_at or now,
            instances=len(current), size_bytes=sum(f.size for f in current.values()),
            series=tuple(sorted({f.series_instance_uid or "" for f in files})),
            files=tuple({"sop_instance_uid": f.sop_instance_uid, "version": f.version,
                         "transfer_syntax_uid": f.transfer_syntax_uid, "size": f.size,
                         "sha256": f.sha256, "original_sha256": f.original_sha256}
                        for f in files),
            proposal_id=proposal_id, decision=_decision(proposal), destroyed_by=staff.name,
            destroyed_at=now))
        uow.archive.queue_blob_deletions([f.blob_key for f in files],
                                         f"destruction:{proposal_id}", now)
        uow.archive.delete_study(study_uid)
        item.outcome, item.outcome_reason = ItemOutcome.DESTROYED, None
        uow.lifecycle.save_proposal(proposal)
        uow.outbox.add(StudyDestroyed(study_uid, proposal.establishment, proposal_id))
        uow.commit()
    if observer is not None:
        observer(study_uid, person_id)


def _reason_to_keep(uow: ArchiveUnitOfWork, proposal: DestructionProposal, study_uid: str,
                    now: datetime, policy: RetentionPolicy) -> tuple[str | None, int | None]:
    """Why a listed study must be kept now (None: it may go), and its person."""
    found = uow.archive.find_studies(StudyFilter(study_uids=(study_uid,)))
    if not found:
        return "no longer in the archive", None
    study = found[0]
    if study.received_as.authority != proposal.establishment:
        return f"filed under {study.received_as.authority} since the proposal", study.person_id
    if study.last_received_at and study.last_received_at > proposal.proposed_at:
        return "objects received since the proposal", study.person_id
    recompute_retention(uow, policy, [study.record_id], now)
    [row] = retention_report(uow, proposal.establishment, study_uids=(study_uid,))
    if row.held:
        return "under a legal hold", study.person_id
    if row.expires_on is None or row.expires_on > proposal.as_of:
        return (f"retention now ends on {row.expires_on} (last visit {row.last_visit})",
                study.person_id)
    return None, study.person_id


def _decision(proposal: DestructionProposal) -> dict[str, object]:
    return {
        "proposal": proposal.id, "proposed_by": proposal.proposed_by,
        "proposed_at": proposal.proposed_at.isoformat(),
        "approvals": [{"role": a.role, "by": a.approved_by, "at": a.approved_at.isoformat(),
                       "roles_verified": a.roles_verified} for a in proposal.approvals],
        "visa": {"reference": proposal.visa_reference, "by": proposal.visa_by,
                 "at": proposal.visa_at.isoformat() if proposal.visa_at else None},
    }


def purge_deletions(uow_factory: Callable[..., ArchiveUnitOfWork], blobs: BlobStore,
                    batch: int = 500) -> int:
    """Delete the journaled blobs and forget them (a blob an instance points at again is
    kept). Returns how many blobs were deleted. OSError from the store propagates, the
    journal keeping what remains."""
    deleted = 0
    while True:
        with uow_factory() as uow:
            pending = uow.archive.pending_deletions(batch)
            if not pending:
                return deleted
            uow.lock(f"blob:{entry.blob_key}" for entry in pending)
            for entry in pending:
                if not uow.archive.blob_in_use(entry.blob_key):
                    blobs.delete(entry.blob_key)
                    deleted += 1
            uow.archive.forget_deletions([e.id for e in pending])
            uow.commit()


# -- corrections -----------------------------------------------------------------------------


def reassign_study(uow: ArchiveUnitOfWork, staff: Staff, study_uid: str, to: Identifier,
                   reason: str, now: datetime) -> Reassignment:
    """File a study under another patient record (IOCM "incorrect worklist entry"): no file
    is rewritten, the move is kept in the study's history, and reassigning back undoes it.
    Raises ForbiddenError (role identity-vigilance), UnknownIdentifierError (no such study or
    active record), InvalidInputError (already filed there), MissingFieldError."""
    authorize(staff, IDENTITY_VIGILANCE)
    _require(reason, "reason")
    uow.lock([f"study:{study_uid}"])
    study = uow.archive.study(study_uid)
    if study is None:
        raise UnknownIdentifierError(f"no study {study_uid} in the archive")
    record = resolve_record(uow, to)
    if record is None or record.id is None:
        raise UnknownIdentifierError(f"no active record {to}")
    target = uow.archive.patient(record.identifier)
    if target is None:
        d = record.demographics
        target = ArchivedPatient(record.identifier.authority, record.identifier.value,
                                 record.id, d.birth_family_name or d.used_family_name,
                                 d.given_names, d.birth_date, d.sex, first_received_at=now,
                                 last_received_at=now)
        uow.archive.add_patient(target)
    assert target.id is not None
    previous = _patient_by_id(uow, study.patient_id, study_uid)
    if previous.id == target.id:
        raise InvalidInputError(f"study {study_uid} is filed under {to} already")
    uow.archive.move_study(study_uid, target.id)
    moved = Reassignment(study_uid, Identifier(previous.authority, previous.patient_id),
                         record.identifier, staff.name, reason.strip(), now)
    uow.archive.add_reassignment(moved)
    uow.outbox.add(StudyReassigned(study_uid, previous.record_id, record.id, staff.name))
    return moved


def _patient_by_id(uow: ArchiveUnitOfWork, patient_ref: int, study_uid: str) -> ArchivedPatient:
    [summary] = uow.archive.find_studies(StudyFilter(study_uids=(study_uid,)))
    patient = uow.archive.patient(summary.received_as)
    assert patient is not None and patient.id == patient_ref
    return patient


def _require(value: str | None, name: str) -> None:
    if value is None or not value.strip():
        raise MissingFieldError(f"a {name} is required", location=name)


