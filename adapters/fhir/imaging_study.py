"""The ImagingStudy resource: every study of a person across the four sites.

A study belongs to the record it arrived with; its person is found through that record's link
at read time, so after a merge, a link or an unlink the study answers under the new person at
once. The resource id is the Study Instance UID (digits and dots, at most 64 characters: a
valid FHIR id). ``endpoint`` points at the archive's WADO-RS base, where the objects are
retrieved coerced for the asker's identifier domain.
"""

from __future__ import annotations

from datetime import datetime
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request

from adapters.fhir.caller import expect_access, trace_access
from adapters.fhir.common import base_url, only_parameters
from adapters.fhir.mapping import parse_token_identifier
from adapters.fhir.registry import ResourceCapability, SearchParameter
from adapters.fhir.wire import FhirError, FhirResponse
from adapters.http.deps import ContainerDep, requires
from mpi.archive import StudyFilter, StudySummary, find_studies, studies_of_person
from mpi.audit import AuditAction
from mpi.errors import UnknownAuthorityError
from mpi.model import Identifier, master_id_of, person_id_of_master_id
from mpi.queries import current_person, resolve_person

__all__ = ["router", "CAPABILITY"]

router = APIRouter(tags=["fhir"])

DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOCAL_ZONE = ZoneInfo("Europe/Paris")
WADO_ENDPOINT_ID = "wado-rs"
ACCESSION_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                              "code": "ACSN"}]}

SEARCH_PARAMETERS = (
    SearchParameter("patient", "reference",
                    "The person's studies at every site: Patient/<master id> (or the bare id)",
                    "http://hl7.org/fhir/SearchParameter/clinical-patient"),
    SearchParameter("patient.identifier", "token",
                    "Chained: the studies of the person an identifier designates "
                    "(urn:oid:<domain OID>|value; a retired identifier follows its survivor)"),
)


def _wado_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


def _started(study: StudySummary) -> str | None:
    if study.study_date is None:
        return None
    time = (study.study_time or "").split(".")[0]
    if len(time) >= 6 and time[:6].isascii() and time[:6].isdigit():
        try:
            local = datetime.combine(study.study_date, dt_time(
                int(time[0:2]), int(time[2:4]), int(time[4:6])), LOCAL_ZONE)
        except ValueError:
            return study.study_date.isoformat()
        return local.isoformat()  # DICOM times are local time of the sites
    return study.study_date.isoformat()


def imaging_study_json(study: StudySummary, request: Request) -> dict[str, Any]:
    """The ImagingStudy of a stored study (R4)."""
    identifiers: list[dict[str, Any]] = [
        {"system": "urn:dicom:uid", "value": f"urn:oid:{study.study_instance_uid}"}
    ]
    if study.accession_number:
        identifiers.append({"type": ACCESSION_TYPE, "value": study.accession_number})
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": study.study_instance_uid,
        "contained": [{
            "resourceType": "Endpoint",
            "id": WADO_ENDPOINT_ID,
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "dicom-wado-rs",
            },
            "payloadType": [{"text": "DICOM"}],
            "payloadMimeType": ["application/dicom"],
            "address": _wado_base(request),
        }],
        "identifier": identifiers,
        "status": "available",
        "subject": {"reference": f"Patient/{master_id_of(study.person_id)}"}
        if study.person_id is not None else {"display": "unknown patient"},
        "endpoint": [{"reference": f"#{WADO_ENDPOINT_ID}"}],
        "numberOfSeries": len(study.series),
        "numberOfInstances": study.instance_count,
    }
    started = _started(study)
    if started:
        resource["started"] = started
    if study.modalities:
        resource["modality"] = [{"system": DCM, "code": m} for m in study.modalities]
    if study.description:
        resource["description"] = study.description
    series = []
    for item in study.series:
        entry: dict[str, Any] = {
            "uid": item.series_instance_uid,
            "modality": {"system": DCM, "code": item.modality or "OT"},
            "numberOfInstances": item.instance_count,
        }
        if item.series_number is not None:
            entry["number"] = item.series_number
        if item.description:
            entry["description"] = item.description
        series.append(entry)
    if series:
        resource["series"] = series
    return resource


def _person_of_reference(uow: Any, value: str) -> int | None:
    reference = value.strip()
    if reference.startswith("Patient/"):
        reference = reference[len("Patient/"):]
    elif "/" in reference:
        raise FhirError(400, "invalid", f"patient={value!r}: a Patient reference is "
                        "Patient/<id> or the bare id", expression="patient")
    person_id = person_id_of_master_id(reference)
    if person_id is None:
        return None
    person = current_person(uow, person_id)
    return person.id if person is not None else None


def _person_of_identifier(uow: Any, registry: Any, value: str) -> int | None:
    try:
        authority, local = parse_token_identifier(registry, value, "patient.identifier")
    except UnknownAuthorityError as exc:
        raise FhirError(400, "code-invalid", f"patient.identifier: {exc.message}",
                        expression="patient.identifier") from None
    if not local:
        raise FhirError(400, "required", "patient.identifier needs system|value",
                        expression="patient.identifier")
    person = resolve_person(uow, registry, Identifier(authority.code, local))
    return person.id if person is not None else None


@router.get("/ImagingStudy", summary="Every study of a person across sites",
            dependencies=[Depends(requires("ImagingStudy", "s"))],
            response_class=FhirResponse)
def search(request: Request, container: ContainerDep) -> FhirResponse:
    expect_access(request, AuditAction.SEARCH)
    params = request.query_params
    only_parameters(params.keys(), {"patient", "patient.identifier"})
    given = [name for name in ("patient", "patient.identifier") if name in params]
    if len(given) != 1 or len(params.getlist(given[0])) != 1:
        raise FhirError(400, "required", "give exactly one patient=Patient/<id> or "
                        "patient.identifier=urn:oid:<domain OID>|value", expression="patient")
    with container.uow_factory(read_only=True) as uow:
        if given[0] == "patient":
            person_id = _person_of_reference(uow, params["patient"])
        else:
            person_id = _person_of_identifier(uow, container.registry,
                                              params["patient.identifier"])
        studies = studies_of_person(uow, person_id) if person_id is not None else []
    entries = [{
        "fullUrl": f"{base_url(request)}/ImagingStudy/{study.study_instance_uid}",
        "resource": imaging_study_json(study, request),
        "search": {"mode": "match"},
    } for study in studies]
    trace_access(request, [person_id], detail={"studies": len(studies)})
    return FhirResponse({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "link": [{"relation": "self", "url": str(request.url)}],
        "entry": entries,
    })


@router.get("/ImagingStudy/{study_id}", summary="One study", response_class=FhirResponse,
            dependencies=[Depends(requires("ImagingStudy", "r"))])
def read(study_id: str, request: Request, container: ContainerDep) -> FhirResponse:
    expect_access(request, AuditAction.READ)
    only_parameters(request.query_params.keys(), ())
    with container.uow_factory(read_only=True) as uow:
        found = find_studies(uow, StudyFilter(study_uids=(study_id,), limit=1))
    if not found:
        raise FhirError(404, "not-found", f"no ImagingStudy {study_id}",
                        expression="ImagingStudy.id")
    trace_access(request, [found[0].person_id])
    return FhirResponse(imaging_study_json(found[0], request))


CAPABILITY = ResourceCapability(
    type="ImagingStudy",
    router=router,
    interactions=("read", "search-type"),
    documentation="The studies of the shared archive (id: the Study Instance UID), each under "
                  "the person it belongs to now, with its series, modalities, instance counts "
                  "and the WADO-RS endpoint.",
    search_parameters=SEARCH_PARAMETERS,
)
