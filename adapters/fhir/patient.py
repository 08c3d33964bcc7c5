"""The Patient resource: PDQm read and search, PIXm query and feed, $match.

Routes only translate: parameters and bodies to the core's queries and commands, their
results to resources. The literal paths ($ihe-pix, $match, _search) come before
``/Patient/{patient_id}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from adapters.fhir.caller import READS, SEARCHES, WriterDep, expect_access, trace_access
from adapters.fhir.common import base_url, only_parameters, patient_of
from adapters.fhir.errors import from_core_error
from adapters.fhir.mapping import parse_patient, record_data_from_patient
from adapters.fhir.match import match_bundle, parse_match_request
from adapters.fhir.negotiation import read_form_body, read_json_body
from adapters.fhir.pdqm import SEARCH_PARAMETERS, parse_search, read_person, search_bundle
from adapters.fhir.pixm import conditional_identifier, pix_parameters, replaced_by
from adapters.fhir.registry import Operation, ResourceCapability
from adapters.fhir.wire import FhirError, FhirResponse
from adapters.http.deps import ContainerDep
from mpi.audit import AuditAction
from mpi.errors import MPIError
from mpi.identity import DeleteRecord, MergeRecords, RecordData, RegisterRecord
from mpi.model import master_id_of
from mpi.queries import current_person
from mpi.retry import retry_on_conflict

__all__ = ["router", "CAPABILITY"]

router = APIRouter(tags=["fhir"])

JsonBody = Annotated[dict[str, Any], Depends(read_json_body)]
FormBody = Annotated[list[tuple[str, str]], Depends(read_form_body)]


@router.get("/Patient/$ihe-pix", summary="PIXm query (ITI-83)", response_class=FhirResponse,
            dependencies=[SEARCHES])
def pix_query(request: Request, container: ContainerDep) -> FhirResponse:
    expect_access(request, AuditAction.SEARCH)
    only_parameters(request.query_params.keys(), {"sourceIdentifier", "targetSystem"})
    with container.uow_factory(read_only=True) as uow:
        parameters, person_id = pix_parameters(uow, container.registry, request,
                                               base_url(request))
    trace_access(request, [person_id])
    return FhirResponse(parameters)


@router.post("/Patient/$match", summary="Patient match (ITI-119)", response_class=FhirResponse,
             dependencies=[SEARCHES])
def match(request: Request, container: ContainerDep, body: JsonBody) -> FhirResponse:
    expect_access(request, AuditAction.SEARCH)
    only_parameters(request.query_params.keys(), ())
    wanted = parse_match_request(body)
    with container.uow_factory(read_only=True) as uow:
        bundle, persons = match_bundle(uow, container.registry, container.matcher, wanted,
                                       base_url(request))
    trace_access(request, persons)
    return FhirResponse(bundle)


def _search(request: Request, container: Any, pairs: list[tuple[str, str]]) -> FhirResponse:
    expect_access(request, AuditAction.SEARCH)
    search = parse_search(pairs, container.registry)
    with container.uow_factory(read_only=True) as uow:
        bundle, persons = search_bundle(uow, container.registry, search, request)
    trace_access(request, persons)
    return FhirResponse(bundle)


@router.get("/Patient", summary="PDQm search (ITI-78)", response_class=FhirResponse,
            dependencies=[SEARCHES])
def search_get(request: Request, container: ContainerDep) -> FhirResponse:
    return _search(request, container, list(request.query_params.multi_items()))


@router.post("/Patient/_search", summary="PDQm search, form-encoded (ITI-78)",
             response_class=FhirResponse, dependencies=[SEARCHES])
def search_post(request: Request, container: ContainerDep, form: FormBody) -> FhirResponse:
    return _search(request, container, list(request.query_params.multi_items()) + form)


@router.put("/Patient", summary="PIXm feed: create, update or merge a record (ITI-104)",
            response_class=FhirResponse)
def update(request: Request, container: ContainerDep, actor: WriterDep,
           body: JsonBody) -> FhirResponse:
    expect_access(request, AuditAction.UPDATE)
    registry = container.registry
    identifier = conditional_identifier(registry, request)
    patient = parse_patient(body)
    survivor = replaced_by(registry, patient)
    if survivor is None and patient.active is False:
        raise FhirError(400, "invalid", "active false merges: it needs a replaced-by link; "
                        "a record is removed with a conditional DELETE",
                        expression="Patient.active")
    if survivor is not None and patient.active is not False:
        raise FhirError(400, "invalid", "a replaced-by link merges: the Patient must be "
                        "active false", expression="Patient.active")
    data = record_data_from_patient(registry, patient, identifier)

    def write() -> tuple[dict[str, Any], int, bool]:
        with container.uow_factory() as uow:
            if survivor is None:
                record = container.identity.register(uow, RegisterRecord(data), actor)
            else:
                known = uow.records.by_identifier(survivor)
                if known is None or not known.is_active:
                    raise FhirError(422, "processing", f"the replaced-by link names no active "
                                    f"record ({survivor.value} in {survivor.authority})",
                                    expression="Patient.link")
                record = container.identity.merge(uow, MergeRecords(
                    RecordData(survivor, location="Patient.link"), identifier,
                    "Patient.identifier"), actor)
            link = uow.links.for_record(record.id or 0)
            person = current_person(uow, link.person_id) if link is not None else None
            if person is None or person.id is None:
                raise RuntimeError(f"record {record.identifier} has no person after a write")
            resource = patient_of(uow, registry, person)
            uow.commit()
            return resource, person.id, survivor is None and record.version == 1

    try:
        resource, person_id, created = retry_on_conflict(write)
    except MPIError as exc:
        raise from_core_error(exc) from None
    trace_access(request, [person_id], detail={"identifier": str(identifier),
                                               "merged_into": str(survivor) if survivor else None})
    location = f"{base_url(request)}/Patient/{master_id_of(person_id)}"
    return FhirResponse(resource, status_code=201 if created else 200,
                        headers={"Location": location})


@router.delete("/Patient", summary="PIXm feed: remove a record (ITI-104)", status_code=204,
               response_class=Response)
def delete(request: Request, container: ContainerDep, actor: WriterDep) -> Response:
    expect_access(request, AuditAction.DELETE)
    identifier = conditional_identifier(container.registry, request)

    def write() -> int:
        with container.uow_factory() as uow:
            person_id = container.identity.delete(
                uow, DeleteRecord(identifier, "identifier"), actor)
            uow.commit()
            return person_id

    try:
        person_id = retry_on_conflict(write)
    except MPIError as exc:
        raise from_core_error(exc) from None
    trace_access(request, [person_id], detail={"identifier": str(identifier)})
    return Response(status_code=204)


@router.get("/Patient/{patient_id}", summary="PDQm read (ITI-78)", response_class=FhirResponse,
            dependencies=[READS])
def read(patient_id: str, request: Request, container: ContainerDep) -> FhirResponse:
    expect_access(request, AuditAction.READ)
    only_parameters(request.query_params.keys(), ())
    with container.uow_factory(read_only=True) as uow:
        resource, person_id = read_person(uow, container.registry, patient_id)
    trace_access(request, [person_id])
    return FhirResponse(resource)


CAPABILITY = ResourceCapability(
    type="Patient",
    router=router,
    interactions=("read", "search-type", "update", "delete"),
    documentation="A person of the index (id: the master identifier). Update and delete are "
                  "conditional on identifier=urn:oid:<domain OID>|value (PIXm feed); "
                  "search also by POST Patient/_search.",
    search_parameters=SEARCH_PARAMETERS,
    operations=(
        Operation("ihe-pix", "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
                  "PIXm query (ITI-83): the identifiers of the person a source identifier "
                  "designates; a retired identifier resolves to its survivor"),
        Operation("match", "http://hl7.org/fhir/OperationDefinition/Patient-match",
                  "Patient match (ITI-119): candidates best first, with score, match grade and "
                  "per-field evidence; never creates anything"),
    ),
    supported_profiles=("https://profiles.ihe.net/ITI/PDQm/StructureDefinition/IHE.PDQm.Patient",),
    conditional_update=True,
    conditional_delete="single",
)
