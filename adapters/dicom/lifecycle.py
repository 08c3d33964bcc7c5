"""The archive's lifecycle as the command line and the HTTP API use it: each step runs its
use case (``mpi.archive.lifecycle``) in a unit of work, retried on a conflict, and is written
to the audit trail. A destroyed study is traced as DICOM's "Study Deleted" event (DCM 110105,
action D) with the person it belonged to."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, TypeVar

from mpi.archive import (
    ArchiveUnitOfWork,
    BlobStore,
    DestructionProposal,
    LegalHold,
    Reassignment,
    RetentionRow,
    Tombstone,
)
from mpi.archive import lifecycle as use_cases
from mpi.archive.lifecycle import DestructionReport, Staff
from mpi.archive.retention import RetentionPolicy, sweep_retention
from mpi.audit import AuditAction, AuditEvent
from mpi.errors import UnknownIdentifierError
from mpi.model import Identifier
from mpi.ports import AuditTrail, Clock
from mpi.queries import current_person
from mpi.retry import retry_on_conflict

__all__ = ["ArchiveLifecycle", "STUDY_DELETED"]

# DICOM PS3.15 A.5.3.4 "DICOM Study Deleted" (DCM 110105).
STUDY_DELETED = {"event_id": "110105", "event": "DICOM Study Deleted", "action": "D"}
T = TypeVar("T")


class ArchiveLifecycle:
    def __init__(self, uow_factory: Callable[..., ArchiveUnitOfWork], blobs: BlobStore,
                 audit: AuditTrail, clock: Clock, policy: RetentionPolicy) -> None:
        self.uow_factory = uow_factory
        self.blobs = blobs
        self.audit = audit
        self.clock = clock
        self.policy = policy

    def _write(self, work: Callable[[ArchiveUnitOfWork], T]) -> T:
        def once() -> T:
            with self.uow_factory() as uow:
                result = work(uow)
                uow.commit()
                return result

        return retry_on_conflict(once)

    def _trace(self, staff: Staff, channel: str, action: AuditAction, subject: str, *,
               source: str | None, persons: tuple[int, ...] = (), outcome: str = "success",
               detail: dict[str, Any] | None = None) -> None:
        self.audit.record(AuditEvent(
            occurred_at=self.clock.now(), channel=channel, action=action,
            actor=f"user:{staff.name}", subject=subject, outcome=outcome, source=source,
            persons=persons, detail={"lifecycle": True, **(detail or {})},
            roles=tuple(sorted(staff.roles or ()))))

    # -- retention -----------------------------------------------------------------------

    def report(self, establishment: str | None, as_of: date | None, *, staff: Staff,
               channel: str, source: str | None) -> list[RetentionRow]:
        with self.uow_factory(read_only=True) as uow:
            rows = use_cases.retention_report(uow, establishment, as_of)
        self._trace(staff, channel, AuditAction.SEARCH,
                    f"lifecycle report {establishment or '*'} {as_of or ''}".strip(),
                    source=source, persons=tuple(sorted(
                        {r.person_id for r in rows if r.person_id is not None})))
        return rows

    def sweep(self) -> int:
        """Recompute the retention of every study (the periodic sweep)."""
        return sweep_retention(self.uow_factory, self.policy, self.clock.now)

    def uncomputed(self) -> int:
        with self.uow_factory(read_only=True) as uow:
            return len(uow.archive.uncomputed_record_ids())

    # -- holds ---------------------------------------------------------------------------

    def hold(self, staff: Staff, *, reason: str, reference: str, person_id: int | None,
             study_uid: str | None, channel: str, source: str | None) -> LegalHold:
        hold = self._write(lambda uow: use_cases.place_hold(
            uow, staff, reason=reason, reference=reference, now=self.clock.now(),
            person_id=person_id, study_uid=study_uid))
        self._trace(staff, channel, AuditAction.CREATE, f"lifecycle hold {hold.id}",
                    source=source, persons=(hold.person_id,) if hold.person_id else (),
                    detail={"hold": hold.id, "study": study_uid, "reference": reference})
        return hold

    def holds(self, active_only: bool = True) -> list[LegalHold]:
        with self.uow_factory(read_only=True) as uow:
            return uow.lifecycle.holds(active_only)

    def release(self, staff: Staff, hold_id: int, reason: str, *, channel: str,
                source: str | None) -> LegalHold:
        hold = self._write(lambda uow: use_cases.release_hold(
            uow, staff, hold_id, reason=reason, now=self.clock.now(), policy=self.policy))
        self._trace(staff, channel, AuditAction.UPDATE, f"lifecycle release {hold_id}",
                    source=source, persons=(hold.person_id,) if hold.person_id else (),
                    detail={"hold": hold_id, "reason": reason})
        return hold

    # -- proposals -----------------------------------------------------------------------

    def propose(self, staff: Staff, establishment: str, as_of: date, *, channel: str,
                source: str | None) -> DestructionProposal:
        proposal = self._write(lambda uow: use_cases.propose_destruction(
            uow, staff, establishment, as_of, self.clock.now(), self.policy))
        self._trace(staff, channel, AuditAction.CREATE, f"lifecycle propose {proposal.id}",
                    source=source, detail={"proposal": proposal.id,
                                           "studies": len(proposal.items)})
        return proposal

    def proposal(self, proposal_id: int) -> DestructionProposal:
        """Raises UnknownIdentifierError."""
        with self.uow_factory(read_only=True) as uow:
            found = uow.lifecycle.proposal(proposal_id)
        if found is None:
            raise UnknownIdentifierError(f"no destruction proposal {proposal_id}")
        return found

    def proposals(self, establishment: str | None = None) -> list[DestructionProposal]:
        with self.uow_factory(read_only=True) as uow:
            return uow.lifecycle.proposals(establishment)

    def approve(self, staff: Staff, proposal_id: int, role: str | None, *, channel: str,
                source: str | None) -> DestructionProposal:
        proposal = self._write(lambda uow: use_cases.approve(
            uow, staff, proposal_id, self.clock.now(), role))
        given = next(a for a in proposal.approvals if a.approved_by == staff.name)
        self._trace(staff, channel, AuditAction.UPDATE, f"lifecycle approve {proposal_id}",
                    source=source, detail={"proposal": proposal_id, "role": given.role})
        return proposal

    def visa(self, staff: Staff, proposal_id: int, reference: str, *, channel: str,
             source: str | None) -> DestructionProposal:
        proposal = self._write(lambda uow: use_cases.record_visa(
            uow, staff, proposal_id, reference, self.clock.now()))
        self._trace(staff, channel, AuditAction.UPDATE, f"lifecycle visa {proposal_id}",
                    source=source, detail={"proposal": proposal_id, "reference": reference})
        return proposal

    def destroy(self, staff: Staff, proposal_id: int, *, channel: str, source: str | None,
                progress: Callable[[str], None] | None = None) -> DestructionReport:
        """Destroy an approved, visaed proposal; each study destroyed is audited as it goes.
        A study whose destruction committed in a run that died before its audit event was
        written gets that event now (found missing from the trail). Raises the use case's
        errors."""
        traced: set[str] = set()

        def destroyed(study_uid: str, person_id: int | None) -> None:
            self._trace(staff, channel, AuditAction.DELETE, f"lifecycle destroy {study_uid}",
                        source=source, persons=(person_id,) if person_id else (),
                        detail={**STUDY_DELETED, "study": study_uid, "proposal": proposal_id})
            traced.add(study_uid)
            if progress is not None:
                progress(study_uid)

        report = use_cases.destroy_proposal(self.uow_factory, self.blobs, staff, proposal_id,
                                            self.clock.now, self.policy, destroyed)
        self._trace_missed(proposal_id, [u for u in report.destroyed if u not in traced],
                           channel, source)
        self._trace(staff, channel, AuditAction.DELETE, f"lifecycle destroy proposal "
                    f"{proposal_id}", source=source, detail={
                        "proposal": proposal_id, "destroyed": len(report.destroyed),
                        "kept": [list(k) for k in report.kept]})
        return report

    def _trace_missed(self, proposal_id: int, study_uids: list[str], channel: str,
                      source: str | None) -> None:
        """The "Study Deleted" events of studies destroyed by an earlier run of this
        proposal that are not in the trail (the run died between the commit and the
        event), written now on behalf of whoever destroyed them."""
        if not study_uids:
            return
        proposal = self.proposal(proposal_id)
        items = {i.study_instance_uid: i for i in proposal.items}
        by_actor: dict[str, list[Tombstone]] = {}
        for uid in study_uids:
            tombstone = self.tombstone(uid)
            if tombstone is not None:
                by_actor.setdefault(tombstone.destroyed_by, []).append(tombstone)
        for actor, tombstones in by_actor.items():
            since = min(t.destroyed_at for t in tombstones) - timedelta(minutes=1)
            seen = {str(e.detail.get("study")) for e in self.audit.search(
                actor=f"user:{actor}", since=since, limit=10 * len(proposal.items) + 100)
                if e.detail.get("event_id") == STUDY_DELETED["event_id"]
                and e.detail.get("proposal") == proposal_id}
            for tombstone in tombstones:
                uid = tombstone.study_instance_uid
                if uid in seen:
                    continue
                item = items.get(uid)
                person = self._person_of(proposal.establishment, item.patient) if item else None
                self._trace(Staff(actor), channel, AuditAction.DELETE,
                            f"lifecycle destroy {uid}", source=source,
                            persons=(person,) if person else (), detail={
                                **STUDY_DELETED, "study": uid, "proposal": proposal_id,
                                "destroyed_at": tombstone.destroyed_at.isoformat(),
                                "recorded_on_resumption": True})

    def _person_of(self, establishment: str, patient: str) -> int | None:
        """The person a destroyed study's patient record (as the elimination list names
        it) belongs to now, if it still exists."""
        try:
            identifier = (Identifier.parse(patient) if "|" in patient
                          else Identifier(establishment, patient))
        except ValueError:
            return None
        with self.uow_factory(read_only=True) as uow:
            record = uow.records.by_identifier(identifier)
            link = uow.links.for_record(record.id) if record and record.id else None
            person = current_person(uow, link.person_id) if link else None
            return person.id if person is not None else None

    def tombstones(self, establishment: str | None = None) -> list[Tombstone]:
        with self.uow_factory(read_only=True) as uow:
            return uow.lifecycle.tombstones(establishment)

    def tombstone(self, study_uid: str) -> Tombstone | None:
        with self.uow_factory(read_only=True) as uow:
            return uow.lifecycle.tombstone(study_uid)

    # -- corrections ---------------------------------------------------------------------

    def reassign(self, staff: Staff, study_uid: str, to: Identifier, reason: str, *,
                 channel: str, source: str | None) -> Reassignment:
        def work(uow: ArchiveUnitOfWork) -> tuple[Reassignment, tuple[int, ...]]:
            moved = use_cases.reassign_study(uow, staff, study_uid, to, reason,
                                             self.clock.now())
            persons = set()
            for identifier in (moved.from_patient, moved.to_patient):
                record = uow.records.by_identifier(identifier)
                link = uow.links.for_record(record.id) if record and record.id else None
                person = current_person(uow, link.person_id) if link else None
                if person is not None and person.id is not None:
                    persons.add(person.id)
            return moved, tuple(sorted(persons))

        moved, persons = self._write(work)
        self._trace(staff, channel, AuditAction.UPDATE, f"archive reassign {study_uid}",
                    source=source, persons=persons, detail={
                        "study": study_uid, "from": str(moved.from_patient),
                        "to": str(moved.to_patient), "reason": reason, "iocm": "113038"})
        return moved
