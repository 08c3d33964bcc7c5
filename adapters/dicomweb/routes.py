"""DICOMweb over HTTP (/dicomweb): QIDO-RS, WADO-RS and STOW-RS, for authenticated callers
(scopes ``ImagingStudy.s`` to search, ``.r`` to retrieve, ``.c`` to store).

The asker's identifier domain decides the patient attributes of every answer: the caller's
own establishment when it has one; for a regional caller, the ``domain`` query parameter (a
domain code, namespace or OID), else the issuer its query names (``IssuerOfPatientID``, as
IHE RAD MIMA answers), else the regional master domain. The access trail names the caller and
the persons disclosed. The DICOM work is done by the container's ``dicomweb`` part; this module
only speaks HTTP.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from adapters.container import Container
from adapters.errors import AdapterError
from adapters.http.deps import ContainerDep, forbidden, requires
from adapters.http.errors import RETRY_AFTER_SECONDS
from mpi.errors import UnknownAuthorityError
from mpi.model import AuthorityKind
from mpi.security import Principal

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
    403: {"description": "The caller speaks for no establishment, or names another one's "
                         "patients"},
    409: {"description": "No object stored (FailedSOPSequence says why)"},
    503: {"description": "No object stored: the archive volume or the database failed "
                         "(FailureReason 0xA700); send them again after Retry-After"},
    415: {"description": "Not multipart/related; type=application/dicom"},
}
DomainParam = Annotated[str | None, Query(
    description="For a caller without an establishment: the identifier domain to answer in "
                "(code, namespace or OID); default: the issuer the query names, else the "
                "regional master domain")]
Searcher = Annotated[Principal, Depends(requires("ImagingStudy", "s"))]
Reader = Annotated[Principal, Depends(requires("ImagingStudy", "r"))]
Storer = Annotated[Principal, Depends(requires("ImagingStudy", "c"))]
_ISSUER_KEYS = ("IssuerOfPatientID", "00100021")


def answer_domain(principal: Principal, domain: str | None,
                  params: dict[str, str]) -> str | None:
    """The domain an answer is coerced to (None: the master domain). Raises HTTPException
    400 when a caller of an establishment asks for another domain."""
    if principal.establishment is not None:
        if domain is not None and domain.strip() and domain.strip() != principal.establishment:
            raise HTTPException(status_code=400, detail=(
                f"answers to {principal.actor_name} are in its own domain "
                f"{principal.establishment}; the domain parameter is for callers without an "
                "establishment"))
        return principal.establishment
    if domain is not None and domain.strip():
        return domain
    return next((params[k].strip() for k in _ISSUER_KEYS if params.get(k, "").strip()), None)


class _Asked:
    """Who asks, for what, from where."""

    def __init__(self, container: Container, request: Request, domain: str | None,
                 principal: Principal) -> None:
        self.web = container.dicomweb
        self.lifecycle = container.lifecycle
        self.accept = request.headers.get("accept")
        self.params = dict(request.query_params)
        self.query_params = request.query_params  # with repeated includefield
        try:
            self.asker = self.web.asker(answer_domain(principal, domain, self.params))
        except UnknownAuthorityError as exc:
            raise HTTPException(status_code=400, detail=exc.message) from None
        self.who = principal.actor_name  # client:NAME or user:NAME, as the trail names them
        self.subject = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        self.source = request.client.host if request.client else None
        self.token_id = principal.token_id

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
        try:
            answers = self.web.search(self.query(level, study, series), self.asker, self.who,
                                      self.subject, self.source, self.token_id,
                                      params=self.query_params)
        except ValueError as exc:  # a bad offset, includefield or fuzzymatching
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return JSONResponse(answers, media_type=DICOM_JSON)

    def retrieve(self, study: str, series: str | None = None,
                 instance: str | None = None) -> StreamingResponse:
        level = "IMAGE" if instance else "SERIES" if series else "STUDY"
        try:
            answer = self.web.retrieve(self.query(level, study, series, instance), self.asker,
                                       self.who, self.subject, self.source,
                                       self.web.wanted_transfer_syntax(self.accept),
                                       token_id=self.token_id)
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
                                    self.who, self.subject, self.source, self.token_id)
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
def search_studies(request: Request, container: ContainerDep, caller: Searcher,
                   domain: DomainParam = None):
    return _Asked(container, request, domain, caller).search("STUDY")


@router.get("/studies/{study}/series", responses=_SEARCH,
            summary="QIDO-RS: search for the series of a study")
def search_series(study: str, request: Request, container: ContainerDep,
                  caller: Searcher, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).search("SERIES", study)


@router.get("/studies/{study}/series/{series}/instances", responses=_SEARCH,
            summary="QIDO-RS: search for the instances of a series")
def search_instances(study: str, series: str, request: Request, container: ContainerDep,
                     caller: Searcher, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).search(
        "IMAGE", study, series)


@router.get("/studies/{study}", responses=_RETRIEVE, response_class=StreamingResponse,
            summary="WADO-RS: retrieve a study, coerced for the asker")
def retrieve_study(study: str, request: Request, container: ContainerDep,
                   caller: Reader, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).retrieve(study)


@router.get("/studies/{study}/series/{series}", responses=_RETRIEVE,
            response_class=StreamingResponse,
            summary="WADO-RS: retrieve a series, coerced for the asker")
def retrieve_series(study: str, series: str, request: Request, container: ContainerDep,
                    caller: Reader, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).retrieve(
        study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}", responses=_RETRIEVE,
            response_class=StreamingResponse,
            summary="WADO-RS: retrieve an instance, coerced for the asker")
def retrieve_instance(study: str, series: str, instance: str, request: Request,
                      container: ContainerDep, caller: Reader, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).retrieve(
        study, series, instance)


@router.get("/studies/{study}/metadata", responses=_METADATA,
            summary="WADO-RS: the coerced headers of a study")
def study_metadata(study: str, request: Request, container: ContainerDep,
                   caller: Reader, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).metadata(study)


@router.get("/studies/{study}/series/{series}/metadata", responses=_METADATA,
            summary="WADO-RS: the coerced headers of a series")
def series_metadata(study: str, series: str, request: Request, container: ContainerDep,
                    caller: Reader, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).metadata(
        study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata",
            responses=_METADATA, summary="WADO-RS: the coerced header of an instance")
def instance_metadata(study: str, series: str, instance: str, request: Request,
                      container: ContainerDep, caller: Reader, domain: DomainParam = None):
    return _Asked(container, request, domain, caller).metadata(
        study, series, instance)


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


@router.post("/studies", responses=_STORE, summary="STOW-RS: store objects")
async def store_studies(request: Request, container: ContainerDep, caller: Storer,
                        domain: DomainParam = None):
    """Objects are stored for the caller's establishment: those without an
    IssuerOfPatientID in its domain; one naming another establishment's is refused."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/related"):
        raise HTTPException(status_code=415,
                            detail="send multipart/related; type=application/dicom")
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise HTTPException(status_code=400, detail="the Content-Type names no boundary")
    # A write: made for the establishment the caller was registered for, never for one it
    # merely names; a regional caller reads only.
    if caller.establishment is None:
        raise forbidden(request, f"{caller.actor_name} speaks for no establishment: only an "
                                 "establishment's systems store objects")
    if domain is not None:
        raise HTTPException(status_code=400, detail="the domain parameter is for queries; a "
                            f"store is made for {caller.establishment}")
    asked = _Asked(container, request, None, caller)
    if asked.asker.kind is not AuthorityKind.ESTABLISHMENT:
        raise forbidden(request, f"{asked.asker.code} is not an establishment: only "
                                 "establishments store objects")
    # The body goes to a temporary file as it arrives, its parts are views of that file:
    # an object of any size is stored without its bytes in memory.
    spooled = await asked.web.spool(request.stream(), container.settings.data_dir / "spool")
    try:
        try:
            parts = await run_in_threadpool(spooled.parts, found.group(1))
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        result = await run_in_threadpool(asked.web.store_for, parts, asked.asker, asked.who,
                                         asked.source, caller.token_id)
        del parts
    finally:
        await run_in_threadpool(spooled.close)
    if result.retry:  # the archive volume or the database failed: nothing kept, send again
        return JSONResponse(result.body, status_code=503, media_type=DICOM_JSON,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    status = 200 if not result.failed else 202 if result.stored else 409
    return JSONResponse(result.body, status_code=status, media_type=DICOM_JSON)

