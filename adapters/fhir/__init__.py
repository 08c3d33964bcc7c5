"""FHIR R4 over HTTP (FastAPI, fhir.resources R4B models): PIXm, PDQm, $match, the PIXm feed,
ImagingStudy, and the access trail as AuditEvent.

:data:`RESOURCES` lists what is served; :func:`mount` adds the whole tree under
:data:`FHIR_BASE` to an application: the resource routers, ``GET /metadata`` built from the same
declarations, content negotiation and caller identification as dependencies of every route,
and OperationOutcome answers for every error under the base.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request

from adapters.fhir import audit_event, imaging_study, patient
from adapters.fhir.caller import identify_caller, trace_failure
from adapters.fhir.common import FHIR_BASE, base_url, only_parameters
from adapters.fhir.errors import install_error_handlers
from adapters.fhir.negotiation import negotiate_format
from adapters.fhir.registry import ResourceCapability, capability_statement
from adapters.fhir.wire import FHIR_VERSION, FhirResponse
from adapters.http.deps import public

__all__ = ["FHIR_BASE", "RESOURCES", "mount"]

# Every resource type served. A new one (e.g. ImagingStudy) is one more entry.
RESOURCES: tuple[ResourceCapability, ...] = (patient.CAPABILITY, imaging_study.CAPABILITY,
                                             audit_event.CAPABILITY)

CAPABILITY_DATE = "2025-01-01"


def _service_url(request: Request) -> str:
    """The service's address as its clients know it (``public_url``), else as reached."""
    settings = getattr(request.app.state.container, "settings", None)
    public_url = getattr(settings, "public_url", None)
    return (public_url or str(request.base_url)).rstrip("/")


def _metadata_router(resources: tuple[ResourceCapability, ...], version: str) -> APIRouter:
    router = APIRouter(tags=["fhir"])

    @router.get("/metadata", summary="CapabilityStatement", response_class=FhirResponse)
    @public
    def metadata(request: Request) -> FhirResponse:
        only_parameters(request.query_params.keys(), {"mode"})
        return FhirResponse(capability_statement(
            resources, version=version, base_url=base_url(request),
            fhir_version=FHIR_VERSION, date=CAPABILITY_DATE,
            token_url=_service_url(request) + "/oauth/token"))

    return router


def mount(app: FastAPI, version: str,
          resources: tuple[ResourceCapability, ...] = RESOURCES) -> None:
    """Serve the FHIR tree of ``resources`` under FHIR_BASE in ``app``."""
    root = APIRouter(prefix=FHIR_BASE,
                     dependencies=[Depends(negotiate_format), Depends(identify_caller)])
    root.include_router(_metadata_router(resources, version))
    for resource in resources:
        root.include_router(resource.router)
    app.include_router(root)
    install_error_handlers(app, FHIR_BASE, trace_failure)
