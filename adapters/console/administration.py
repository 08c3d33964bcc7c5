"""The console's pages for administrators: the interfaces (traffic by sender, the
journal's errors and their replay, the jobs, the HL7 v2.5 conformance check) and the
accounts of people and systems."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from adapters.console.common import (
    CONSOLE,
    Admin,
    bad,
    page,
    path_number,
    read_form,
    see_other,
)
from adapters.http.deps import CallerDep, ContainerDep, audit
from adapters.http.errors import http_error
from mpi.audit import AuditAction
from mpi.errors import MPIError
from mpi.model import JournalStatus
from mpi.security import Role

__all__ = ["router"]

router = APIRouter(prefix=CONSOLE, tags=["console"], include_in_schema=False)


# -- interfaces ----------------------------------------------------------------------------


@router.get("/interfaces")
def interfaces(request: Request, container: ContainerDep, caller: CallerDep,
               user: Admin) -> HTMLResponse:
    with container.uow_factory(read_only=True) as uow:
        errors = uow.journal.list([JournalStatus.ERROR, JournalStatus.REJECTED], limit=20)
    return page(request, caller, "interfaces.html", traffic=container.console.traffic(),
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
    return page(request, caller, "interfaces.html", traffic=container.console.traffic(),
                 errors=errors, jobs=container.jobs.snapshot(), conformance=report,
                 notice=None)


@router.post("/interfaces/journal/{entry_id}/replay")
async def replay(entry_id: str, request: Request, container: ContainerDep,
                 user: Admin) -> Response:
    number = path_number(entry_id, "journal entry")
    try:
        entry = await run_in_threadpool(container.hl7.replay, number)
    except KeyError:
        raise bad(f"no journal entry {number}", 404) from None
    except ValueError as exc:
        raise bad(str(exc), 409) from None
    audit(request, channel="console", action=AuditAction.UPDATE,
          detail={"journal_replay": number, "status": entry.status.value})
    notice = "replayed" if entry.status is JournalStatus.REPLAYED else "still_fails"
    return see_other(f"{CONSOLE}/interfaces?notice={notice}")


# -- accounts ------------------------------------------------------------------------------


def _accounts(request: Request, caller: Any, container: Any, code: int = 200,
              **extra: Any) -> HTMLResponse:
    return page(request, caller, "accounts.html", code, users=container.auth.users(),
                 clients=container.auth.clients(), roles=[r.value for r in Role],
                 secret=None, message=None, **extra)


@router.get("/users")
def users(request: Request, container: ContainerDep, caller: CallerDep,
          user: Admin) -> HTMLResponse:
    return _accounts(request, caller, container)


def _trace_admin(request: Request, what: str, name: str, **change: Any) -> None:
    audit(request, channel="console", action=AuditAction.UPDATE,
          detail={"account": what, "name": name, **change})


@router.post("/users")
async def add_user(request: Request, container: ContainerDep, caller: CallerDep,
                   user: Admin) -> Response:
    form = await request.form()
    name = str(form.get("name", "")).strip()
    roles = tuple(str(r) for r in form.getlist("roles"))
    if not name or len(name) > 100:
        raise bad("give the account's name")
    try:
        await run_in_threadpool(container.auth.add_user, name, str(form.get("password", "")),
                                roles, str(form.get("establishment", "")).strip() or None)
    except MPIError as exc:
        raise http_error(exc) from None
    _trace_admin(request, "user added", name)
    return see_other(f"{CONSOLE}/users")


@router.post("/users/{name}/{act}")
async def user_act(name: str, act: str, request: Request, container: ContainerDep,
                   user: Admin) -> Response:
    form = await request.form()
    change: dict[str, Any] = {}
    try:
        if act == "disable":
            await run_in_threadpool(container.auth.disable_user, name)
        elif act == "enable":
            await run_in_threadpool(container.auth.enable_user, name)
        elif act == "password":
            await run_in_threadpool(container.auth.set_password, name,
                                    str(form.get("password", "")))
        elif act == "roles":  # the form gives them all: an empty establishment clears it
            account = await run_in_threadpool(
                container.auth.set_roles, name, tuple(str(r) for r in form.getlist("roles")),
                str(form.get("establishment", "")).strip() or None)
            change = {"roles": sorted(account.roles), "establishment": account.establishment}
        else:
            raise bad(f"no action {act[:40]}", 404)
    except MPIError as exc:
        raise http_error(exc) from None
    _trace_admin(request, f"user {act}", name, **change)
    return see_other(f"{CONSOLE}/users")


@router.get("/clients")
def clients(request: Request, container: ContainerDep, caller: CallerDep,
            user: Admin) -> HTMLResponse:
    return _accounts(request, caller, container)


@router.post("/clients")
async def add_client(request: Request, container: ContainerDep, caller: CallerDep,
                     user: Admin) -> Response:
    form = await read_form(request)
    name = form.get("name", "").strip()
    if not name or len(name) > 100:
        raise bad("give the client's name")
    try:
        made = await run_in_threadpool(container.auth.add_client, name,
                                       form.get("scopes", "").strip(),
                                       form.get("establishment", "").strip() or None)
    except MPIError as exc:
        raise http_error(exc) from None
    _trace_admin(request, "client added", name)
    return page(request, caller, "accounts.html", 201, users=container.auth.users(),
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
    return see_other(f"{CONSOLE}/clients")
