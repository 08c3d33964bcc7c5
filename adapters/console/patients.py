"""The console's pages of patients and identity vigilance: the search, a person's identity,
history and studies across sites, the review queue, its decisions and their undoing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from adapters.console.common import (
    BANDS,
    CONSOLE,
    MAX_ID,
    PAGE,
    QueueFilter,
    Reader,
    Vigilance,
    actor_of,
    bad,
    page,
    parse_day,
    path_number,
    read_form,
    see_other,
)
from adapters.http.deps import CallerDep, ContainerDep, audit
from adapters.http.errors import http_error
from mpi.archive import studies_of_person
from mpi.audit import AuditAction
from mpi.errors import MPIError
from mpi.model import Identifier, ReviewDecision, master_id_of
from mpi.ports import PersonQuery
from mpi.queries import current_person, person_view, resolve_person, search_persons
from mpi.retry import retry_on_conflict
from mpi.review import COLLISION_DECISIONS, decide_review, show_review, undo_review
from mpi.security import Role

__all__ = ["router"]

router = APIRouter(prefix=CONSOLE, tags=["console"], include_in_schema=False)


# -- patients ------------------------------------------------------------------------------


def _find(container: Any, text: str) -> tuple[list[Any], int]:
    """Persons a search box names: an identifier (``DOMAIN|value``, or a value looked up in
    every domain: an IPP, an INS, a master id), a birth date, or names."""
    registry = container.registry
    text = text.strip()
    try:
        day = parse_day(text)
    except ValueError:
        raise bad("bad date") from None
    with container.uow_factory(read_only=True) as uow:
        if day is not None:
            return search_persons(uow, registry, PersonQuery(birth_date=day), 0, PAGE)
        if "|" in text:
            domain, _, value = text.partition("|")
            try:
                registry.by_code(domain.strip())
            except MPIError as exc:
                raise bad(exc.message) from None
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
        raise bad("the search text is too long")
    views, total = _find(container, q) if q.strip() else ([], 0)
    if q.strip():
        audit(request, channel="console", action=AuditAction.SEARCH,
              persons={v.person.id for v in views if v.person.id is not None})
    return page(request, caller, "persons.html", q=q, views=views, total=total,
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
    number = path_number(person_id, "patient")
    with container.uow_factory(read_only=True) as uow:
        person = current_person(uow, number)
        if person is None or person.id is None:
            raise bad(f"no patient {number}", 404)
        if person.id != number:
            return see_other(f"{CONSOLE}/persons/{person.id}")
        view = person_view(uow, container.registry, person)
        studies = _studies(uow, person.id)
        history = _history(container, uow, view)
    audit(request, channel="console", action=AuditAction.READ, persons={person.id})
    return page(request, caller, "person.html", view=view, studies=studies, history=history,
                 master_id=master_id_of(person.id), vigilance=user.has_role(
                     Role.IDENTITY_VIGILANCE))


# The demographic fields each of the matcher's comparisons reads, when it is not one itself.
COMPARED = {"family_name": ("birth_family_name", "used_family_name"),
            "given_name": ("given_names", "used_given_name")}


def _shown(demographics: dict[str, Any], sources: tuple[str, ...]) -> str:
    """The values of ``sources`` in a record's demographics, as a person reads them."""
    values = []
    for source in sources:
        value = demographics.get(source)
        if value is None or value == "" or value == ():
            continue
        values.append(" ".join(map(str, value)) if isinstance(value, tuple | list)
                      else str(value))
    return " / ".join(values)


# -- the review queue ----------------------------------------------------------------------


@router.get("/review")
def review_queue(request: Request, container: ContainerDep, caller: CallerDep,
                 user: Vigilance, establishment: str = "", age: str = "", band: str = "",
                 offset: str = "0") -> HTMLResponse:
    if age and not age.isdigit() or not offset.isdigit() or band not in ("", *BANDS):
        raise bad("bad filter: age and offset are numbers of days and tasks, the band is "
                   "low, mid or high")
    wanted = QueueFilter(establishment or None, int(age) if age else None, band or None)
    start = min(int(offset), MAX_ID)
    tasks, total, counts = container.console.review_queue(
        container.clock.now(), wanted.establishment, wanted.min_age_days,
        BANDS.get(wanted.band or "", (None, None)), start, PAGE)
    audit(request, channel="console", action=AuditAction.SEARCH,
          persons={t["person_id"] for t in tasks})
    return page(request, caller, "review.html", tasks=tasks, total=total, counts=counts,
                 wanted=wanted, offset=start, page=PAGE,
                 establishments=[a.code for a in container.registry.all
                                 if a.kind.value == "establishment"])


@router.get("/review/{task_id}")
def review_task(task_id: str, request: Request, container: ContainerDep, caller: CallerDep,
                user: Vigilance) -> HTMLResponse:
    number = path_number(task_id, "review task")
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
    # A comparison's row shows the demographic fields it compares; the others follow.
    compared = {name: COMPARED.get(name, (name,)) for name in fields}
    shown = {n for sources in compared.values() for n in sources}
    rows = [(name, sources, _shown(left, sources), _shown(right, sources))
            for name, sources in [*compared.items(), *(
                (n, (n,)) for n in dict.fromkeys([*left, *right]) if n not in shown)]]
    collision = view.task.kind.value == "collision"
    decisions = [d for d in ReviewDecision if (d in COLLISION_DECISIONS) == collision]
    return page(request, caller, "review_task.html", view=view, fields=fields, left=left,
                 right=right, rows=rows, decisions=decisions, own_studies=own_studies,
                 other_studies=other_studies, evidence=view.task.evidence or {})


@router.post("/review/{task_id}/decision")
async def review_decide(task_id: str, request: Request, container: ContainerDep,
                        user: Vigilance) -> Response:
    number = path_number(task_id, "review task")
    form = await read_form(request)
    try:
        decision = ReviewDecision(form.get("decision", ""))
    except ValueError:
        raise bad("choose a decision") from None
    reason = form.get("reason", "").strip()
    if not reason or len(reason) > 2000:
        raise bad("a decision needs its reason (2000 characters at most)")

    def decide() -> Any:
        with container.uow_factory() as uow:
            task = decide_review(uow, container.identity, number, decision, actor_of(user),
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
    return see_other(f"{CONSOLE}/persons/{task.person_id}")


@router.post("/review/{task_id}/undo")
async def review_undo(task_id: str, request: Request, container: ContainerDep,
                      user: Vigilance) -> Response:
    number = path_number(task_id, "review task")
    reason = (await read_form(request)).get("reason", "").strip()
    if not reason or len(reason) > 2000:
        raise bad("undoing a decision needs its reason (2000 characters at most)")

    def undo() -> Any:
        with container.uow_factory() as uow:
            task = undo_review(uow, container.identity, number, actor_of(user), reason)
            uow.commit()
            return task

    try:
        task = await run_in_threadpool(retry_on_conflict, undo)
    except MPIError as exc:
        raise http_error(exc) from None
    audit(request, channel="console", action=AuditAction.UPDATE,
          persons={p for p in (task.person_id,) if p is not None},
          detail={"review_task": number, "decision": "undo", "reason": reason})
    return see_other(f"{CONSOLE}/review/{number}")

