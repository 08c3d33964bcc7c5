"""The FHIR interface on the real service over loopback: a FHIR client library (fhirpy) for
what a client does, plain HTTP for the error answers IHE prescribes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.patient import Patient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as ClientOperationOutcome
from fhirpy.base.exceptions import ResourceNotFound

from adapters.fhir.mapping import RELIABILITY_EXTENSION, RELIABILITY_SYSTEM
from mpi.model import Identifier
from mpi.normalize import nir_key
from tests.service import RunningService, start_service

CHRU, ICL, MRUN, MASTER = ("urn:oid:1.2.250.1.999.54.1", "urn:oid:1.2.250.1.999.54.2",
                           "urn:oid:1.2.250.1.999.54.3", "urn:oid:1.2.250.1.999.54.0")
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
INS = "1800354395012" + f"{nir_key('1800354395012'):02d}"
READER_SCOPES = "system/Patient.rs system/ImagingStudy.rs"


def patient(system: str, value: str, family: str = "DUPONT", given: str = "Jean",
            birth: str = "1980-01-02", ins: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": value}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "male", "birthDate": birth,
        "address": [{"use": "home", "city": "Nancy", "postalCode": "54000"}],
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                       "valueAddress": {"text": "54395"}}],
        **extra,
    }
    if ins:
        resource["identifier"].append({"system": INS_SYSTEM, "value": ins})
        resource["extension"].append({"url": RELIABILITY_EXTENSION, "valueCodeableConcept": {
            "coding": [{"system": RELIABILITY_SYSTEM, "code": "VALI"}]}})
    return resource


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path)
    yield running
    running.stop()


@pytest.fixture
def http(service: RunningService) -> Iterator[httpx.Client]:
    """The CHRU's feed: it writes in the CHRU's domain, and reads (reads are regional)."""
    with httpx.Client(base_url=service.http_base + "/fhir", timeout=30,
                      headers=service.bearer(establishment="CHRU", name="chru-feed")) as client:
        yield client


def client(service: RunningService, headers: dict[str, str]) -> SyncFHIRClient:
    return SyncFHIRClient(service.http_base + "/fhir", extra_headers=headers)


def put(http: httpx.Client, system: str, value: str, body: dict[str, Any],
        headers: dict[str, str] | None = None) -> httpx.Response:
    return http.put("/Patient", params={"identifier": f"{system}|{value}"}, json=body,
                    headers={**(headers or {}), "Content-Type": "application/fhir+json"})


def outcome(response: httpx.Response, status: int, code: str) -> OperationOutcome:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    parsed = OperationOutcome.model_validate(response.json())
    assert parsed.issue[0].code == code, response.text
    assert parsed.issue[0].diagnostics
    return parsed


def pix(http: httpx.Client, source: str, *targets: str) -> httpx.Response:
    params = [("sourceIdentifier", source)] + [("targetSystem", t) for t in targets]
    return http.get("/Patient/$ihe-pix", params=params)


def targets(response: httpx.Response) -> tuple[set[str], list[str]]:
    parameters = Parameters.model_validate(response.json())
    identifiers = {f"{p.valueIdentifier.system}|{p.valueIdentifier.value}"
                   for p in parameters.parameter or () if p.name == "targetIdentifier"}
    ids = [p.valueReference.reference for p in parameters.parameter or () if p.name == "targetId"]
    return identifiers, ids


def test_a_fhir_client_feeds_reads_searches_and_pages(service: RunningService) -> None:
    writer = client(service, service.bearer(establishment="CHRU", name="chru-feed"))
    people = writer.resources("Patient")
    created, was_created = people.search(identifier=f"{CHRU}|100").update(
        writer.resource("Patient", **patient(CHRU, "100", ins=INS)))
    assert was_created
    updated, was_created = people.search(identifier=f"{CHRU}|100").update(
        writer.resource("Patient", **patient(CHRU, "100", given="Jean-Pierre", ins=INS)))
    assert not was_created and updated.id == created.id
    for number in range(1, 6):
        people.search(identifier=f"{CHRU}|{200 + number}").update(writer.resource(
            "Patient", **patient(CHRU, str(200 + number), family=f"MARTIN{'X' * number}",
                                 birth=f"19{50 + number}-03-0{number}")))

    reader = client(service, service.bearer(READER_SCOPES, name="viewer"))
    read = reader.reference("Patient", created.id).to_resource()
    patient_read = Patient.model_validate(read.serialize())
    assert patient_read.active is True
    assert patient_read.name[0].given == ["Jean-Pierre"]
    systems = {f"{i.system}|{i.value}" for i in patient_read.identifier}
    assert {f"{CHRU}|100", f"{INS_SYSTEM}|{INS}", f"{MASTER}|{created.id}"} == systems
    assert any(e.url == RELIABILITY_EXTENSION for e in patient_read.extension)

    found = reader.resources("Patient").search(family="dupont", birthdate="1980-01-02").fetch()
    assert [p.id for p in found] == [created.id]
    assert reader.resources("Patient").search(**{"family:exact": "dupont"}).fetch() == []
    every_martin = reader.resources("Patient").search(family="martin").limit(2).fetch_all()
    assert len(every_martin) == 5  # fetch_all follows the next links, two at a time
    first_page = reader.resources("Patient").search(family="martin").limit(2).fetch_raw()
    assert Bundle.model_validate(dict(first_page)).total == 5
    by_domain = reader.resources("Patient").search(identifier=f"{INS_SYSTEM}|").fetch()
    assert [p.id for p in by_domain] == [created.id]

    with pytest.raises(ResourceNotFound):
        reader.reference("Patient", "0999999999").to_resource()
    # its token (authenticate), then what it did with patients
    trail = service.container.audit.search(actor=service.actor("chru-feed"))
    assert {e.action.value for e in trail} == {"authenticate", "update"}
    reads = [e for e in service.container.audit.search(actor=service.actor("viewer"))
             if e.action.value != "authenticate"]
    assert {e.action.value for e in reads} == {"read", "search"}
    assert all(e.channel == "fhir" and e.source == "127.0.0.1" for e in reads)
    assert any(e.outcome == "404" for e in reads)


def test_pixm_query_answers_and_errors_as_ihe_prescribes(
    service: RunningService, http: httpx.Client
) -> None:
    assert put(http, CHRU, "1", patient(CHRU, "1", ins=INS)).status_code == 201
    assert put(http, ICL, "2", patient(ICL, "2", ins=INS),
               service.bearer(establishment="ICL")).status_code == 201
    answer = pix(http, f"{CHRU}|1")
    assert answer.status_code == 200
    identifiers, ids = targets(answer)
    assert f"{CHRU}|1" not in identifiers  # never the source identifier
    assert {f"{ICL}|2", f"{INS_SYSTEM}|{INS}"} <= identifiers
    assert len(ids) == 1 and ids[0].startswith(service.http_base + "/fhir/Patient/")
    identifiers, _ = targets(pix(http, f"{INS_SYSTEM}|{INS}", ICL))
    assert identifiers == {f"{ICL}|2"}
    # a known domain where the person has no identifier: 200, no targetIdentifier
    nothing = pix(http, f"{CHRU}|1", MRUN)
    assert nothing.status_code == 200 and targets(nothing)[0] == set()

    outcome(pix(http, f"{CHRU}|404"), 404, "not-found")
    outcome(pix(http, "urn:oid:1.2.3.4.5|1"), 400, "code-invalid")
    outcome(pix(http, f"{CHRU}|1", "urn:oid:1.2.3.4.5"), 403, "code-invalid")
    outcome(pix(http, "no-system-here"), 400, "invalid")
    outcome(http.get("/Patient/$ihe-pix"), 400, "required")


def test_the_feed_merges_deletes_and_refuses_anonymous_or_foreign_writes(
    service: RunningService, http: httpx.Client
) -> None:
    first = put(http, CHRU, "10", patient(CHRU, "10", family="LEGRAND"))
    second = put(http, CHRU, "11", patient(CHRU, "11", family="LEPETIT"))
    assert first.status_code == second.status_code == 201
    assert first.headers["location"].endswith("/fhir/Patient/" + first.json()["id"])
    merge = patient(CHRU, "10", family="LEGRAND", active=False, link=[
        {"type": "replaced-by", "other": {"identifier": {"system": CHRU, "value": "11"}}}])
    merged = put(http, CHRU, "10", merge)
    assert merged.status_code == 200 and merged.json()["id"] == second.json()["id"]
    # the retired identifier resolves to the survivor's person
    identifiers, ids = targets(pix(http, f"{CHRU}|10"))
    assert f"{CHRU}|11" in identifiers and ids[0].endswith(second.json()["id"])
    retired_person = http.get(f"/Patient/{first.json()['id']}").json()
    assert retired_person["active"] is False
    assert retired_person["link"] == [{"other": {"reference": f"Patient/{second.json()['id']}"},
                                       "type": "replaced-by"}]
    inactive = http.get("/Patient", params={"_id": first.json()["id"], "active": "false"})
    assert inactive.json()["total"] == 1

    deleted = http.delete("/Patient", params={"identifier": f"{CHRU}|11"}, )
    assert deleted.status_code == 204
    outcome(pix(http, f"{CHRU}|11"), 404, "not-found")
    outcome(http.delete("/Patient", params={"identifier": f"{CHRU}|11"}, ),
            404, "not-found")

    body = patient(CHRU, "12")
    with httpx.Client(base_url=service.http_base + "/fhir") as anonymous:
        outcome(put(anonymous, CHRU, "12", body), 401, "login")
        outcome(anonymous.delete("/Patient", params={"identifier": f"{CHRU}|10"}), 401,
                "login")
        outcome(anonymous.get("/Patient", params={"family": "LEGRAND"}), 401, "login")
    outcome(put(http, CHRU, "12", body, {"Authorization": "Bearer not-a-token"}), 401,
            "login")
    # another establishment's system, a regional system, a reader: none writes here
    outcome(put(http, CHRU, "12", body, service.bearer(establishment="ICL")), 403,
            "forbidden")
    outcome(put(http, CHRU, "12", body, service.bearer()), 403, "forbidden")
    outcome(put(http, CHRU, "12", body, service.bearer(READER_SCOPES, "CHRU")), 403,
            "forbidden")
    outcome(put(http, "urn:oid:1.2.3.4.5", "12", body), 400, "code-invalid")
    outcome(put(http, CHRU, "12", patient(CHRU, "99")), 400, "invalid")
    outcome(put(http, CHRU, "12", {**body, "birthDate": "not-a-date"}), 400, "invalid")
    outcome(put(http, CHRU, "12", {**body, "active": False}), 400, "invalid")
    outcome(put(http, CHRU, "12", {**body, "active": False, "link": [
        {"type": "replaced-by", "other": {"identifier": {"system": CHRU, "value": "nobody"}}}]}),
        422, "processing")
    malformed = http.put("/Patient", params={"identifier": f"{CHRU}|12"}, content=b"{oops",
                         headers={"Content-Type": "application/fhir+json"})
    outcome(malformed, 400, "structure")
    xml = http.put("/Patient", params={"identifier": f"{CHRU}|12"}, content=b"<Patient/>",
                   headers={"Content-Type": "application/fhir+xml"})
    outcome(xml, 415, "not-supported")
    with service.container.uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("CHRU", "12")) is None  # nothing written
    writes = service.container.audit.search(actor=service.actor("chru-feed"))
    assert {"update", "delete"} <= {e.action.value for e in writes}
    assert all(e.authority == "CHRU" for e in writes)


def test_match_ranks_grades_and_creates_nothing(
    service: RunningService, http: httpx.Client
) -> None:
    put(http, CHRU, "1", patient(CHRU, "1", family="ZIMMERMANN", given="Odile", ins=INS))
    put(http, CHRU, "2", patient(CHRU, "2", family="ZIMMERMANN", given="Odile",
                                 birth="1980-01-03"))
    reader = client(service, service.bearer(READER_SCOPES))
    query = patient(ICL, "77", family="Zimmermann", given="Odile")
    bundle = reader.execute("Patient/$match", data={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": query}, {"name": "count", "valueInteger": 5}]})
    parsed = Bundle.model_validate(bundle)
    scores = [entry.search.score for entry in parsed.entry]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    grades = [next(e.valueCode for e in entry.search.extension
                   if e.url == "http://hl7.org/fhir/StructureDefinition/match-grade")
              for entry in parsed.entry]
    assert grades[0] in ("certain", "probable")
    evidence = next(e for e in parsed.entry[0].search.extension if e.url.endswith("match-evidence"))
    assert {"family_name": "exact", "birth_date": "exact"}.items() <= {
        e.url: e.valueCode for e in evidence.extension}.items()

    by_ins = http.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient(ICL, "78", family="AUTRE", ins=INS)},
        {"name": "onlyCertainMatches", "valueBoolean": True}]})
    certain = Bundle.model_validate(by_ins.json())
    assert certain.total == 1 and certain.entry[0].search.score == 1
    put(http, CHRU, "3", patient(CHRU, "3", family="KOWALSKI", given="Anna"))
    put(http, CHRU, "4", patient(CHRU, "4", family="KOWALSKI", given="Anna"))
    twice = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient(ICL, "79", family="KOWALSKI", given="Anna")},
        {"name": "onlyCertainMatches", "valueBoolean": True}]}
    everyone = {**twice, "parameter": twice["parameter"][:1]}
    all_grades = Bundle.model_validate(http.post("/Patient/$match", json=everyone).json())
    assert [entry.search.extension[0].valueCode for entry in all_grades.entry][:3] == [
        "certain", "certain", "possible"]
    assert http.post("/Patient/$match", json=twice).json()["total"] == 0
    # A birth date known only to the year (01/01) is never a certain match: the feed would
    # not link it automatically either.
    partial = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource":
               patient(ICL, "80", family="KOWALSKI", given="Anna", birth="1980-01-01")}]}
    graded = Bundle.model_validate(http.post("/Patient/$match", json=partial).json())
    assert graded.entry
    assert all(entry.search.extension[0].valueCode != "certain" for entry in graded.entry)
    with service.container.uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("ICL", "77")) is None

    outcome(http.post("/Patient/$match", json={"resourceType": "Parameters"}), 400, "required")
    outcome(http.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "birthDate": "x"}}]}),
        400, "invalid")
    with pytest.raises(ClientOperationOutcome):
        reader.execute("Patient/$match", data={"resourceType": "Patient"})


def test_every_error_is_an_operation_outcome(service: RunningService, http: httpx.Client) -> None:
    outcome(http.get("/Patient", params={"family": "x", "birthdate": "not-a-date"}), 400,
            "invalid")
    outcome(http.get("/Patient", params={"family": "x", "_count": "abc"}), 400, "invalid")
    outcome(http.get("/Patient", params={"family": "x", "_count": "\u00b2"}), 400, "invalid")
    outcome(http.get("/Patient", params={"family": "x", "unknown": "1"}), 400, "not-supported")
    outcome(http.get("/Patient", params={"family:contains": "x"}), 400, "not-supported")
    outcome(http.get("/Patient", params={"gender": "yes"}), 400, "code-invalid")
    outcome(http.get("/Patient"), 400, "invalid")
    outcome(http.get("/Patient", params={"family": "x", "_format": "xml"}), 406, "not-supported")
    outcome(http.get("/metadata", headers={"Accept": "application/fhir+xml"}), 406,
            "not-supported")
    outcome(http.get("/Patient", params={"family": "a\x00b"}), 400, "invalid")
    outcome(http.get("/Nothing"), 404, "not-found")
    outcome(http.delete("/metadata"), 405, "not-supported")
    outcome(http.post("/Patient/_search", json={"family": "x"}), 415, "not-supported")
    outcome(http.get("/Patient/not-an-id"), 404, "not-found")
    assert http.get("/Patient", params={"family": "x", "_format": "json"}).json()["total"] == 0
    assert http.post("/Patient/_search", data={"family": "x"}).json()["total"] == 0
    statement = CapabilityStatement.model_validate(http.get("/metadata").json())
    assert statement.fhirVersion == "4.0.1"
    rest = statement.rest[0].resource
    assert [r.type for r in rest] == ["Patient", "ImagingStudy", "AuditEvent"]
    assert {o.name for o in rest[0].operation} == {"ihe-pix", "match"}
    assert {i.code for i in rest[0].interaction} == {"read", "search-type", "update", "delete"}
    # the other routes keep their JSON errors
    other = httpx.get(service.http_base + "/api/review/1")
    assert other.status_code == 401 and other.json()["detail"]
