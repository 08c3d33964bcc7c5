"""The archive's legal lifecycle over HTTP (/api/lifecycle): the retention report, legal
holds, destruction proposals (the elimination list as JSON or CSV), approvals, the archives'
visa, destruction and tombstones.

Only people call it (a console session or a person's token), holding one of the lifecycle's
roles: archivist, dim, director, or auditor (reads only). Which role each act needs, and the
separation of duties (one DIM, one director, the proposer approves nothing), is the core's
rule (mpi.archive.lifecycle): :func:`staff_of` hands it the person and the roles they hold.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from adapters.http.deps import ContainerDep, requires_role
from adapters.http.errors import http_error
from mpi.archive import DestructionProposal, LegalHold, RetentionRow, Tombstone
from mpi.archive.lifecycle import BORDEREAU_COLUMNS, Staff, bordereau_rows, totals_by_year
from mpi.errors import MPIError
from mpi.security import Principal, Role

__all__ = ["router", "staff_of"]

router = APIRouter(prefix="/api/lifecycle", tags=["lifecycle"])
Number = Annotated[int, Path(ge=1, le=2**63 - 1)]
# Text the databases can hold (PostgreSQL refuses NUL characters): anything else is a 422.
TEXT = r"^[^\x00]*$"


# A person of the archive's staff (or an auditor, who reads).
StaffUser = Annotated[Principal, Depends(requires_role(
    Role.ARCHIVIST, Role.DIM, Role.DIRECTOR, Role.AUDITOR))]


def staff_of(user: Principal) -> Staff:
    """The actor of a lifecycle call: the person and the roles they hold."""
    return Staff(user.name, frozenset(user.roles))


class HoldIn(BaseModel):
    person_id: int | None = Field(None, ge=1, le=2**63 - 1)
    study_instance_uid: str | None = Field(None, min_length=1, max_length=64, pattern=TEXT)
    reason: str = Field(min_length=1, max_length=2000, pattern=TEXT)
    reference: str = Field(min_length=1, max_length=200, pattern=TEXT)

    @model_validator(mode="after")
    def one_subject(self) -> HoldIn:
        if (self.person_id is None) == (self.study_instance_uid is None):
            raise ValueError("name a person_id or a study_instance_uid, one of the two")
        return self


class ReleaseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, pattern=TEXT)


class ProposalIn(BaseModel):
    establishment: str = Field(min_length=1, max_length=64, pattern=TEXT)
    as_of: date | None = None


class ApprovalIn(BaseModel):
    role: Literal["dim", "director"] | None = None


class VisaIn(BaseModel):
    reference: str = Field(min_length=1, max_length=200, pattern=TEXT)


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None


def row_json(row: RetentionRow) -> dict[str, Any]:
    return {"study_instance_uid": row.study_instance_uid, "establishment": row.establishment,
            "patient": row.patient, "expires_on": _day(row.expires_on), "basis": row.basis,
            "last_visit": _day(row.last_visit), "held": row.held,
            "size_bytes": row.size_bytes}


def hold_json(hold: LegalHold) -> dict[str, Any]:
    return {"id": hold.id, "person_id": hold.person_id,
            "study_instance_uid": hold.study_instance_uid, "reason": hold.reason,
            "reference": hold.reference, "placed_by": hold.placed_by,
            "placed_at": hold.placed_at.isoformat(), "active": hold.active,
            "released_by": hold.released_by,
            "released_at": hold.released_at.isoformat() if hold.released_at else None,
            "release_reason": hold.release_reason}


def proposal_json(proposal: DestructionProposal, items: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": proposal.id, "establishment": proposal.establishment,
        "as_of": proposal.as_of.isoformat(), "status": proposal.status.value,
        "proposed_by": proposal.proposed_by, "proposed_at": proposal.proposed_at.isoformat(),
        "approvals": [{"role": a.role, "by": a.approved_by, "at": a.approved_at.isoformat(),
                       "roles_verified": a.roles_verified} for a in proposal.approvals],
        "visa": {"reference": proposal.visa_reference, "by": proposal.visa_by,
                 "at": proposal.visa_at.isoformat() if proposal.visa_at else None},
        "studies": len(proposal.items),
        "size_bytes": sum(i.size_bytes for i in proposal.items),
    }
    if items:
        body["items"] = bordereau_rows(proposal)
    return body


def tombstone_json(tombstone: Tombstone) -> dict[str, Any]:
    return {"study_instance_uid": tombstone.study_instance_uid,
            "establishment": tombstone.establishment, "study_date": _day(tombstone.study_date),
            "first_received_at": tombstone.first_received_at.isoformat(),
            "last_received_at": tombstone.last_received_at.isoformat(),
            "instances": tombstone.instances, "size_bytes": tombstone.size_bytes,
            "series": list(tombstone.series), "files": list(tombstone.files),
            "proposal_id": tombstone.proposal_id, "decision": tombstone.decision,
            "destroyed_by": tombstone.destroyed_by,
            "destroyed_at": tombstone.destroyed_at.isoformat()}


@router.get("/report", summary="The end of retention of each study, with totals by year")
def report(request: Request, container: ContainerDep, user: StaffUser,
           establishment: str | None = Query(None, max_length=64, pattern=TEXT),
           as_of: date | None = None) -> dict[str, Any]:
    rows = container.lifecycle.report(establishment, as_of, staff=staff_of(user),
                                      channel="api", source=_source(request))
    return {"studies": [row_json(r) for r in rows], "totals": totals_by_year(rows)}


@router.get("/holds", summary="Legal holds")
def holds(container: ContainerDep, user: StaffUser,
          all: bool = False) -> dict[str, Any]:
    return {"holds": [hold_json(h) for h in container.lifecycle.holds(not all)]}


@router.post("/holds", status_code=201, summary="Place a legal hold (role archivist)")
def place_hold(body: HoldIn, request: Request, container: ContainerDep,
               user: StaffUser) -> dict[str, Any]:
    try:
        hold = container.lifecycle.hold(
            staff_of(user), reason=body.reason, reference=body.reference,
            person_id=body.person_id, study_uid=body.study_instance_uid, channel="api",
            source=_source(request))
    except MPIError as exc:
        raise http_error(exc) from None
    return hold_json(hold)


@router.post("/holds/{hold_id}/release", summary="Release a legal hold (role archivist)")
def release_hold(hold_id: Number, body: ReleaseIn, request: Request, container: ContainerDep,
                 user: StaffUser) -> dict[str, Any]:
    try:
        hold = container.lifecycle.release(staff_of(user), hold_id, body.reason,
                                           channel="api", source=_source(request))
    except MPIError as exc:
        raise http_error(exc) from None
    return hold_json(hold)


@router.get("/proposals", summary="Destruction proposals, newest first")
def proposals(container: ContainerDep, user: StaffUser,
              establishment: str | None = Query(None, max_length=64, pattern=TEXT)) -> dict[str, Any]:
    return {"proposals": [proposal_json(p, items=False)
                          for p in container.lifecycle.proposals(establishment)]}


@router.post("/proposals", status_code=201,
             summary="Propose every expired, unheld study of an establishment for destruction "
                     "(role archivist)")
def propose(body: ProposalIn, request: Request, container: ContainerDep,
            user: StaffUser) -> dict[str, Any]:
    try:
        proposal = container.lifecycle.propose(
            staff_of(user), body.establishment, body.as_of or container.clock.now().date(),
            channel="api", source=_source(request))
    except MPIError as exc:
        raise http_error(exc) from None
    return proposal_json(proposal)


@router.get("/proposals/{proposal_id}", summary="A proposal and its elimination list")
def show_proposal(proposal_id: Number, container: ContainerDep,
                  user: StaffUser) -> dict[str, Any]:
    try:
        return proposal_json(container.lifecycle.proposal(proposal_id))
    except MPIError as exc:
        raise http_error(exc) from None


@router.get("/proposals/{proposal_id}/bordereau.csv",
            summary="The elimination list (bordereau d'élimination) as CSV",
            response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def bordereau(proposal_id: Number, container: ContainerDep, user: StaffUser) -> Response:
    try:
        proposal = container.lifecycle.proposal(proposal_id)
    except MPIError as exc:
        raise http_error(exc) from None
    return Response(bordereau_csv(proposal), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="bordereau-{proposal_id}.csv"'})


def bordereau_csv(proposal: DestructionProposal) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=BORDEREAU_COLUMNS)
    writer.writeheader()
    writer.writerows(bordereau_rows(proposal))
    return out.getvalue()


@router.post("/proposals/{proposal_id}/approvals",
             summary="Approve: the DIM's opinion, then the director's decision")
def approve(proposal_id: Number, body: ApprovalIn, request: Request, container: ContainerDep,
            user: StaffUser) -> dict[str, Any]:
    try:
        proposal = container.lifecycle.approve(staff_of(user), proposal_id, body.role,
                                               channel="api", source=_source(request))
    except MPIError as exc:
        raise http_error(exc) from None
    return proposal_json(proposal)


@router.post("/proposals/{proposal_id}/visa",
             summary="Record the departmental archives' visa (role archivist)")
def visa(proposal_id: Number, body: VisaIn, request: Request, container: ContainerDep,
         user: StaffUser) -> dict[str, Any]:
    try:
        proposal = container.lifecycle.visa(staff_of(user), proposal_id, body.reference,
                                            channel="api", source=_source(request))
    except MPIError as exc:
        raise http_error(exc) from None
    return proposal_json(proposal)


@router.post("/proposals/{proposal_id}/destruction",
             summary="Destroy an approved, visaed proposal (role archivist)")
async def destroy(proposal_id: Number, request: Request, container: ContainerDep,
                  user: StaffUser) -> dict[str, Any]:
    try:
        report = await run_in_threadpool(container.lifecycle.destroy, staff_of(user),
                                         proposal_id, channel="api", source=_source(request))
    except MPIError as exc:
        raise http_error(exc) from None
    return {"proposal_id": proposal_id, "destroyed": report.destroyed,
            "kept": [{"study_instance_uid": uid, "reason": why} for uid, why in report.kept],
            "files_deleted": report.files_deleted}


@router.get("/tombstones", summary="What remains of destroyed studies")
def tombstones(container: ContainerDep, user: StaffUser,
               establishment: str | None = Query(None, max_length=64, pattern=TEXT)) -> dict[str, Any]:
    return {"tombstones": [tombstone_json(t)
                           for t in container.lifecycle.tombstones(establishment)]}


def _source(request: Request) -> str | None:
    return request.client.host if request.client else None
