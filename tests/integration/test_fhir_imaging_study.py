"""FHIR ImagingStudy against the running service: the studies of every site under the person
they belong to now, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.imagingstudy import ImagingStudy

from mpi.identity import Actor, MergeRecords, RecordData
from mpi.model import Identifier, master_id_of
from tests.dicom_objects import UNCOMPRESSED_CT, relabel
from tests.integration.test_dicom_archive import (  # noqa: F401 (fixtures)
    CHRU_STUDY,
    MRUN_STUDY,
    person_of,
    register,
    service,
    store,
    two_sites,
    write,
)
from tests.service import RunningService

CHRU_OID, MRUN_OID = "1.2.250.1.999.54.1", "1.2.250.1.999.54.3"


def clinician(service: RunningService) -> httpx.Client:
    """A radiologist's session (role clinician: reads patients and their studies)."""
    return service.person("dr.radiologue", "clinician")


def studies(service: RunningService, **params: str) -> dict:
    response = clinician(service).get("/fhir/ImagingStudy", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    Bundle.model_validate(response.json())
    return response.json()


def test_a_person_s_studies_from_every_site_answer_by_her_id_or_any_of_her_identifiers(
    two_sites: RunningService,
) -> None:
    person = person_of(two_sites, "CHRU", "100234")
    by_reference = studies(two_sites, patient=f"Patient/{master_id_of(person)}")
    assert by_reference["total"] == 2
    by_mrun_ipp = studies(two_sites, **{"patient.identifier": f"urn:oid:{MRUN_OID}|M5678"})
    assert by_mrun_ipp["total"] == 2
    by_bare_id = studies(two_sites, patient=master_id_of(person))
    assert {e["resource"]["id"] for e in by_bare_id["entry"]} == {CHRU_STUDY, MRUN_STUDY}

    resources = {e["resource"]["id"]: e["resource"] for e in by_reference["entry"]}
    mrun = ImagingStudy.model_validate(resources[MRUN_STUDY])
    assert mrun.subject.reference == f"Patient/{master_id_of(person)}"
    assert mrun.numberOfSeries == 2 and mrun.numberOfInstances == 3
    assert {s.uid: s.numberOfInstances for s in mrun.series} == {
        f"{MRUN_STUDY}.1": 1, f"{MRUN_STUDY}.2": 2}
    assert mrun.identifier[0].value == f"urn:oid:{MRUN_STUDY}"
    endpoint = resources[MRUN_STUDY]["contained"][0]
    assert endpoint["address"] == f"{two_sites.http_base}/dicomweb"
    assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
    assert resources[MRUN_STUDY]["endpoint"] == [{"reference": "#wado-rs"}]
    chru = resources[CHRU_STUDY]
    assert {c["code"] for c in chru["modality"]} == {s["modality"]["code"] for s in chru["series"]}
    assert "CT" in {c["code"] for c in chru["modality"]}

    read = clinician(two_sites).get(f"/fhir/ImagingStudy/{CHRU_STUDY}")
    assert read.status_code == 200
    assert read.json() == resources[CHRU_STUDY]

    trail = [e for e in two_sites.container.audit.search(actor="user:dr.radiologue")
             if e.channel == "fhir"]
    assert [e.action.value for e in trail][:2] == ["read", "search"]
    assert all(e.persons == (person,) for e in trail)
    logins = [e for e in two_sites.container.audit.search(actor="user:dr.radiologue")
              if e.channel == "console"]
    assert [e.action.value for e in logins] == ["authenticate"]

    metadata = httpx.get(f"{two_sites.http_base}/fhir/metadata").json()
    imaging = next(r for r in metadata["rest"][0]["resource"] if r["type"] == "ImagingStudy")
    assert {p["name"] for p in imaging["searchParam"]} == {"patient", "patient.identifier"}
    assert {i["code"] for i in imaging["interaction"]} == {"read", "search-type"}


def test_after_a_merge_the_retired_patient_s_studies_answer_under_the_survivor(
    service: RunningService, tmp_path: Path,
) -> None:
    register(service, "CHRU", "200001", ins=False, family="KLEIN")
    register(service, "CHRU", "200002", ins=False, family="KLEINE")
    sent = tmp_path / "sent"
    sent.mkdir()
    study = "1.2.250.1.999.54.9.7"
    store(service, "CHRU", [write(sent, UNCOMPRESSED_CT, relabel(
        UNCOMPRESSED_CT, patient_id="200002", study=study, series=f"{study}.1",
        sop=f"{study}.1.1"), "m")])
    survivor = person_of(service, "CHRU", "200001")
    assert studies(service, patient=f"Patient/{master_id_of(survivor)}")["total"] == 0
    c = service.container
    with c.uow_factory() as uow:
        c.identity.merge(uow, MergeRecords(RecordData(Identifier("CHRU", "200001")),
                                           Identifier("CHRU", "200002")),
                         Actor("HIS-CHRU", "CHRU"))
        uow.commit()
    after = studies(service, patient=f"Patient/{master_id_of(survivor)}")
    assert [e["resource"]["id"] for e in after["entry"]] == [study]
    # The retired identifier follows its survivor.
    retired = studies(service, **{"patient.identifier": f"urn:oid:{CHRU_OID}|200002"})
    assert retired["total"] == 1
    assert retired["entry"][0]["resource"]["subject"]["reference"] == \
        f"Patient/{master_id_of(survivor)}"


def test_bad_imaging_study_requests_get_an_operation_outcome(
    service: RunningService,
) -> None:
    base = "/fhir/ImagingStudy"
    http = clinician(service)
    cases = [
        ({}, 400),  # a search needs the patient
        ({"patient": "Patient/0000000001", "patient.identifier": f"urn:oid:{CHRU_OID}|1"}, 400),
        ({"patient": "Observation/12"}, 400),
        ({"patient.identifier": "urn:oid:1.2.3.4|1"}, 400),  # unknown domain
        ({"patient.identifier": "nosystem"}, 400),
        ({"modality": "CT", "patient": "Patient/0000000001"}, 400),  # unsupported parameter
        ({"patient": "Patient/0000000001", "_format": "xml"}, 406),
    ]
    for params, status in cases:
        response = http.get(base, params=params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    nobody = http.get(base, params={"patient": "Patient/0000009999"})
    assert nobody.status_code == 200 and nobody.json()["total"] == 0
    missing = http.get(f"{base}/1.2.3.999")
    assert missing.status_code == 404
    assert missing.json()["issue"][0]["code"] == "not-found"
    # without credentials, or with a role that reads no study
    anonymous = httpx.get(service.http_base + base, params={"patient": "Patient/0000000001"})
    assert anonymous.status_code == 401
    assert anonymous.json()["issue"][0]["code"] == "login"
    admin = service.person("root", "admin").get(base, params={"patient": "Patient/0000000001"})
    assert admin.status_code == 403
    assert admin.json()["issue"][0]["code"] == "forbidden"
