"""Legal holds, destruction proposals and tombstones on SQL (implements
:class:`mpi.archive.ports.LifecycleRepository`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping

from adapters.sql.engine import SqlConnection
from adapters.sql.tables import (
    lifecycle_approvals,
    lifecycle_holds,
    lifecycle_proposal_items,
    lifecycle_proposals,
    lifecycle_tombstones,
)
from mpi.archive import (
    Approval,
    DestructionProposal,
    ItemOutcome,
    LegalHold,
    ProposalItem,
    ProposalStatus,
    Tombstone,
)

__all__ = ["SqlLifecycleRepository"]

_h, _pr, _it = lifecycle_holds.c, lifecycle_proposals.c, lifecycle_proposal_items.c
_ap, _t = lifecycle_approvals.c, lifecycle_tombstones.c
_HOLD_COLUMNS = ("person_id", "study_instance_uid", "reason", "reference", "placed_by",
                 "placed_at", "released_by", "released_at", "release_reason")
_PROPOSAL_COLUMNS = ("establishment", "as_of", "proposed_by", "proposed_at",
                     "visa_reference", "visa_by", "visa_at", "destroyed_by", "destroyed_at")


class SqlLifecycleRepository:
    def __init__(self, sql: SqlConnection) -> None:
        self._sql = sql

    # -- holds ---------------------------------------------------------------------------

    def add_hold(self, hold: LegalHold) -> None:
        hold.id = self._sql.execute(insert(lifecycle_holds).returning(_h.id), {
            name: getattr(hold, name) for name in _HOLD_COLUMNS}).scalar_one()

    def hold(self, hold_id: int) -> LegalHold | None:
        row = self._sql.execute(select(lifecycle_holds).where(_h.id == hold_id)).mappings().first()
        return None if row is None else _hold(row)

    def save_hold(self, hold: LegalHold) -> None:
        self._sql.execute(update(lifecycle_holds).where(_h.id == hold.id).values(
            {name: getattr(hold, name) for name in _HOLD_COLUMNS}))

    def holds(self, active_only: bool = True) -> list[LegalHold]:
        statement = select(lifecycle_holds).order_by(_h.id)
        if active_only:
            statement = statement.where(_h.released_at.is_(None))
        return [_hold(row) for row in self._sql.execute(statement).mappings()]

    # -- proposals -----------------------------------------------------------------------

    def add_proposal(self, proposal: DestructionProposal) -> None:
        proposal.id = self._sql.execute(
            insert(lifecycle_proposals).returning(_pr.id), _proposal_row(proposal)).scalar_one()
        if proposal.items:
            self._sql.execute(insert(lifecycle_proposal_items),
                              [_item_row(proposal.id, item) for item in proposal.items])
        self._write_approvals(proposal)

    def proposal(self, proposal_id: int) -> DestructionProposal | None:
        row = self._sql.execute(
            select(lifecycle_proposals).where(_pr.id == proposal_id)).mappings().first()
        if row is None:
            return None
        proposal = _proposal(row)
        proposal.items = [_item(r) for r in self._sql.execute(
            select(lifecycle_proposal_items).where(_it.proposal_id == proposal_id)
            .order_by(_it.study_instance_uid)).mappings()]
        proposal.approvals = [
            Approval(r["role"], r["approved_by"], r["approved_at"], r["roles_verified"])
            for r in self._sql.execute(
                select(lifecycle_approvals).where(_ap.proposal_id == proposal_id)
                .order_by(_ap.approved_at, _ap.role)).mappings()]
        return proposal

    def save_proposal(self, proposal: DestructionProposal) -> None:
        self._sql.execute(update(lifecycle_proposals).where(_pr.id == proposal.id)
                          .values(_proposal_row(proposal)))
        for item in proposal.items:
            self._sql.execute(
                update(lifecycle_proposal_items)
                .where(_it.proposal_id == proposal.id,
                       _it.study_instance_uid == item.study_instance_uid)
                .values(outcome=item.outcome.value, outcome_reason=item.outcome_reason))
        self._write_approvals(proposal)

    def _write_approvals(self, proposal: DestructionProposal) -> None:
        self._sql.execute(delete(lifecycle_approvals).where(_ap.proposal_id == proposal.id))
        if proposal.approvals:
            self._sql.execute(insert(lifecycle_approvals), [
                {"proposal_id": proposal.id, "role": a.role, "approved_by": a.approved_by,
                 "approved_at": a.approved_at, "roles_verified": a.roles_verified}
                for a in proposal.approvals])

    def proposals(self, establishment: str | None = None) -> list[DestructionProposal]:
        statement = select(lifecycle_proposals).order_by(_pr.id.desc())
        if establishment is not None:
            statement = statement.where(_pr.establishment == establishment)
        found = [_proposal(row) for row in self._sql.execute(statement).mappings()]
        for proposal in found:
            proposal.approvals = [
                Approval(r["role"], r["approved_by"], r["approved_at"], r["roles_verified"])
                for r in self._sql.execute(
                    select(lifecycle_approvals).where(_ap.proposal_id == proposal.id)
                    .order_by(_ap.approved_at, _ap.role)).mappings()]
        return found

    # -- tombstones ----------------------------------------------------------------------

    def add_tombstone(self, tombstone: Tombstone) -> None:
        self._sql.execute(insert(lifecycle_tombstones), {
            "study_instance_uid": tombstone.study_instance_uid,
            "establishment": tombstone.establishment, "study_date": tombstone.study_date,
            "first_received_at": tombstone.first_received_at,
            "last_received_at": tombstone.last_received_at,
            "instances": tombstone.instances, "size_bytes": tombstone.size_bytes,
            "series": list(tombstone.series), "files": [dict(f) for f in tombstone.files],
            "proposal_id": tombstone.proposal_id, "decision": tombstone.decision,
            "destroyed_by": tombstone.destroyed_by, "destroyed_at": tombstone.destroyed_at,
        })

    def tombstone(self, study_uid: str) -> Tombstone | None:
        row = self._sql.execute(select(lifecycle_tombstones).where(
            _t.study_instance_uid == study_uid)).mappings().first()
        return None if row is None else _tombstone(row)

    def tombstones(self, establishment: str | None = None,
                   limit: int = 100_000) -> list[Tombstone]:
        statement = select(lifecycle_tombstones).order_by(_t.destroyed_at.desc(),
                                                           _t.id.desc()).limit(limit)
        if establishment is not None:
            statement = statement.where(_t.establishment == establishment)
        return [_tombstone(row) for row in self._sql.execute(statement).mappings()]


def _hold(row: RowMapping) -> LegalHold:
    return LegalHold(id=row["id"], **{name: row[name] for name in _HOLD_COLUMNS})


def _proposal_row(proposal: DestructionProposal) -> dict[str, Any]:
    row = {name: getattr(proposal, name) for name in _PROPOSAL_COLUMNS}
    row["status"] = proposal.status.value
    return row


def _proposal(row: RowMapping) -> DestructionProposal:
    return DestructionProposal(id=row["id"], status=ProposalStatus(row["status"]),
                               **{name: row[name] for name in _PROPOSAL_COLUMNS})


def _item_row(proposal_id: int | None, item: ProposalItem) -> dict[str, Any]:
    return {"proposal_id": proposal_id, "study_instance_uid": item.study_instance_uid,
            "patient": item.patient, "study_date": item.study_date,
            "last_visit": item.last_visit, "expires_on": item.expires_on, "basis": item.basis,
            "size_bytes": item.size_bytes, "instances": item.instances,
            "outcome": item.outcome.value, "outcome_reason": item.outcome_reason}


def _item(row: RowMapping) -> ProposalItem:
    return ProposalItem(row["study_instance_uid"], row["patient"], row["study_date"],
                        row["last_visit"], row["expires_on"], row["basis"], row["size_bytes"],
                        row["instances"], ItemOutcome(row["outcome"]), row["outcome_reason"])


def _tombstone(row: RowMapping) -> Tombstone:
    return Tombstone(
        study_instance_uid=row["study_instance_uid"], establishment=row["establishment"],
        study_date=row["study_date"], first_received_at=row["first_received_at"],
        last_received_at=row["last_received_at"], instances=row["instances"],
        size_bytes=row["size_bytes"], series=tuple(row["series"]),
        files=tuple(row["files"]), proposal_id=row["proposal_id"],
        decision=dict(row["decision"]), destroyed_by=row["destroyed_by"],
        destroyed_at=row["destroyed_at"], id=row["id"])
