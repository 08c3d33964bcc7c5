"""The console's pages over the index: patients (search, a person's identity, history and
studies), the review queue, the indicators, the archive's lifecycle, the access trail, the
interfaces, and the accounts. Each page checks its role; each view of patient data is traced
in the access trail like any other read; each change carries the session's CSRF token
(checked for every route by :func:`adapters.http.deps.deny_anonymous`) and goes through the
service the HTTP API uses."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from adapters.console.pages import CONSOLE, render
from adapters.http.deps import CSRF_FIELD, CallerDep, ContainerDep, audit, requires_role
from adapters.http.errors import http_error
from mpi.archive import studies_of_person
from mpi.archive.lifecycle import BORDEREAU_COLUMNS, Staff, bordereau_rows, totals_by_year
from mpi.audit import AuditAction
from mpi.errors import MPIError
from mpi.identity import Actor
from mpi.model import Identifier, JournalStatus, ReviewDecision, master_id_of
from mpi.ports import PersonQuery
from mpi.queries import current_person, person_view, resolve_person, search_persons
from mpi.retry import retry_on_conflict
from mpi.review import COLLISION_DECISIONS, decide_review, show_review, undo_review
from mpi.security import Principal, Role

__all__ = ["router", "parse_day"]

router = APIRouter(prefix=CONSOLE, tags=["console"], include_in_schema=False)

Vigilance = Annotated[Principal, Depends(requires_role(Role.IDENTITY_VIGILANCE))]
StaffUser = Annotated[Principal, Depends(requires_role(Role.ARCHIVIST, Role.DIM, Role.DIRECTOR))]
Auditor = Annotated[Principal, Depends(requires_role(Role.AUDITOR))]
Admin = Annotated[Principal, Depends(requires_role(Role.ADMIN))]
Reader = Annotated[Principal, Depends(requires_role(*[r.value for r in Role]))]
# Who may see the indicators: the people who act on identities and those who answer for them.
Overseer = Annotated[Principal, Depends(requires_role(
    Role.IDENTITY_VIGILANCE, Role.DIM, Role.DIRECTOR, Role.ADMIN, Role.AUDITOR))]
PAGE = 50
_DAY_FR = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")
_DAY_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MAX_ID = 2**63 - 1


# The review queue's score bands: [low, high) of the match probability.
BANDS: dict[str, tuple[float | None, float | None]] = {
    "low": (None, 0.9), "mid": (0.9, 0.99), "high": (0.99, None)}


@dataclass(frozen=True)
class QueueFilter:
    establishment: str | None = None
    min_age_days: int | None = None
    band: str | None = None


def nines(probability: float) -> float:
    """A match probability on the "number of nines" scale: 0.9 → 1, 0.999 → 3 (capped at 8)."""
    if probability >= 1.0:
        return 8.0
    return min(8.0, max(0.0, -math.log10(1.0 - probability)))


def staff_of(user: Principal) -> Staff:
    """The actor of a lifecycle act: the person and the roles they hold."""
    return Staff(user.name, frozenset(user.roles))


def parse_day(text: str) -> date | None:
    """A date written JJ/MM/AAAA or AAAA-MM-JJ; None when the text is not shaped as one.
    Raises ValueError for a date of that shape that does not exist (31/02/2020)."""
    text = text.strip()
    if found := _DAY_FR.match(text):
        return date(int(found[3]), int(found[2]), int(found[1]))
    if found := _DAY_ISO.match(text):
        return date(int(found[1]), int(found[2]), int(found[3]))
    return None


def _bad(reason: str, status: int = 400) -> HTTPException:
    return HTTPException(status_code=status, detail=reason)


def _number(text: str, what: str) -> int:
    """A number from the path: anything else is a 404 page, never a crash."""
    if not text.isdigit() or not 1 <= int(text) <= _MAX_ID:
        raise _bad(f"no {what} {text[:40]}", 404)
    return int(text)


def _page(request: Request, caller: Any, template: str, code: int = 200,
          **context: Any) -> HTMLResponse:
    return render(request, template, code, person=caller.principal, csrf=caller.csrf,
                  csrf_field=CSRF_FIELD, **context)


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _actor(user: Principal) -> Actor:
    return Actor(user.actor_name, user.establishment)


async def _form(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items()}


# -- patients ------------------------------------------------------------------------------


def _find(container: Any, text: str) -> tuple[list[Any], int]:
    """Persons a search box names: an identifier (``DOMAIN|value``, or a value looked up in
    every domain: an IPP, an INS, a master id), a birth date, or names."""
    registry = container.registry
    text = text.strip()
    try:
        day = parse_day(text)
    except ValueError:
        raise _bad("bad date") from None
    with container.uow_factory(read_only=True) as uow:
        if day is not None:
            return search_persons(uow, registry, PersonQuery(birth_date=day), 0, PAGE)
        if "|" in text:
            domain, _, value = text.partition("|")
            try:
                registry.by_code(domain.strip())
            except MPIError as exc:
                raise _bad(exc.message) from None
            candidates = [Identifier(domain.strip(), value.strip())]
        elif re.fullmatch(r"[A-Za-z0-9._-]+", text) and any(ch.isdigit() for ch in text):
            candidates = [Identifier(a.code, text) for a in registry.all]
        else:
            candidates = []
        found: dict[int, Any] = {}
        for identifier in candidates:
            person = resolve_person(uow, registry, identifier)
            if person is not None and person.id is not None and person.id not in found:
                found[person.id] = person_view(uow, registry, person)
        if candidates:
            return list(found.values()), len(found)
        # Names as written (accents and case folded); a trailing * asks for a prefix.
        words = text.split()
        query = PersonQuery(family=words[0], given=words[1] if len(words) > 1 else None)
        return search_persons(uow, registry, query, 0, PAGE)


@router.get("/persons")
def persons(request: Request, container: ContainerDep, caller: CallerDep, user: Reader,
            q: str = "") -> HTMLResponse:
    if len(q) > 200:
        raise _bad("the search text is too long")
    views, total = _find(container, q) if q.strip() else ([], 0)
    if q.strip():
        audit(request, channel="console", action=AuditAction.SEARCH,
              persons={v.person.id for v in views if v.person.id is not None})
    return _page(request, caller, "persons.html", q=q, views=views, total=total,
                 searched=bool(q.strip()), master=container.registry.master.code,
                 master_id=master_id_of)


def _studies(uow: Any, person_id: int | None) -> list[Any]:
    return studies_of_person(uow, person_id) if person_id is not None else []


def _history(container: Any, uow: Any, view: Any) -> list[dict[str, Any]]:
    """What happened to a person: its records' links (how each was decided, with the score
    and evidence of the matcher), the review decisions about it (undoable), and the changes
    the access trail holds."""
    person_id = view.person.id
    entries: list[dict[str, Any]] = []
    for link in uow.links.of_person(person_id):
        record = next((r for r in view.records if r.id == link.record_id), None)
        entries.append({"at": link.decided_at, "kind": "ev.link", "who": link.decided_by,
                        "what": f"{record.identifier if record else link.record_id} "
                                f"({link.method.value})",
                        "why": link.evidence.get("reason", ""), "score": link.score,
                        "evidence": link.evidence.get("fields"), "task": None})
    record_ids = [r.id for r in view.records if r.id is not None]
    for task in container.console.person_tasks(person_id, record_ids):
        evidence = task["evidence"] or {}
        for undone in evidence.get("undone") or []:
            entries.append({"at": _when(undone.get("undone_at")), "kind": "ev.undone",
                            "who": undone.get("undone_by"),
                            "what": f"#{task['id']} {undone.get('decision')}",
                            "why": undone.get("undo_reason"), "score": task["score"],
                            "evidence": None, "task": None})
        if task["status"] == "decided":
            entries.append({"at": task["decided_at"], "kind": "ev.review",
                            "who": task["decided_by"], "what": f"#{task['id']} "
                            f"{task['decision']}", "why": task["reason"],
                            "score": task["score"], "evidence": evidence.get("fields"),
                            "task": task["id"] if task["decision"] not in
                            {d.value for d in COLLISION_DECISIONS} else None})
    for moved in container.console.reassignments(record_ids):
        entries.append({"at": moved["reassigned_at"], "kind": "ev.reassign",
                        "who": moved["reassigned_by"],
                        "what": f"{moved['study_instance_uid']}: {moved['from_authority']}|"
                                f"{moved['from_patient']} → {moved['to_authority']}|"
                                f"{moved['to_patient']}",
                        "why": moved["reason"], "score": None, "evidence": None,
                        "task": None})
    for event in container.audit.search(person_id=person_id, limit=100):
        if event.action in (AuditAction.CREATE, AuditAction.UPDATE, AuditAction.DELETE) \
                and event.outcome == "success":
            entries.append({"at": event.occurred_at, "kind": "ev.trail", "who": event.actor,
                            "what": f"{event.channel} {event.action.value} {event.subject}",
                            "why": event.detail.get("reason") or event.detail.get("decision")
                            or "", "score": None, "evidence": None, "task": None})
    floor = datetime.min.replace(tzinfo=None)
    return sorted(entries, key=lambda e: (e["at"].replace(tzinfo=None) if e["at"] else floor),
                  reverse=True)


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@router.get("/persons/{person_id}")
def person_page(person_id: str, request: Request, container: ContainerDep, caller: CallerDep,
                user: Reader) -> Response:
    number = _number(person_id, "patient")
    with container.uow_factory(read_only=True) as uow:
        person = current_person(uow, number)
        if person is None or person.id is None:
            raise _bad(f"no patient {number}", 404)
        if person.id != number:
            return _see_other(f"{CONSOLE}/persons/{person.id}")
        view = person_view(uow, container.registry, person)
        studies = _studies(uow, person.id)
        history = _history(container, uow, view)
    audit(request, channel="console", action=AuditAction.READ, persons={person.id})
    return _page(request, caller, "person.html", view=view, studies=studies, history=history,
                 master_id=master_id_of(person.id), vigilance=user.has_role(
                     Role.IDENTITY_VIGILANCE))


# -- the review queue ----------------------------------------------------------------------


@router.get("/review")
def review_queue(request: Request, container: ContainerDep, caller: CallerDep,
                 user: Vigilance, establishment: str = "", age: str = "", band: str = "",
                 offset: str = "0") -> HTMLResponse:
    if age and not age.isdigit() or not offset.isdigit() or band not in ("", *BANDS):
        raise _bad("bad filter: age and offset are numbers of days and tasks, the band is "
                   "low, mid or high")
    wanted = QueueFilter(establishment or None, int(age) if age else None, band or None)
    start = min(int(offset), _MAX_ID)
    tasks, total, counts = container.console.review_queue(
        container.clock.now(), wanted.establishment, wanted.min_age_days,
        BANDS.get(wanted.band or "", (None, None)), start, PAGE)
    audit(request, channel="console", action=AuditAction.SEARCH,
          persons={t["person_id"] for t in tasks})
    return _page(request, caller, "review.html", tasks=tasks, total=total, counts=counts,
                 wanted=wanted, offset=start, page=PAGE,
                 establishments=[a.code for a in container.registry.all
                                 if a.kind.value == "establishment"])


@router.get("/review/{task_id}")
def review_task(task_id: str, request: Request, container: ContainerDep, caller: CallerDep,
                user: Vigilance) -> HTMLResponse:
    number = _number(task_id, "review task")
    with container.uow_factory(read_only=True) as uow:
        try:
            view = show_review(uow, container.identity, number)
        except MPIError as exc:
            raise http_error(exc) from None
        own = view.record_person.person.id if view.record_person else None
        other = view.candidate.person.id if view.candidate else None
        own_studies = _studies(uow, own)
        other_studies = _studies(uow, other) if other != own else []
    persons = {p for p in (own, other) if p is not None}
    audit(request, channel="console", action=AuditAction.READ, persons=persons,
          detail={"review_task": number})
    fields = (view.task.evidence or {}).get("fields") or {}
    left = view.record.demographics.as_dict()
    right = view.candidate_record.demographics.as_dict() if view.candidate_record else (
        view.candidate.demographics.as_dict() if view.candidate else {})
    names = list(dict.fromkeys([*fields, *left, *right]))
    collision = view.task.kind.value == "collision"
    decisions = [d for d in ReviewDecision if (d in COLLISION_DECISIONS) == collision]
    return _page(request, caller, "review_task.html", view=view, fields=fields, left=left,
                 right=right, names=names, decisions=decisions, own_studies=own_studies,
                 other_studies=other_studies, evidence=view.task.evidence or {})


@router.post("/review/{task_id}/decision")
async def review_decide(task_id: str, request: Request, container: ContainerDep,
                        user: Vigilance) -> Response:
    number = _number(task_id, "review task")
    form = await _form(request)
    try:
        decision = ReviewDecision(form.get("decision", ""))
    except ValueError:
        raise _bad("choose a decision") from None
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > 2000:
        raise _bad("a decision needs its reason (2000 characters at most)")

    def decide() -> Any:
        with container.uow_factory() as uow:
            task = decide_review(uow, container.identity, number, decision, _actor(user),
                                 reason)
            uow.commit()
            return task

    try:
        task = await run_in_threadpool(retry_on_conflict, decide)
    except MPIError as exc:
        raise http_error(exc) from None
    audit(request, channel="console", action=AuditAction.UPDATE,
          persons={p for p in (task.person_id,) if p is not None},
          detail={"review_task": number, "decision": decision.value, "reason": reason})
    return _see_other(f"{CONSOLE}/persons/{task.person_id}")


@router.post("/review/{task_id}/undo")
async def review_undo(task_id: str, request: Request, container: ContainerDep,
                      user: Vigilance) -> Response:
    number = _number(task_id, "review task")
    reason = (await _form(request)).get("reason", "").strip()
    if not reason or len(reason) > 2000:
        raise _bad("undoing a decision needs its reason (2000 characters at most)")

    def undo() -> Any:
        with container.uow_factory() as uow:
            task = undo_review(uow, container.identity, number, _actor(user), reason)
            uow.commit()
            return task

    try:
        task = await run_in_threadpool(retry_on_conflict, undo)
    except MPIError as exc:
        raise http_error(exc) from None
    audit(request, channel="console", action=AuditAction.UPDATE,
          persons={p for p in (task.person_id,) if p is not None},
          detail={"review_task": number, "decision": "undo", "reason": reason})
    return _see_other(f"{CONSOLE}/review/{number}")


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
        raise _bad("the threshold is a probability between 0.5 and 1") from None
    if not 0.5 <= proposed < 1.0:
        raise _bad("the threshold is a probability between 0.5 and 1 (1 excluded)")
    figures = container.console.indicators(container.clock.now())
    sample = container.console.score_sample()
    changed = sum(1 for s in sample if (s >= current) != (s >= proposed))
    histogram = _histogram(sample)
    return _page(request, caller, "indicators.html", figures=figures, histogram=histogram,
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
    return _page(request, caller, "lifecycle.html", totals=totals_by_year(rows),
                 holds=service.holds(True), proposals=service.proposals(establishment or None),
                 tombstones=service.tombstones(establishment or None),
                 establishments=[a.code for a in container.registry.all
                                 if a.kind.value == "establishment"],
                 establishment=establishment)


@router.get("/lifecycle/proposals/{proposal_id}")
def proposal(proposal_id: str, request: Request, container: ContainerDep, caller: CallerDep,
             user: StaffUser) -> HTMLResponse:
    number = _number(proposal_id, "proposal")
    try:
        found = container.lifecycle.proposal(number)
    except MPIError as exc:
        raise http_error(exc) from None
    audit(request, channel="console", action=AuditAction.READ,
          detail={"proposal": number})
    return _page(request, caller, "bordereau.html", proposal=found,
                 columns=BORDEREAU_COLUMNS, rows=bordereau_rows(found))


async def _lifecycle_act(request: Request, work: Any, back: str) -> Response:
    try:
        await run_in_threadpool(work)
    except MPIError as exc:
        raise http_error(exc) from None
    return _see_other(back)


@router.post("/lifecycle/holds")
async def place_hold(request: Request, container: ContainerDep, user: StaffUser) -> Response:
    form = await _form(request)
    person, study = form.get("person_id", "").strip(), form.get("study", "").strip()
    if (not person) == (not study) or (person and not person.isdigit()):
        raise _bad("name a person number or a study, one of the two")
    if not form.get("reason", "").strip() or not form.get("reference", "").strip():
        raise _bad("a hold needs its reason and its reference")
    return await _lifecycle_act(request, lambda: container.lifecycle.hold(
        staff_of(user), reason=form["reason"].strip(), reference=form["reference"].strip(),
        person_id=int(person) if person else None, study_uid=study or None,
        channel="console", source=request.client.host if request.client else None),
        f"{CONSOLE}/lifecycle")


@router.post("/lifecycle/holds/{hold_id}/release")
async def release_hold(hold_id: str, request: Request, container: ContainerDep,
                       user: StaffUser) -> Response:
    number = _number(hold_id, "hold")
    reason = (await _form(request)).get("reason", "").strip()
    if not reason:
        raise _bad("releasing a hold needs its reason")
    return await _lifecycle_act(request, lambda: container.lifecycle.release(
        staff_of(user), number, reason, channel="console",
        source=request.client.host if request.client else None), f"{CONSOLE}/lifecycle")


@router.post("/lifecycle/proposals")
async def propose(request: Request, container: ContainerDep, user: StaffUser) -> Response:
    establishment = (await _form(request)).get("establishment", "").strip()
    if not establishment:
        raise _bad("name the establishment")
    return await _lifecycle_act(request, lambda: container.lifecycle.propose(
        staff_of(user), establishment, container.clock.now().date(), channel="console",
        source=request.client.host if request.client else None), f"{CONSOLE}/lifecycle")


@router.post("/lifecycle/proposals/{proposal_id}/{act}")
async def proposal_act(proposal_id: str, act: str, request: Request, container: ContainerDep,
                       user: StaffUser) -> Response:
    number = _number(proposal_id, "proposal")
    form = await _form(request)
    source = request.client.host if request.client else None
    back = f"{CONSOLE}/lifecycle/proposals/{number}"
    service = container.lifecycle
    if act == "approvals":
        role = form.get("role") or None
        if role not in (None, "dim", "director"):
            raise _bad("the role is dim or director")
        return await _lifecycle_act(request, lambda: service.approve(
            staff_of(user), number, role, channel="console", source=source), back)
    if act == "visa":
        reference = form.get("reference", "").strip()
        if not reference:
            raise _bad("the visa needs its reference")
        return await _lifecycle_act(request, lambda: service.visa(
            staff_of(user), number, reference, channel="console", source=source), back)
    if act == "destruction":
        return await _lifecycle_act(request, lambda: service.destroy(
            staff_of(user), number, channel="console", source=source), back)
    raise _bad(f"no action {act[:40]}", 404)


# -- the access trail ----------------------------------------------------------------------


def _instant(text: str, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        day = parse_day(text)
    except ValueError:
        day = None
    if day is None:
        raise _bad("bad date: use JJ/MM/AAAA or AAAA-MM-JJ")
    from datetime import UTC
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


@router.get("/audit")
def audit_page(request: Request, container: ContainerDep, caller: CallerDep, user: Auditor,
               actor: str = "", person: str = "", channel: str = "", since: str = "",
               until: str = "") -> HTMLResponse:
    if person and (not person.isdigit() or int(person) > _MAX_ID):
        raise _bad("the person is a number")
    events = container.audit.search(
        person_id=int(person) if person else None, actor=actor.strip() or None, limit=500,
        since=_instant(since), until=_instant(until, end=True))
    if channel:
        events = [e for e in events if e.channel == channel]
    shown = events[:200]
    audit(request, channel="console", action=AuditAction.SEARCH,
          persons={p for e in shown for p in e.persons}, detail={"audit_trail": True})
    return _page(request, caller, "audit.html", events=shown, actor=actor, person_filter=person,
                 channel=channel, since=since, until=until)


@router.get("/audit/persons/{person_id}")
def audit_of_person(person_id: str, request: Request, container: ContainerDep,
                    caller: CallerDep, user: Auditor) -> HTMLResponse:
    number = _number(person_id, "patient")
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
    return _page(request, caller, "audit_person.html", number=number,
                 accesses=sorted(who.values(), key=lambda e: e["last"], reverse=True))


# -- interfaces ----------------------------------------------------------------------------


@router.get("/interfaces")
def interfaces(request: Request, container: ContainerDep, caller: CallerDep,
               user: Admin) -> HTMLResponse:
    with container.uow_factory(read_only=True) as uow:
        errors = uow.journal.list([JournalStatus.ERROR, JournalStatus.REJECTED], limit=20)
    return _page(request, caller, "interfaces.html", traffic=container.console.traffic(),
                 errors=errors, jobs=container.jobs.snapshot(), conformance=None,
                 notice=request.query_params.get("notice"))


def conformance(samples: dict[str, list[tuple[int, str]]]) -> list[dict[str, Any]]:
    """Each sender's sample checked against the HL7 v2.5 message structures (hl7apy)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    report = []
    for sender, messages in sorted(samples.items()):
        problems: list[tuple[int, str]] = []
        for entry_id, raw in messages:
            text = raw.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
            try:
                message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT,
                                        find_groups=True, force_validation=True)
                message.validate()
            except Exception as exc:  # hl7apy's errors have no common base class
                problems.append((entry_id, f"{type(exc).__name__}: {str(exc)[:300]}"))
        report.append({"sender": sender, "checked": len(messages),
                       "conform": len(messages) - len(problems), "problems": problems[:10]})
    return report


@router.post("/interfaces/conformance")
async def check_conformance(request: Request, container: ContainerDep, caller: CallerDep,
                            user: Admin) -> HTMLResponse:
    samples = container.console.journal_sample(20)
    report = await run_in_threadpool(conformance, samples)
    audit(request, channel="console", action=AuditAction.READ,
          detail={"conformance": sorted(samples)})
    with container.uow_factory(read_only=True) as uow:
        errors = uow.journal.list([JournalStatus.ERROR, JournalStatus.REJECTED], limit=20)
    return _page(request, caller, "interfaces.html", traffic=container.console.traffic(),
                 errors=errors, jobs=container.jobs.snapshot(), conformance=report,
                 notice=None)


@router.post("/interfaces/journal/{entry_id}/replay")
async def replay(entry_id: str, request: Request, container: ContainerDep,
                 user: Admin) -> Response:
    number = _number(entry_id, "journal entry")
    try:
        entry = await run_in_threadpool(container.hl7.replay, number)
    except KeyError:
        raise _bad(f"no journal entry {number}", 404) from None
    except ValueError as exc:
        raise _bad(str(exc), 409) from None
    audit(request, channel="console", action=AuditAction.UPDATE,
          detail={"journal_replay": number, "status": entry.status.value})
    notice = "replayed" if entry.status is JournalStatus.REPLAYED else "still_fails"
    return _see_other(f"{CONSOLE}/interfaces?notice={notice}")


# -- accounts ------------------------------------------------------------------------------


def _accounts(request: Request, caller: Any, container: Any, code: int = 200,
              **extra: Any) -> HTMLResponse:
    return _page(request, caller, "accounts.html", code, users=container.auth.users(),
                 clients=container.auth.clients(), roles=[r.value for r in Role],
                 secret=None, message=None, **extra)


@router.get("/users")
def users(request: Request, container: ContainerDep, caller: CallerDep,
          user: Admin) -> HTMLResponse:
    return _accounts(request, caller, container)


def _trace_admin(request: Request, what: str, name: str) -> None:
    audit(request, channel="console", action=AuditAction.UPDATE,
          detail={"account": what, "name": name})


@router.post("/users")
async def add_user(request: Request, container: ContainerDep, caller: CallerDep,
                   user: Admin) -> Response:
    form = await request.form()
    name = str(form.get("name", "")).strip()
    roles = tuple(str(r) for r in form.getlist("roles"))
    if not name or len(name) > 100:
        raise _bad("give the account's name")
    try:
        await run_in_threadpool(container.auth.add_user, name, str(form.get("password", "")),
                                roles, str(form.get("establishment", "")).strip() or None)
    except MPIError as exc:
        raise http_error(exc) from None
    _trace_admin(request, "user added", name)
    return _see_other(f"{CONSOLE}/users")


@router.post("/users/{name}/{act}")
async def user_act(name: str, act: str, request: Request, container: ContainerDep,
                   user: Admin) -> Response:
    form = await _form(request)
    try:
        if act == "disable":
            await run_in_threadpool(container.auth.disable_user, name)
        elif act == "password":
            await run_in_threadpool(container.auth.set_password, name,
                                    form.get("password", ""))
        else:
            raise _bad(f"no action {act[:40]}", 404)
    except MPIError as exc:
        raise http_error(exc) from None
    _trace_admin(request, f"user {act}", name)
    return _see_other(f"{CONSOLE}/users")


@router.get("/clients")
def clients(request: Request, container: ContainerDep, caller: CallerDep,
            user: Admin) -> HTMLResponse:
    return _accounts(request, caller, container)


@router.post("/clients")
async def add_client(request: Request, container: ContainerDep, caller: CallerDep,
                     user: Admin) -> Response:
    form = await _form(request)
    name = form.get("name", "").strip()
    if not name or len(name) > 100:
        raise _bad("give the client's name")
    try:
        made = await run_in_threadpool(container.auth.add_client, name,
                                       form.get("scopes", "").strip(),
                                       form.get("establishment", "").strip() or None)
    except MPIError as exc:
        raise http_error(exc) from None
    _trace_admin(request, "client added", name)
    return _page(request, caller, "accounts.html", 201, users=container.auth.users(),
                 clients=container.auth.clients(), roles=[r.value for r in Role],
                 secret=made.secret, new_client=made.client.client_id, message=None)


@router.post("/clients/{name}/revoke")
async def revoke_client(name: str, request: Request, container: ContainerDep,
                        user: Admin) -> Response:
    try:
        await run_in_threadpool(container.auth.revoke_client, name)
    except MPIError as exc:
        raise http_error(exc) from None
    _trace_admin(request, "client revoked", name)
    return _see_other(f"{CONSOLE}/clients")
