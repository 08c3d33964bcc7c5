"""The console's pages for those who answer for the index: the identity-vigilance
indicators, the archive's lifecycle, the access trail."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from adapters.console.common import (
    CONSOLE,
    MAX_ID,
    Auditor,
    Overseer,
    StaffUser,
    bad,
    nines,
    page,
    parse_day,
    path_number,
    read_form,
    see_other,
    staff_of,
)
from adapters.http.deps import CallerDep, ContainerDep, audit
from adapters.http.errors import http_error
from mpi.archive.lifecycle import BORDEREAU_COLUMNS, bordereau_rows, totals_by_year
from mpi.audit import AuditAction
from mpi.errors import MPIError

__all__ = ["router"]

router = APIRouter(prefix=CONSOLE, tags=["console"], include_in_schema=False)


# -- indicators ----------------------------------------------------------------------------


def _histogram(scores: list[float], width: float = 0.25) -> list[tuple[float, int]]:
    bins = Counter(min(31, int(nines(s) / width)) for s in scores)
    return [(i * width, bins.get(i, 0)) for i in range(32)]


@router.get("/indicators")
def indicators(request: Request, container: ContainerDep, caller: CallerDep, user: Overseer,
               auto: str = "") -> HTMLResponse:
    model = container.matcher.model
    current = model.auto_link_probability
    try:
        proposed = float(auto) if auto else current
    except ValueError:
        raise bad("the threshold is a probability between 0.5 and 1") from None
    if not 0.5 <= proposed < 1.0:
        raise bad("the threshold is a probability between 0.5 and 1 (1 excluded)")
    figures = container.console.indicators(container.clock.now())
    sample = container.console.score_sample()
    changed = sum(1 for s in sample if (s >= current) != (s >= proposed))
    histogram = _histogram(sample)
    return page(request, caller, "indicators.html", figures=figures, histogram=histogram,
                 top=max([n for _, n in histogram] or [1]) or 1, current=current,
                 proposed=proposed, review=model.review_probability, changed=changed,
                 sample=len(sample), nines=nines,
                 sample_json=json.dumps([round(s, 8) for s in sample]))


# -- the archive's lifecycle ---------------------------------------------------------------


@router.get("/lifecycle")
def lifecycle(request: Request, container: ContainerDep, caller: CallerDep, user: StaffUser,
              establishment: str = "") -> HTMLResponse:
    service = container.lifecycle
    rows = service.report(establishment or None, None, staff=staff_of(user), channel="console",
                          source=request.client.host if request.client else None)
    return page(request, caller, "lifecycle.html", totals=totals_by_year(rows),
                 holds=service.holds(True), proposals=service.proposals(establishment or None),
                 tombstones=service.tombstones(establishment or None),
                 establishments=[a.code for a in container.registry.all
                                 if a.kind.value == "establishment"],
                 establishment=establishment)


@router.get("/lifecycle/proposals/{proposal_id}")
def proposal(proposal_id: str, request: Request, container: ContainerDep, caller: CallerDep,
             user: StaffUser) -> HTMLResponse:
    number = path_number(proposal_id, "proposal")
    try:
        found = container.lifecycle.proposal(number)
    except MPIError as exc:
        raise http_error(exc) from None
    audit(request, channel="console", action=AuditAction.READ,
          detail={"proposal": number})
    return page(request, caller, "bordereau.html", proposal=found,
                 columns=BORDEREAU_COLUMNS, rows=bordereau_rows(found))


async def _lifecycle_act(request: Request, work: Any, back: str) -> Response:
    try:
        await run_in_threadpool(work)
    except MPIError as exc:
        raise http_error(exc) from None
    return see_other(back)


@router.post("/lifecycle/holds")
async def place_hold(request: Request, container: ContainerDep, user: StaffUser) -> Response:
    form = await read_form(request)
    person, study = form.get("person_id", "").strip(), form.get("study", "").strip()
    if (not person) == (not study) or (person and not person.isdigit()):
        raise bad("name a person number or a study, one of the two")
    if not form.get("reason", "").strip() or not form.get("reference", "").strip():
        raise bad("a hold needs its reason and its reference")
    return await _lifecycle_act(request, lambda: container.lifecycle.hold(
        staff_of(user), reason=form["reason"].strip(), reference=form["reference"].strip(),
        person_id=int(person) if person else None, study_uid=study or None,
        channel="console", source=request.client.host if request.client else None),
        f"{CONSOLE}/lifecycle")


@router.post("/lifecycle/holds/{hold_id}/release")
async def release_hold(hold_id: str, request: Request, container: ContainerDep,
                       user: StaffUser) -> Response:
    number = path_number(hold_id, "hold")
    reason = (await read_form(request)).get("reason", "").strip()
    if not reason:
        raise bad("releasing a hold needs its reason")
    return await _lifecycle_act(request, lambda: container.lifecycle.release(
        staff_of(user), number, reason, channel="console",
        source=request.client.host if request.client else None), f"{CONSOLE}/lifecycle")


@router.post("/lifecycle/proposals")
async def propose(request: Request, container: ContainerDep, user: StaffUser) -> Response:
    establishment = (await read_form(request)).get("establishment", "").strip()
    if not establishment:
        raise bad("name the establishment")
    return await _lifecycle_act(request, lambda: container.lifecycle.propose(
        staff_of(user), establishment, container.clock.now().date(), channel="console",
        source=request.client.host if request.client else None), f"{CONSOLE}/lifecycle")


@router.post("/lifecycle/proposals/{proposal_id}/{act}")
async def proposal_act(proposal_id: str, act: str, request: Request, container: ContainerDep,
                       user: StaffUser) -> Response:
    number = path_number(proposal_id, "proposal")
    form = await read_form(request)
    source = request.client.host if request.client else None
    back = f"{CONSOLE}/lifecycle/proposals/{number}"
    service = container.lifecycle
    if act == "approvals":
        role = form.get("role") or None
        if role not in (None, "dim", "director"):
            raise bad("the role is dim or director")
        return await _lifecycle_act(request, lambda: service.approve(
            staff_of(user), number, role, channel="console", source=source), back)
    if act == "visa":
        reference = form.get("reference", "").strip()
        if not reference:
            raise bad("the visa needs its reference")
        return await _lifecycle_act(request, lambda: service.visa(
            staff_of(user), number, reference, channel="console", source=source), back)
    if act == "destruction":
        return await _lifecycle_act(request, lambda: service.destroy(
            staff_of(user), number, channel="console", source=source), back)
    raise bad(f"no action {act[:40]}", 404)


# -- the access trail ----------------------------------------------------------------------


def _instant(text: str, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        day = parse_day(text)
    except ValueError:
        day = None
    if day is None:
        raise bad("bad date: use JJ/MM/AAAA or AAAA-MM-JJ")
    from datetime import UTC
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


@router.get("/audit")
def audit_page(request: Request, container: ContainerDep, caller: CallerDep, user: Auditor,
               actor: str = "", person: str = "", channel: str = "", since: str = "",
               until: str = "") -> HTMLResponse:
    if person and (not person.isdigit() or int(person) > MAX_ID):
        raise bad("the person is a number")
    events = container.audit.search(
        person_id=int(person) if person else None, actor=actor.strip() or None, limit=500,
        since=_instant(since), until=_instant(until, end=True))
    if channel:
        events = [e for e in events if e.channel == channel]
    shown = events[:200]
    audit(request, channel="console", action=AuditAction.SEARCH,
          persons={p for e in shown for p in e.persons}, detail={"audit_trail": True})
    return page(request, caller, "audit.html", events=shown, actor=actor, person_filter=person,
                 channel=channel, since=since, until=until)


@router.get("/audit/persons/{person_id}")
def audit_of_person(person_id: str, request: Request, container: ContainerDep,
                    caller: CallerDep, user: Auditor) -> HTMLResponse:
    number = path_number(person_id, "patient")
    events = [e for e in container.audit.search(person_id=number, limit=5000)
              if e.outcome == "success"]
    who: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        entry = who.setdefault((event.actor, event.channel), {
            "actor": event.actor, "channel": event.channel, "count": 0, "first": event.occurred_at,
            "last": event.occurred_at, "sources": set(), "actions": set()})
        entry["count"] += 1
        entry["first"] = min(entry["first"], event.occurred_at)
        entry["last"] = max(entry["last"], event.occurred_at)
        entry["sources"].add(event.source or "")
        entry["actions"].add(event.action.value)
    audit(request, channel="console", action=AuditAction.READ, persons={number},
          detail={"audit_trail": True})
    return page(request, caller, "audit_person.html", number=number,
                 accesses=sorted(who.values(), key=lambda e: e["last"], reverse=True))

