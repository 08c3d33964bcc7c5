"""WADO-RS frames and bulk data (PS3.18 10.4): what a web viewer such as OHIF fetches to
draw an image. Each part of the multipart/related answer names its transfer syntax in its
Content-Type: frames as stored (``transfer-syntax=*``: JPEG 2000, JPEG-LS, RLE fragments
untouched) or decoded to Explicit VR Little Endian."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from adapters.dicomweb.routes import DomainParam, Reader, _Asked
from adapters.errors import AdapterError
from adapters.http.deps import ContainerDep

__all__ = ["router"]

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

_FRAMES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The frames (multipart/related, each part's Content-Type with its "
                         "transfer-syntax)", "content": {"multipart/related": {}}},
    400: {"description": "Bad frame list or unknown domain"},
    404: {"description": "No such instance, frame or element"},
    406: {"description": "A transfer syntax the archive cannot give frames in"},
    422: {"description": "Pixel data that cannot be decoded here"},
}


async def _answer(asked: _Asked, study: str, series: str, instance: str,
                  numbers: str | None, tag: str | None) -> StreamingResponse:
    query = asked.query("IMAGE", study, series, instance)
    try:
        answer = await run_in_threadpool(
            asked.web.frames, query, asked.asker, asked.who, asked.subject, asked.source,
            numbers, asked.accept, asked.token_id, tag)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    except AdapterError as exc:  # NotAcceptableError (406), FrameError (404 or 422)
        raise HTTPException(status_code=getattr(exc, "http_status", 406),
                            detail=exc.message) from None
    if answer.count == 0:
        asked.gone(study)
        raise HTTPException(status_code=404, detail="no such object")
    return StreamingResponse(answer.body, media_type=(
        f"multipart/related; type=\"application/octet-stream\"; boundary={answer.boundary}"))


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            responses=_FRAMES, response_class=StreamingResponse,
            summary="WADO-RS: frames of an instance (1 or 1,2,3)")
async def retrieve_frames(study: str, series: str, instance: str, frames: str,
                          request: Request, container: ContainerDep, caller: Reader,
                          domain: DomainParam = None) -> StreamingResponse:
    asked = _Asked(container, request, domain, caller)
    return await _answer(asked, study, series, instance, frames, None)


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
            responses=_FRAMES, response_class=StreamingResponse,
            summary="WADO-RS: a bulk data element of an instance (a metadata BulkDataURI)")
async def retrieve_bulk_data(study: str, series: str, instance: str, tag: str,
                             request: Request, container: ContainerDep, caller: Reader,
                             domain: DomainParam = None) -> StreamingResponse:
    asked = _Asked(container, request, domain, caller)
    return await _answer(asked, study, series, instance, None, tag)
