"""What the console's pages share: the roles each page asks for, reading path numbers,
dates and forms, and rendering a page for the person logged in. Each page checks its role;
each view of patient data is traced in the access trail like any other read; each change
carries the session's CSRF token (checked for every route by
:func:`adapters.http.deps.deny_anonymous`) and goes through the service the HTTP API uses."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from adapters.console.pages import CONSOLE, render
from adapters.http.deps import CSRF_FIELD, requires_role
from mpi.archive.lifecycle import Staff
from mpi.identity import Actor
from mpi.security import Principal, Role

__all__ = ["CONSOLE", "PAGE", "BANDS", "MAX_ID", "QueueFilter", "nines", "staff_of", "parse_day",
           "bad", "path_number", "page", "see_other", "actor_of", "read_form", "Vigilance",
           "StaffUser", "Auditor", "Admin", "Reader", "Overseer"]


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
MAX_ID = 2**63 - 1


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


def bad(reason: str, status: int = 400) -> HTTPException:
    return HTTPException(status_code=status, detail=reason)


def path_number(text: str, what: str) -> int:
    """A number from the path: anything else is a 404 page, never a crash."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise bad(f"no {what} {text[:40]}", 404)
    return int(text)


def page(request: Request, caller: Any, template: str, code: int = 200,
          **context: Any) -> HTMLResponse:
    return render(request, template, code, person=caller.principal, csrf=caller.csrf,
                  csrf_field=CSRF_FIELD, **context)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def actor_of(user: Principal) -> Actor:
    return Actor(user.actor_name, user.establishment)


async def read_form(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items()}

