"""The access trail as FHIR AuditEvent resources, shaped after IHE Basic Audit Log Patterns
(BALP): who (the authenticated client or person, its establishment, roles, token ``jti`` and
network address, as the requestor; this service as the destination), what (the interaction,
its outcome), about whom (one entity per master person) and the request itself.

Read-only: the trail is append-only, and reading it is itself traced. Searching needs the
scope ``AuditEvent.s`` (a system) or the role ``auditor`` (a person).
"""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request

from adapters.fhir.caller import expect_access, trace_access
from adapters.fhir.common import base_url, only_parameters
from adapters.fhir.registry import ResourceCapability, SearchParameter
from adapters.fhir.wire import FhirError, FhirResponse
from adapters.http.deps import ContainerDep, requires
from mpi.audit import AuditAction, AuditEvent
from mpi.model import master_id_of, person_id_of_master_id

__all__ = ["router", "CAPABILITY", "audit_event_json", "date_bounds"]

router = APIRouter(tags=["fhir"])

LOCAL_ZONE = ZoneInfo("Europe/Paris")  # a date without a time zone is a day in Nancy
DEFAULT_COUNT = 100
MAX_COUNT = 1000
DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_SYSTEM = "urn:nancy-mpi:role"
ACTOR_SYSTEM = "urn:nancy-mpi:actor"
ESTABLISHMENT_EXTENSION = "urn:nancy-mpi:audit:establishment"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition"

# action → (AuditEvent.action, restful interaction or None, BALP profile)
_ACTIONS: dict[AuditAction, tuple[str, str | None, str | None]] = {
    AuditAction.READ: ("R", "read", "IHE.BasicAudit.PatientRead"),
    AuditAction.SEARCH: ("E", "search", "IHE.BasicAudit.PatientQuery"),
    AuditAction.RETRIEVE: ("R", "read", "IHE.BasicAudit.PatientRead"),
    AuditAction.CREATE: ("C", "create", "IHE.BasicAudit.PatientCreate"),
    AuditAction.UPDATE: ("U", "update", "IHE.BasicAudit.PatientUpdate"),
    AuditAction.DELETE: ("D", "delete", "IHE.BasicAudit.PatientDelete"),
    AuditAction.EXPORT: ("R", None, None),
    AuditAction.AUTHENTICATE: ("E", None, None),
    AuditAction.ALERT: ("E", None, None),
}
# Security events and DICOM transfers have DICOM event types; the rest are RESTful or
# application activity.
_DICOM_TYPES: dict[AuditAction, tuple[str, str]] = {
    AuditAction.AUTHENTICATE: ("110114", "User Authentication"),
    AuditAction.ALERT: ("110113", "Security Alert"),
    AuditAction.EXPORT: ("110106", "Export"),
}

SEARCH_PARAMETERS = (
    SearchParameter("patient", "reference",
                    "The accesses to one person's data: Patient/<master id> (or the bare id)",
                    "http://hl7.org/fhir/SearchParameter/clinical-patient"),
    SearchParameter("agent", "string",
                    "Who acted, as the trail names it (client:NAME, user:NAME, dicom:AET, "
                    "hl7:FACILITY/APP) or by the bare name"),
    SearchParameter("date", "date",
                    "When it was recorded, with a prefix: ge, gt, le, lt, eq (repeatable: "
                    "date=ge2026-11-01&date=lt2026-12-01); a day without a time zone is a day "
                    "in Europe/Paris", "http://hl7.org/fhir/SearchParameter/AuditEvent-date"),
    SearchParameter("_count", "number", f"Entries per page (default {DEFAULT_COUNT}, at "
                                        f"most {MAX_COUNT}); newest first"),
    SearchParameter("_offset", "number", "Entries to skip (the next link gives it)"),
)


def _outcome(outcome: str) -> tuple[str, str | None]:
    """BALP's outcome code (0 success, 4 minor failure: refused or bad request, 8 serious
    failure: the service failed) and the description of a failure."""
    if outcome == "success":
        return "0", None
    status = outcome.split()[0]
    if status.isdigit() and int(status) >= 500:
        return "8", outcome
    return "4", outcome


def _type(event: AuditEvent) -> dict[str, Any]:
    if event.action in _DICOM_TYPES:
        code, display = _DICOM_TYPES[event.action]
        return {"system": DCM, "code": code, "display": display}
    if event.channel in ("fhir", "dicomweb", "api", "oauth", "http"):
        return {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
    if event.channel == "dicom":
        return {"system": DCM, "code": "110112" if event.action is AuditAction.SEARCH
                else "110104", "display": "Query" if event.action is AuditAction.SEARCH
                else "DICOM Instances Transferred"}
    return {"system": DCM, "code": "110110", "display": "Patient Record"}


def _requestor(event: AuditEvent) -> dict[str, Any]:
    kind, _, name = event.actor.partition(":")
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": ACTOR_SYSTEM, "value": event.actor},
                "display": name or event.actor},
        "requestor": True,
    }
    if event.roles:
        agent["role"] = [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}
                         for role in event.roles]
    if kind == "user":
        agent["altId"] = name
    if event.token_id:
        agent["policy"] = [event.token_id]  # BALP: the id of the token that authorized it
    if event.source:
        agent["network"] = {"address": event.source,
                            "type": "2" if event.source.replace(".", "").isdigit() or ":" in
                            event.source else "1"}
    if event.authority:
        agent["extension"] = [{"url": ESTABLISHMENT_EXTENSION, "valueCode": event.authority}]
    return agent


def _detail(value: object) -> dict[str, Any]:
    if isinstance(value, str):
        return {"valueString": value}
    return {"valueString": json.dumps(value, ensure_ascii=False, sort_keys=True)}


def audit_event_json(event: AuditEvent, request: Request) -> dict[str, Any]:
    """The AuditEvent (R4) of one trail entry."""
    action, interaction, profile = _ACTIONS.get(event.action, ("E", None, None))
    outcome, description = _outcome(event.outcome)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(event.id),
        "type": _type(event),
        "action": action,
        "recorded": event.occurred_at.isoformat(),
        "outcome": outcome,
        "agent": [
            _requestor(event),
            {"type": {"coding": [{"system": DCM, "code": "110152",
                                  "display": "Destination Role ID"}]},
             "who": {"display": "nancy-mpi", "identifier": {"system": ACTOR_SYSTEM,
                                                            "value": "service:nancy-mpi"}},
             "requestor": False,
             "network": {"address": request.url.hostname or "localhost", "type": "1"}},
        ],
        "source": {"observer": {"display": "nancy-mpi"},
                   "type": [{"system": SOURCE_TYPE, "code": "4",
                             "display": "Application Server"}]},
    }
    if profile is not None and event.persons:
        resource["meta"] = {"profile": [f"{BALP}/{profile}"]}
    if interaction is not None:
        resource["subtype"] = [{"system": INTERACTION, "code": interaction}]
    if description:
        resource["outcomeDesc"] = description
    subject: dict[str, Any] = {
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "description": f"{event.channel}: {event.subject}",
    }
    if event.action is AuditAction.SEARCH:
        subject["role"] = {"system": OBJECT_ROLE, "code": "24", "display": "Query"}
        subject["query"] = base64.b64encode(event.subject.encode("utf-8")).decode("ascii")
    if event.detail:
        subject["detail"] = [{"type": key, **_detail(value)}
                             for key, value in sorted(event.detail.items())]
    resource["entity"] = [
        *({"what": {"reference": f"Patient/{master_id_of(person)}"},
           "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
           "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}}
          for person in event.persons),
        subject,
    ]
    return resource


_PREFIXES = ("ge", "gt", "le", "lt", "eq")


def _instant(text: str) -> tuple[datetime, datetime]:
    """The interval a FHIR date or dateTime designates: [start, end)."""
    try:
        if "T" not in text:
            parts = text.split("-")
            if len(parts) == 1:
                first = date(int(parts[0]), 1, 1)
                last = date(first.year + 1, 1, 1)
            elif len(parts) == 2:
                first = date(int(parts[0]), int(parts[1]), 1)
                last = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
            else:
                first = date.fromisoformat(text)
                last = first + timedelta(days=1)
            return (datetime.combine(first, time(), LOCAL_ZONE),
                    datetime.combine(last, time(), LOCAL_ZONE))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FhirError(400, "invalid", f"date={text!r} is not a FHIR date or dateTime",
                        expression="date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_ZONE)
    return moment, moment + timedelta(seconds=1)


def date_bounds(values: list[str]) -> tuple[datetime | None, datetime | None]:
    """The [since, until) interval of repeated ``date`` parameters (each with a prefix, eq
    by default). Raises FhirError 400 for a malformed one."""
    since: datetime | None = None
    until: datetime | None = None

    def later(a: datetime | None, b: datetime) -> datetime:
        return b if a is None else max(a, b)

    def earlier(a: datetime | None, b: datetime) -> datetime:
        return b if a is None else min(a, b)

    for value in values:
        prefix, text = (value[:2], value[2:]) if value[:2] in _PREFIXES else ("eq", value)
        start, end = _instant(text.strip())
        if prefix == "ge":
            since = later(since, start)
        elif prefix == "gt":
            since = later(since, end)
        elif prefix == "le":
            until = earlier(until, end)
        elif prefix == "lt":
            until = earlier(until, start)
        else:
            since, until = later(since, start), earlier(until, end)
    return since, until


def _number(request: Request, name: str, default: int, highest: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= highest:
        raise FhirError(400, "invalid", f"{name} must be a number from 0 to {highest}",
                        expression=name)
    return int(text)


@router.get("/AuditEvent", summary="The access trail (IHE BALP AuditEvent), newest first",
            dependencies=[Depends(requires("AuditEvent", "s"))], response_class=FhirResponse)
def search(request: Request, container: ContainerDep) -> FhirResponse:
    expect_access(request, AuditAction.SEARCH)
    params = request.query_params
    only_parameters(params.keys(), {"patient", "agent", "date", "_count", "_offset"})
    for name in ("patient", "agent"):
        if len(params.getlist(name)) > 1:
            raise FhirError(400, "invalid", f"give {name} once", expression=name)
    person_id = None
    if "patient" in params:
        reference = params["patient"].strip().removeprefix("Patient/")
        person_id = person_id_of_master_id(reference)
        if person_id is None:
            raise FhirError(400, "invalid", f"patient={params['patient']!r} is not "
                            "Patient/<master id>", expression="patient")
    agent = params.get("agent", "").strip() or None
    since, until = date_bounds(params.getlist("date"))
    count = _number(request, "_count", DEFAULT_COUNT, MAX_COUNT)
    offset = _number(request, "_offset", 0, 2**31)
    events = container.audit.search(person_id=person_id, actor=agent, limit=count + 1,
                                    since=since, until=until, offset=offset)
    more = len(events) > count
    events = events[:count]
    links = [{"relation": "self", "url": str(request.url)}]
    if more:
        links.append({"relation": "next", "url": str(request.url.include_query_params(
            _offset=offset + count, _count=count))})
    trace_access(request, [person_id], detail={"entries": len(events)})
    return FhirResponse({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"fullUrl": f"{base_url(request)}/AuditEvent/{event.id}",
                   "resource": audit_event_json(event, request),
                   "search": {"mode": "match"}} for event in events],
    })


@router.get("/AuditEvent/{event_id}", summary="One entry of the access trail",
            dependencies=[Depends(requires("AuditEvent", "r"))], response_class=FhirResponse)
def read(event_id: str, request: Request, container: ContainerDep) -> FhirResponse:
    expect_access(request, AuditAction.READ)
    only_parameters(request.query_params.keys(), ())
    found = (container.audit.search(event_id=int(event_id), limit=1)
             if event_id.isascii() and event_id.isdigit() and int(event_id) < 2**63
             else [])
    if not found:
        raise FhirError(404, "not-found", f"no AuditEvent {event_id}",
                        expression="AuditEvent.id")
    trace_access(request, found[0].persons, detail={"audit_event": found[0].id})
    return FhirResponse(audit_event_json(found[0], request))


CAPABILITY = ResourceCapability(
    type="AuditEvent",
    router=router,
    interactions=("read", "search-type"),
    documentation="The access trail, read-only, shaped after IHE BALP: every read, search, "
                  "change and security event, naming the authenticated principal (client or "
                  "person, establishment, roles, token jti, address) and one entity per "
                  "person concerned. Needs AuditEvent.rs or the role auditor; reading it is "
                  "itself traced.",
    search_parameters=SEARCH_PARAMETERS,
    supported_profiles=(f"{BALP}/IHE.BasicAudit.PatientRead",
                        f"{BALP}/IHE.BasicAudit.PatientQuery",
                        f"{BALP}/IHE.BasicAudit.PatientCreate",
                        f"{BALP}/IHE.BasicAudit.PatientUpdate",
                        f"{BALP}/IHE.BasicAudit.PatientDelete"),
)
