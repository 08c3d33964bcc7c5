"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3, 10.4.1.1.4): JPEG or PNG
images, windowed (the ``window`` parameter, else the object's WindowCenter/WindowWidth,
else the frame's range), for a study, a series, an instance or a frame. A study's or a
series' ``rendered`` is a multipart/related of its instances' images; a ``thumbnail`` is one
image, of the middle instance, 128 pixels unless ``viewport`` says otherwise."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.dicomweb.routes import DomainParam, Reader, _Asked
from adapters.errors import AdapterError
from adapters.http.deps import ContainerDep

__all__ = ["router"]

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

_IMAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "The image (JPEG, or PNG when asked)",
          "content": {"image/jpeg": {}, "image/png": {}, "multipart/related": {}}},
    400: {"description": "Bad window or viewport, or unknown domain"},
    404: {"description": "Nothing found"},
    406: {"description": "Neither JPEG nor PNG is acceptable"},
    422: {"description": "Pixel data that cannot be decoded here"},
}
Window = Annotated[str | None, Query(description="center,width[,linear]")]
Viewport = Annotated[str | None, Query(description="width,height of the image, in pixels")]


def _media_type(accept: str | None) -> str:
    """JPEG unless the Accept header takes PNG and not JPEG. Raises HTTPException 406."""
    kinds = [media.split(";")[0].strip().lower() for media in (accept or "").split(",")
             if media.strip()]
    if not kinds or any(k in ("image/jpeg", "image/*", "*/*") for k in kinds):
        return "image/jpeg"
    if "image/png" in kinds:
        return "image/png"
    raise HTTPException(status_code=406, detail="rendered images are image/jpeg or image/png")


async def _render(request: Request, container: Any, caller: Any, domain: str | None,
                  study: str, series: str | None = None, instance: str | None = None,
                  frame: int = 1, window: str | None = None, viewport: str | None = None,
                  one: bool = False) -> Response:
    asked = _Asked(container, request, domain, caller)
    media = _media_type(asked.accept)
    level = "IMAGE" if instance else "SERIES" if series else "STUDY"
    query = asked.query(level, study, series, instance)
    try:
        images = await run_in_threadpool(
            asked.web.rendered, query, asked.asker, asked.who, asked.subject, asked.source,
            media, window, viewport, frame, one, asked.token_id)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    except AdapterError as exc:  # FrameError: no such frame (404), not decodable (422)
        raise HTTPException(status_code=getattr(exc, "http_status", 422),
                            detail=exc.message) from None
    if not images:
        asked.gone(study)
        raise HTTPException(status_code=404, detail="no image found")
    if one or instance is not None:
        return Response(images[0], media_type=media)
    boundary = secrets.token_hex(16)
    body = b"".join(f"--{boundary}\r\nContent-Type: {media}\r\n\r\n".encode("ascii") + image
                    + b"\r\n" for image in images) + f"--{boundary}--\r\n".encode("ascii")
    return Response(body, media_type=f'multipart/related; type="{media}"; '
                                     f"boundary={boundary}")


@router.get("/studies/{study}/rendered", responses=_IMAGE,
            summary="WADO-RS: a study's instances rendered (multipart)")
async def study_rendered(study: str, request: Request, container: ContainerDep,
                         caller: Reader, domain: DomainParam = None, window: Window = None,
                         viewport: Viewport = None) -> Response:
    return await _render(request, container, caller, domain, study, window=window,
                         viewport=viewport)


@router.get("/studies/{study}/thumbnail", responses=_IMAGE,
            summary="WADO-RS: a thumbnail of a study")
async def study_thumbnail(study: str, request: Request, container: ContainerDep,
                          caller: Reader, domain: DomainParam = None,
                          viewport: Viewport = None) -> Response:
    return await _render(request, container, caller, domain, study, viewport=viewport,
                         one=True)


@router.get("/studies/{study}/series/{series}/rendered", responses=_IMAGE,
            summary="WADO-RS: a series' instances rendered (multipart)")
async def series_rendered(study: str, series: str, request: Request,
                          container: ContainerDep, caller: Reader,
                          domain: DomainParam = None, window: Window = None,
                          viewport: Viewport = None) -> Response:
    return await _render(request, container, caller, domain, study, series, window=window,
                         viewport=viewport)


@router.get("/studies/{study}/series/{series}/thumbnail", responses=_IMAGE,
            summary="WADO-RS: a thumbnail of a series")
async def series_thumbnail(study: str, series: str, request: Request,
                           container: ContainerDep, caller: Reader,
                           domain: DomainParam = None, viewport: Viewport = None) -> Response:
    return await _render(request, container, caller, domain, study, series,
                         viewport=viewport, one=True)


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered",
            responses=_IMAGE, summary="WADO-RS: an instance rendered (its first frame)")
async def instance_rendered(study: str, series: str, instance: str, request: Request,
                            container: ContainerDep, caller: Reader,
                            domain: DomainParam = None, window: Window = None,
                            viewport: Viewport = None) -> Response:
    return await _render(request, container, caller, domain, study, series, instance,
                         window=window, viewport=viewport)


@router.get("/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            responses=_IMAGE, summary="WADO-RS: a thumbnail of an instance")
async def instance_thumbnail(study: str, series: str, instance: str, request: Request,
                             container: ContainerDep, caller: Reader,
                             domain: DomainParam = None, viewport: Viewport = None) -> Response:
    return await _render(request, container, caller, domain, study, series, instance,
                         viewport=viewport, one=True)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
            responses=_IMAGE, summary="WADO-RS: one frame of an instance rendered")
async def frame_rendered(study: str, series: str, instance: str, frame: int,
                         request: Request, container: ContainerDep, caller: Reader,
                         domain: DomainParam = None, window: Window = None,
                         viewport: Viewport = None) -> Response:
    return await _render(request, container, caller, domain, study, series, instance,
                         frame=frame, window=window, viewport=viewport)
