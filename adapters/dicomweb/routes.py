"""DICOMweb over HTTP (/dicomweb): QIDO-RS, WADO-RS and STOW-RS.

The asker's identifier domain decides the patient attributes of every answer: the ``domain``
query parameter (a domain code, namespace or OID), else the ``X-Authority`` header set by the
authenticating proxy, else the regional master domain. ``X-Remote-User`` names who asks (kept
in the access trail with the persons disclosed). The DICOM work is done by the container's
``dicomweb`` part; this module only speaks HTTP.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from adapters.container import Container
from adapters.errors import AdapterError
from adapters.http.deps import Caller, CallerDep, ContainerDep
from mpi.errors import UnknownAuthorityError
from mpi.model import AuthorityKind

__all__ = ["router"]

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"
_SEARCH: dict[int | str, dict[str, Any]] = {
    200: {"description": "Matches (DICOM JSON)", "content": {DICOM_JSON: {}}},
    400: {"description": "Bad query parameter or unknown domain"},
}
_RETRIEVE: dict[int | str, dict[str, Any]] = {
    200: {"description": "Coerced objects (multipart/related; type=application/dicom)",
          "content": {"multipart/related": {}}},
    400: {"description": "Unknown domain"},
    404: {"description": "Nothing found"},
    406: {"description": "A transfer syntax the archive cannot give"},
    410: {"description": "The study was destroyed at the end of its retention"},
}
_METADATA: dict[int | str, dict[str, Any]] = {
    200: {"description": "Coerced headers (DICOM JSON)", "content": {DICOM_JSON: {}}},
    400: {"description": "Unknown domain"},
    404: {"description": "Nothing found"},
    410: {"description": "The study was destroyed at the end of its retention"},
}
_STORE: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every object stored", "content": {DICOM_JSON: {}}},
    202: {"description": "Some objects stored, the others listed in FailedSOPSequence"},
    400: {"description": "Not a multipart/related body, or unknown domain"},
    401: {"description": "No X-Remote-User or no X-Authority: nobody stores anonymously"},
    403: {"description": "X-Authority is not an establishment"},
    409: {"description": "No object stored (FailedSOPSequence says why)"},
    415: {"description": "Not multipart/related; type=application/dicom"},
}
DomainParam = Annotated[str | None, Query(
    description="Identifier domain of the asker (code, namespace or OID); overrides "
                "X-Authority; default: the regional master domain")]


class _Asked:
    """Who asks, for what, from where."""

    def __init__(self, container: Container, request: Request, domain: str | None,
                 caller: Caller) -> None:
        self.web = container.dicomweb
        self.lifecycle = container.lifecycle
        self.accept = request.headers.get("accept")
        try:
            self.asker = self.web.asker(domain or caller.authority)
        except UnknownAuthorityError as exc:
            raise HTTPException(status_code=400, detail=exc.message) from None
        self.who = caller.actor_name  # user:NAME, as every channel names its actors
        self.subject = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        self.source = caller.address
        self.params = dict(request.query_params)

    def query(self, level: str, study: str | None = None, series: str | None = None,
              instance: str | None = None) -> Any:
        params = dict(self.params)
        if instance is not None:
            params["SOPInstanceUID"] = instance
        try:
            return self.web.query(level, params, study, series)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    def search(self, level: str, study: str | None = None,
               series: str | None = None) -> JSONResponse:
        answers = self.web.search(self.query(level, study, series), self.asker, self.who,
                                  self.subject, self.source)
        return JSONResponse(answers, media_type=DICOM_JSON)

    def retrieve(self, study: str, series: str | None = None,
                 instance: str | None = None) -> StreamingResponse:
        level = "IMAGE" if instance else "SERIES" if series else "STUDY"
        try:
            answer = self.web.retrieve(self.query(level, study, series, instance), self.asker,
                                       self.who, self.subject, self.source,
                                       self.web.wanted_transfer_syntax(self.accept))
        except AdapterError as exc:  # NotAcceptableError: a syntax the archive cannot give
            raise HTTPException(status_code=406, detail=exc.message) from None
        if answer.count == 0:
            self.gone(study)
            raise HTTPException(status_code=404, detail="no such object")
        media = f'multipart/related; type="application/dicom"; boundary={answer.boundary}'
        return StreamingResponse(answer.body, media_type=media)

    def metadata(self, study: str, series: str | None = None,
                 instance: str | None = None) -> JSONResponse:
        level = "IMAGE" if instance else "SERIES" if series else "STUDY"
        answers = self.web.metadata(self.query(level, study, series, instance), self.asker,
                                    self.who, self.subject, self.source)
        if not answers:
            self.gone(study)
            raise HTTPException(status_code=404, detail="no such object")
        return JSONResponse(answers, media_type=DICOM_JSON)

    def gone(self, study: str) -> None:
        """410 for the UIDs of a study destroyed at the end of its retention."""
        tombstone = self.lifecycle.tombstone(study)
        if tombstone is not None:
            raise HTTPException(status_code=410, detail=(
                f"study {study} was destroyed on {tombstone.destroyed_at.date().isoformat()} "
                f"(destruction proposal {tombstone.proposal_id})"))


@router.get("/studies", responses=_SEARCH, summary="QIDO-RS: search for studies")
def search_studies(request: Request, container: ContainerDep, caller: CallerDep,
                   domain: DomainParam = None):
    return _Asked(container, request, domain, caller).search("STUDY")


@router.get("/studies/{study}/series", responses=_SEARCH,
            summary="QIDO-RS: search for the series of a study")
def search_series(study: str, request: Request, container: ContainerDep,
                  caller: CallerDep, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).search("SERIES", study)


@router.get("/studies/{study}/series/{series}/instances", responses=_SEARCH,
            summary="QIDO-RS: search for the instances of a series")
def search_instances(study: str, series: str, request: Request, container: ContainerDep,
                     caller: CallerDep, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).search(
        "IMAGE", study, series)


@router.get("/studies/{study}", responses=_RETRIEVE, response_class=StreamingResponse,
            summary="WADO-RS: retrieve a study, coerced for the asker")
def retrieve_study(study: str, request: Request, container: ContainerDep,
                   caller: CallerDep, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).retrieve(study)


@router.get("/studies/{study}/series/{series}", responses=_RETRIEVE,
            response_class=StreamingResponse,
            summary="WADO-RS: retrieve a series, coerced for the asker")
def retrieve_series(study: str, series: str, request: Request, container: ContainerDep,
                    caller: CallerDep, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).retrieve(
        study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}", responses=_RETRIEVE,
            response_class=StreamingResponse,
            summary="WADO-RS: retrieve an instance, coerced for the asker")
def retrieve_instance(study: str, series: str, instance: str, request: Request,
                      container: ContainerDep, caller: CallerDep, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).retrieve(
        study, series, instance)


@router.get("/studies/{study}/metadata", responses=_METADATA,
            summary="WADO-RS: the coerced headers of a study")
def study_metadata(study: str, request: Request, container: ContainerDep,
                   caller: CallerDep, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).metadata(study)


@router.get("/studies/{study}/series/{series}/metadata", responses=_METADATA,
            summary="WADO-RS: the coerced headers of a series")
def series_metadata(study: str, series: str, request: Request, container: ContainerDep,
                    caller: CallerDep, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).metadata(
        study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata",
            responses=_METADATA, summary="WADO-RS: the coerced header of an instance")
def instance_metadata(study: str, series: str, instance: str, request: Request,
                      container: ContainerDep, caller: CallerDep, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).metadata(
        study, series, instance)


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


@router.post("/studies", responses=_STORE, summary="STOW-RS: store objects")
async def store_studies(request: Request, container: ContainerDep, caller: CallerDep,
                        domain: DomainParam = None):
    """Objects without an IssuerOfPatientID are stored in the asker's domain, which must then
    be an establishment's."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/related"):
        raise HTTPException(status_code=415,
                            detail="send multipart/related; type=application/dicom")
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise HTTPException(status_code=400, detail="the Content-Type names no boundary")
    # A write: nobody stores anonymously, and a client stores for the establishment the
    # authenticating proxy says it speaks for (X-Authority), never for one it merely names.
    if caller.user is None or caller.authority is None:
        raise HTTPException(status_code=401, detail="storing needs X-Remote-User and "
                            "X-Authority (the establishment), set by the authenticating proxy")
    if domain is not None:
        raise HTTPException(status_code=400, detail="the domain parameter is for queries; a "
                            "store is made for the X-Authority establishment")
    asked = _Asked(container, request, None, caller)
    if asked.asker.kind is not AuthorityKind.ESTABLISHMENT:
        raise HTTPException(status_code=403, detail=f"{asked.asker.code} is not an "
                            "establishment: only establishments store objects")
    body = await request.body()
    try:
        parts = asked.web.split(body, found.group(1))
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    result = await run_in_threadpool(asked.web.store_for, parts, asked.asker, asked.who)
    status = 200 if not result.failed else 202 if result.stored else 409
    return JSONResponse(result.body, status_code=status, media_type=DICOM_JSON)
