"""``/console/viewer/{StudyInstanceUID}``: opens a study in OHIF for a logged-in person. The
study must be one they may read; its opening is in the access trail like any read. When
the viewer is not installed (or not served), the page says how to add it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from adapters.http.deps import ContainerDep, audit, requires
from mpi.archive import ArchiveQuery
from mpi.audit import AuditAction
from mpi.errors import UnknownAuthorityError
from mpi.security import Principal

__all__ = ["router", "viewer_origin", "VIEWER_PORT_STATE"]

router = APIRouter(prefix="/console/viewer", tags=["console"], include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
Reader = Annotated[Principal, Depends(requires("ImagingStudy", "r"))]
# The port the viewer's origin listens on, set on the application by `mpi serve` once bound.
VIEWER_PORT_STATE = "viewer_port"


def viewer_origin(request: Request) -> str | None:
    """The viewer's origin as the asker's browser reaches it: the viewer_url setting, else
    the host this request was sent to, on the viewer's port; None when it is not served."""
    settings = request.app.state.container.settings
    port = getattr(request.app.state, VIEWER_PORT_STATE, None)
    if port is None:
        return None
    if settings.viewer_url:
        return str(settings.viewer_url).rstrip("/")
    host = urlsplit(str(request.base_url)).hostname or settings.host
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}"


@router.get("/{study}")
def open_study(study: str, request: Request, container: ContainerDep,
               caller: Reader) -> Response:
    """303 to ``<viewer origin>/viewer?StudyInstanceUIDs=...``; 404 for a study the person
    cannot see; a page saying how to install the viewer when it is not there."""
    domain = caller.establishment  # answers in the person's own domain (master: regional)
    try:
        asker = container.dicomweb.asker(domain)
    except UnknownAuthorityError as exc:
        raise HTTPException(status_code=400, detail=exc.message) from None
    matches = container.dicomweb.archive.find(
        ArchiveQuery(level="STUDY", study_uids=(study,), limit=1), asker)
    audit(request, channel="console", action=AuditAction.READ,
          persons={m.plan.person_id for m in matches}, authority=asker.code,
          outcome="success" if matches else "404", detail={"viewer": study})
    if not matches:
        raise HTTPException(status_code=404, detail=f"no study {study} among those you may "
                                                    "read")
    origin = viewer_origin(request)
    if origin is None:
        response: Response = templates.TemplateResponse(
            request, "viewer_missing.html", {"study": study}, status_code=503)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = "default-src 'self'"
        return response
    target = f"{origin}/viewer?{urlencode({'StudyInstanceUIDs': study})}"
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


