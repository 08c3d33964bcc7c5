"""The archive against real peers: dcmtk's storescu, findscu, getscu and movescu, and an
HTTP client for DICOMweb, talking to the running service on loopback (SQLite and PostgreSQL).

One patient, Hélène DUPONT, is known at the CHRU (IPP 100234) and at the Maternité (IPP M5678),
linked by her qualified INS. Each site stores its studies under its own IPP; each must get
both studies back under its own IPP, the others cross-referenced.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE
from adapters.dicom.coerce import coerced_chunks
from mpi.archive import StoreOutcome, studies_of_person
from mpi.identity import Actor, MergeRecords, RecordData, RegisterRecord
from mpi.model import Identifier
from mpi.normalize import nir_key
from tests.dicom_objects import (
    JPEG2000_LOSSLESS,
    JPEGLS_LOSSLESS,
    PROPOSE,
    RLE,
    UNCOMPRESSED_CT,
    UNCOMPRESSED_MR,
    bundled,
    read,
    relabel,
    run,
)
from tests.service import RunningService, start_service

NIR_BODY = "2800154395123"
NIR = f"{NIR_BODY}{nir_key(NIR_BODY):02d}"
READER = "system/Patient.rs system/ImagingStudy.rs"
AS_STORED = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
CHRU_STUDY, MRUN_STUDY = "1.2.250.1.999.54.9.1", "1.2.250.1.999.54.9.2"
ORIGINAL_PIXELS = {name: read(bundled(name)).PixelData
                   for name in (UNCOMPRESSED_CT, UNCOMPRESSED_MR, JPEG2000_LOSSLESS, RLE,
                                JPEGLS_LOSSLESS)}


def register(service: RunningService, authority: str, value: str, *, ins: bool = True,
             family: str = "DUPONT") -> None:
    c = service.container
    with c.uow_factory() as uow:
        c.identity.register(uow, RegisterRecord(RecordData(
            Identifier(authority, value),
            {"birth_family_name": family, "given_names": ("Hélène", "Marie"),
             "birth_date": date(1980, 1, 2), "sex": "F"},
            ins=Identifier("INS-NIR", NIR) if ins else None,
            reliability=("VALI",) if ins else ())), Actor(f"HIS-{authority}", authority))
        uow.commit()


def store(service: RunningService, calling: str, files: list[Path]) -> None:
    """storescu, one association per transfer syntax, as a modality would send."""
    for path in files:
        option = PROPOSE[path.name.split("__")[0]]
        result = run("storescu", "-aet", calling, "-aec", "VNA", option, "127.0.0.1",
                     str(service.dicom_port), str(path))
        assert result.returncode == 0, result.stderr


def write(folder: Path, name: str, data: bytes, tag: str) -> Path:
    path = folder / f"{name}__{tag}"
    path.write_bytes(data)
    return path


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path / "data")
    yield running
    running.stop()


@pytest.fixture
def two_sites(service: RunningService, tmp_path: Path) -> RunningService:
    """Hélène's records at both sites (one person by INS) and a study stored by each."""
    register(service, "CHRU", "100234")
    register(service, "MRUN", "M5678")
    sent = tmp_path / "sent"
    sent.mkdir()
    chru = [
        write(sent, UNCOMPRESSED_CT, relabel(UNCOMPRESSED_CT, patient_id="100234",
              study=CHRU_STUDY, series=f"{CHRU_STUDY}.1", sop=f"{CHRU_STUDY}.1.1"), "a"),
        write(sent, JPEG2000_LOSSLESS, relabel(JPEG2000_LOSSLESS, patient_id="100234",
              study=CHRU_STUDY, series=f"{CHRU_STUDY}.2", sop=f"{CHRU_STUDY}.2.1"), "b"),
    ]
    mrun = [
        write(sent, UNCOMPRESSED_MR, relabel(UNCOMPRESSED_MR, patient_id="M5678",
              study=MRUN_STUDY, series=f"{MRUN_STUDY}.1", sop=f"{MRUN_STUDY}.1.1",
              family="DUPONT-MARTIN", given="H"), "c"),
        write(sent, RLE, relabel(RLE, patient_id="M5678", study=MRUN_STUDY,
              series=f"{MRUN_STUDY}.2", sop=f"{MRUN_STUDY}.2.1"), "d"),
        write(sent, JPEGLS_LOSSLESS, relabel(JPEGLS_LOSSLESS, patient_id="M5678",
              issuer="MRUN", study=MRUN_STUDY, series=f"{MRUN_STUDY}.2",
              sop=f"{MRUN_STUDY}.2.2"), "e"),
    ]
    store(service, "CHRU", chru)
    store(service, "MRUN", mrun)
    return service


def person_of(service: RunningService, authority: str, value: str) -> int:
    from mpi.queries import resolve_person

    with service.container.uow_factory(read_only=True) as uow:
        person = resolve_person(uow, service.container.registry, Identifier(authority, value))
        assert person is not None and person.id is not None
        return person.id


def qualifiers(oid: str, code: str) -> list[tuple[str, str, str]]:
    return [(oid, "ISO", code)]


def identity_of(ds: Dataset) -> dict[str, object]:
    """The coerced patient attributes, in plain values."""
    return {
        "PatientID": ds.PatientID,
        "IssuerOfPatientID": ds.IssuerOfPatientID,
        "qualifiers": [(q.UniversalEntityID, q.UniversalEntityIDType, q.IdentifierTypeCode)
                       for q in ds.IssuerOfPatientIDQualifiersSequence],
        "others": [(o.PatientID, o.IssuerOfPatientID, o.TypeOfPatientID,
                    o.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID,
                    o.IssuerOfPatientIDQualifiersSequence[0].IdentifierTypeCode)
                   for o in ds.OtherPatientIDsSequence],
        "PatientName": str(ds.PatientName),
        "PatientBirthDate": ds.PatientBirthDate,
        "PatientSex": ds.PatientSex,
    }


def expected_for_mrun(master: str) -> dict[str, object]:
    return {
        "PatientID": "M5678",
        "IssuerOfPatientID": "MRUN",
        "qualifiers": qualifiers("1.2.250.1.999.54.3", "PI"),
        "others": [
            ("100234", "CHRU", "TEXT", "1.2.250.1.999.54.1", "PI"),
            (master, "GCS-ESANTE-LORRAINE", "TEXT", "1.2.250.1.999.54.0", "PI"),
            (NIR, "ASIP-SANTE-INS-NIR", "TEXT", "1.2.250.1.213.1.4.8", "INS"),
        ],
        "PatientName": "DUPONT^Hélène^Marie",
        "PatientBirthDate": "19800102",
        "PatientSex": "F",
    }


def multipart_objects(response: httpx.Response) -> list[Dataset]:
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    objects = []
    for part in response.content.split(f"--{boundary}".encode())[1:-1]:
        _, _, body = part.partition(b"\r\n\r\n")
        objects.append(read(body[:-2]))
    return objects


def test_each_site_gets_every_study_of_the_patient_under_its_own_id(
        two_sites: RunningService, tmp_path: Path) -> None:
    service = two_sites
    port = str(service.dicom_port)
    master = f"{person_of(service, 'CHRU', '100234'):010d}"

    # C-FIND, study root, by the Maternité's IPP: both studies, each under M5678.
    found = tmp_path / "found"
    found.mkdir()
    result = run("findscu", "-aet", "MRUN", "-aec", "VNA", "-S", "-X", "-od", str(found),
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=M5678",
                 "-k", "IssuerOfPatientID", "-k", "PatientName", "-k", "StudyInstanceUID",
                 "-k", "ModalitiesInStudy", "-k", "NumberOfStudyRelatedInstances",
                 "127.0.0.1", port)
    assert result.returncode == 0, result.stderr
    answers = sorted((read(p) for p in found.iterdir()), key=lambda d: d.StudyInstanceUID)
    assert [(a.StudyInstanceUID, a.PatientID, a.IssuerOfPatientID, str(a.PatientName),
             a["ModalitiesInStudy"].VM and list(a["ModalitiesInStudy"].value
                                                if a["ModalitiesInStudy"].VM > 1
                                                else [a.ModalitiesInStudy]),
             a.NumberOfStudyRelatedInstances) for a in answers] == [
        (CHRU_STUDY, "M5678", "MRUN", "DUPONT^Hélène^Marie", ["CT", "MR"], 2),
        (MRUN_STUDY, "M5678", "MRUN", "DUPONT^Hélène^Marie", ["MR"], 3),
    ]

    # C-FIND, patient root, patient level, by the CHRU's IPP: one patient, three studies.
    patients = tmp_path / "patients"
    patients.mkdir()
    result = run("findscu", "-aet", "CHRU", "-aec", "VNA", "-P", "-X", "-od", str(patients),
                 "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=100234",
                 "-k", "NumberOfPatientRelatedStudies", "127.0.0.1", port)
    assert result.returncode == 0, result.stderr
    [patient] = [read(p) for p in patients.iterdir()]
    assert (patient.PatientID, patient.NumberOfPatientRelatedStudies) == ("100234", 2)

    # C-GET by the Maternité of the CHRU's study: coerced for the Maternité, pixels untouched.
    got = tmp_path / "got"
    got.mkdir()
    result = run("getscu", "-aet", "MRUN", "-aec", "VNA", "-S", "-od", str(got),
                 "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={CHRU_STUDY}",
                 "-k", f"SeriesInstanceUID={CHRU_STUDY}.1", "127.0.0.1", port)
    assert result.returncode == 0, result.stderr
    [ct] = [read(p) for p in got.iterdir()]
    assert ct.SOPInstanceUID == f"{CHRU_STUDY}.1.1"
    assert identity_of(ct) == expected_for_mrun(master)
    assert ct.PixelData == ORIGINAL_PIXELS[UNCOMPRESSED_CT]
    # A system of the Maternité is answered in the Maternité's domain.
    mrun_viewer = service.bearer(READER, "MRUN")
    j2k = multipart_objects(httpx.get(
        f"{service.http_base}/dicomweb/studies/{CHRU_STUDY}/series/{CHRU_STUDY}.2",
        headers={**mrun_viewer, **AS_STORED}))
    assert [(d.PatientID, d.file_meta.TransferSyntaxUID) for d in j2k] == [
        ("M5678", "1.2.840.10008.1.2.4.90")]
    assert identity_of(j2k[0]) == expected_for_mrun(master)
    assert j2k[0].PixelData == ORIGINAL_PIXELS[JPEG2000_LOSSLESS]
    # The same object by C-GET, to a peer that takes JPEG 2000: sent as stored, coerced.
    got_j2k = tmp_path / "got-j2k"
    got_j2k.mkdir()
    result = run("getscu", "-aet", "MRUN", "-aec", "VNA", "-S", "+xv", "-od", str(got_j2k),
                 "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={CHRU_STUDY}",
                 "-k", f"SeriesInstanceUID={CHRU_STUDY}.2", "127.0.0.1", port)
    assert result.returncode == 0, result.stderr
    [by_get] = [read(p) for p in got_j2k.iterdir()]
    assert by_get.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert identity_of(by_get) == expected_for_mrun(master)
    assert by_get.PixelData == ORIGINAL_PIXELS[JPEG2000_LOSSLESS]
    [coercion] = ct.OriginalAttributesSequence
    assert (coercion.ReasonForTheAttributeModification, coercion.ModifyingSystem,
            coercion.SourceOfPreviousValues) == ("COERCE", "NANCY-MPI", "CHRU")
    [previous] = coercion.ModifiedAttributesSequence
    # Only what was replaced: birth date and sex were already right; the accented golden
    # name needed UTF-8 in place of Latin-1.
    assert [e.keyword for e in previous] == ["SpecificCharacterSet", "PatientName",
                                             "PatientID", "IssuerOfPatientID"]
    assert (previous.SpecificCharacterSet, ct.SpecificCharacterSet) == ("ISO_IR 100",
                                                                         "ISO_IR 192")
    assert (previous.PatientID, previous.IssuerOfPatientID, str(previous.PatientName)) == (
        "100234", "", "DUPONT^HELENE")
    assert ct.InstanceCoercionDateTime == coercion.AttributeModificationDateTime

    # The same objects through WADO-RS for the CHRU, and coercion is idempotent.
    base = service.http_base
    chru_pacs = service.bearer(READER, "CHRU", name="chru-pacs")
    response = httpx.get(f"{base}/dicomweb/studies/{MRUN_STUDY}",
                         headers={**chru_pacs, **AS_STORED})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/related")
    wado = {d.SOPInstanceUID: d for d in multipart_objects(response)}
    assert sorted(wado) == [f"{MRUN_STUDY}.1.1", f"{MRUN_STUDY}.2.1", f"{MRUN_STUDY}.2.2"]
    for uid, name in ((f"{MRUN_STUDY}.1.1", UNCOMPRESSED_MR), (f"{MRUN_STUDY}.2.1", RLE),
                      (f"{MRUN_STUDY}.2.2", JPEGLS_LOSSLESS)):
        assert wado[uid].PatientID == "100234" and wado[uid].IssuerOfPatientID == "CHRU"
        assert wado[uid].PixelData == ORIGINAL_PIXELS[name]
    instance = httpx.get(f"{base}/dicomweb/studies/{MRUN_STUDY}/series/{MRUN_STUDY}.2/"
                         f"instances/{MRUN_STUDY}.2.2", headers={**chru_pacs, **AS_STORED})
    body = instance.content.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
    with service.container.uow_factory(read_only=True) as uow:
        from mpi.archive import coercion_for
        from mpi.queries import current_person, person_view

        view = person_view(uow, service.container.registry,
                           current_person(uow, int(master)))  # type: ignore[arg-type]
    plan = coercion_for(service.container.registry, view, service.container.registry.by_code(
        "CHRU"))
    import io

    again = b"".join(coerced_chunks(io.BytesIO(body), plan, "elsewhere", service.container.clock.now()))
    assert again == body  # nothing left to change: no new OriginalAttributesSequence item
    assert len(read(body).OriginalAttributesSequence) == 1

    # QIDO-RS by the CHRU's IPP, and metadata; a regional system (no establishment) is
    # answered in the master domain unless it names one.
    studies = httpx.get(f"{base}/dicomweb/studies", params={"PatientID": "100234"},
                        headers=chru_pacs).json()
    assert sorted((s["0020000D"]["Value"][0], s["00100020"]["Value"][0]) for s in studies) == [
        (CHRU_STUDY, "100234"), (MRUN_STUDY, "100234")]
    regional = service.bearer(READER)
    series = httpx.get(f"{base}/dicomweb/studies/{MRUN_STUDY}/series", headers=regional).json()
    assert sorted((s["0020000E"]["Value"][0], s["00100020"]["Value"][0],
                   s["00201209"]["Value"][0]) for s in series) == [
        (f"{MRUN_STUDY}.1", master, 1), (f"{MRUN_STUDY}.2", master, 2)]
    metadata = httpx.get(f"{base}/dicomweb/studies/{CHRU_STUDY}/metadata",
                         params={"domain": "1.2.250.1.999.54.3"}, headers=regional).json()
    assert {m["00100020"]["Value"][0] for m in metadata} == {"M5678"}
    assert all("7FE00010" not in m or "Value" not in m["7FE00010"] for m in metadata)
    assert httpx.get(f"{base}/dicomweb/studies", params={"domain": "NOWHERE"},
                     headers=regional).status_code == 400
    # an establishment's system is answered in its own domain, never another's
    assert httpx.get(f"{base}/dicomweb/studies", params={"domain": "MRUN"},
                     headers=chru_pacs).status_code == 400
    assert httpx.get(f"{base}/dicomweb/studies/1.2.3", headers=regional).status_code == 404
    assert httpx.get(f"{base}/dicomweb/studies", params={"limit": "x"},
                     headers=regional).status_code == 400
    # IHE RAD MIMA: a regional caller naming the issuer of its PatientID key
    mima = httpx.get(f"{base}/dicomweb/studies", headers=regional, params={
        "PatientID": "M5678", "IssuerOfPatientID": "MRUN"}).json()
    assert sorted((s["0020000D"]["Value"][0], s["00100020"]["Value"][0]) for s in mima) == [
        (CHRU_STUDY, "M5678"), (MRUN_STUDY, "M5678")]
    # without a token, or with a token that reads no study
    assert httpx.get(f"{base}/dicomweb/studies").status_code == 401
    assert httpx.get(f"{base}/dicomweb/studies/{CHRU_STUDY}/metadata").status_code == 401
    assert httpx.get(f"{base}/dicomweb/studies", headers=service.bearer(
        "system/Patient.rs")).status_code == 403

    # What FHIR ImagingStudy will answer: every study of the person, with series and counts.
    with service.container.uow_factory(read_only=True) as uow:
        summaries = studies_of_person(uow, int(master))
    assert sorted((s.study_instance_uid, s.modalities, s.instance_count, len(s.series),
                   str(s.received_as)) for s in summaries) == [
        (CHRU_STUDY, ("CT", "MR"), 2, 2, "CHRU|100234"),
        (MRUN_STUDY, ("MR",), 3, 2, "MRUN|M5678")]

    # Every read is in the access trail with the person it disclosed.
    trail = service.container.audit.search(person_id=int(master), limit=50)
    assert {(e.channel, e.action.value) for e in trail} >= {
        ("dicom", "search"), ("dicom", "retrieve"), ("dicomweb", "retrieve"),
        ("dicomweb", "search"), ("dicomweb", "read")}
    assert any(e.actor == service.actor("chru-pacs") for e in trail)


def test_a_merge_moves_studies_at_once_and_rewrites_no_file(service: RunningService,
                                                             tmp_path: Path) -> None:
    register(service, "CHRU", "1", ins=False)
    register(service, "CHRU", "2", ins=False, family="DUPOND")  # a duplicate, another person
    sent = write(tmp_path, UNCOMPRESSED_CT, relabel(UNCOMPRESSED_CT, patient_id="2",
                 study="1.2.3.4", series="1.2.3.4.1", sop="1.2.3.4.1.1"), "x")
    store(service, "CHRU", [sent])
    blobs = list((service.container.settings.resolved_archive_dir()).rglob("*.dcm"))
    before = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
              for p in blobs}
    survivor = person_of(service, "CHRU", "1")
    assert person_of(service, "CHRU", "2") != survivor

    c = service.container
    with c.uow_factory() as uow:  # ADT^A40: IPP 2 merged into IPP 1
        c.identity.merge(uow, MergeRecords(RecordData(Identifier("CHRU", "1")),
                                           Identifier("CHRU", "2")), Actor("HIS", "CHRU"))
        uow.commit()

    found = tmp_path / "found"
    found.mkdir()
    result = run("findscu", "-aet", "CHRU", "-aec", "VNA", "-S", "-X", "-od", str(found),
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=1",
                 "-k", "StudyInstanceUID", "-k", "OtherPatientIDsSequence",
                 "127.0.0.1", str(service.dicom_port))
    assert result.returncode == 0, result.stderr
    [answer] = [read(p) for p in found.iterdir()]
    assert (answer.StudyInstanceUID, answer.PatientID) == ("1.2.3.4", "1")
    assert [(o.PatientID, o.IssuerOfPatientID) for o in answer.OtherPatientIDsSequence] == [
        (f"{survivor:010d}", "GCS-ESANTE-LORRAINE")]
    with c.uow_factory(read_only=True) as uow:
        assert [s.study_instance_uid for s in studies_of_person(uow, survivor)] == ["1.2.3.4"]
    after = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
             for p in blobs}
    assert after == before


def test_bad_objects_are_refused_and_the_association_goes_on(service: RunningService,
                                                             tmp_path: Path) -> None:
    from pynetdicom import AE, _config
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    good = relabel(UNCOMPRESSED_CT, patient_id="77", study="1.2.5", series="1.2.5.1",
                   sop="1.2.5.1.1")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good[:-3000])
    no_study = read(relabel(UNCOMPRESSED_CT, patient_id="77", study="1.2.6",
                            series="1.2.6.1", sop="1.2.6.1.1"))
    del no_study.StudyInstanceUID
    foreign = read(relabel(UNCOMPRESSED_CT, patient_id="77", study="1.2.7", series="1.2.7.1",
                           sop="1.2.7.1.1", issuer="ELSEWHERE"))
    ae = AE(ae_title="CHRU")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    association = ae.associate("127.0.0.1", service.dicom_port, ae_title="VNA")
    assert association.is_established
    previous = _config.STORE_SEND_CHUNKED_DATASET
    try:
        _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are
        truncated_status = association.send_c_store(truncated).Status
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    # The CHRU may not create a patient in the Maternité's domain.
    other_site = read(relabel(UNCOMPRESSED_CT, patient_id="M-404", study="1.2.4",
                              series="1.2.4.1", sop="1.2.4.1.1", issuer="MRUN"))
    statuses = [truncated_status, association.send_c_store(no_study).Status,
                association.send_c_store(foreign).Status,
                association.send_c_store(other_site).Status,
                association.send_c_store(read(good)).Status]
    association.release()
    assert statuses == [0xC000, 0xA900, 0xC001, 0xC001, 0x0000]
    with service.container.uow_factory(read_only=True) as uow:
        assert uow.records.by_identifier(Identifier("MRUN", "M-404")) is None

    stranger = tmp_path / "good.dcm"
    stranger.write_bytes(relabel(UNCOMPRESSED_CT, patient_id="78", study="1.2.8",
                                 series="1.2.8.1", sop="1.2.8.1.1"))
    result = run("storescu", "-aet", "STRANGER", "-aec", "VNA", "127.0.0.1",
                 str(service.dicom_port), str(stranger))
    assert result.returncode != 0 or "0x0124" in result.stderr or "Not Auth" in result.stderr
    with service.container.uow_factory(read_only=True) as uow:
        stored = uow.archive.instances(study_uid=None, series_uid=None,
                                       sop_uids=["1.2.5.1.1", "1.2.6.1.1", "1.2.7.1.1",
                                                 "1.2.8.1.1"])
    assert [i.sop_instance_uid for i in stored] == ["1.2.5.1.1"]
    files = [p for p in service.container.settings.resolved_archive_dir().rglob("*")
             if p.is_file()]
    assert len(files) == 1 and not any(p.name.startswith(".incoming") for p in files)

    # STOW-RS: a mix answers 202 with the failures listed; nothing good answers 409.
    def multipart(*parts: tuple[str, bytes]) -> tuple[bytes, str]:
        body = b"".join(b"--XyZ\r\nContent-Type: " + kind.encode() + b"\r\n\r\n" + data +
                        b"\r\n" for kind, data in parts) + b"--XyZ--\r\n"
        return body, 'multipart/related; type="application/dicom"; boundary=XyZ'

    fresh = relabel(UNCOMPRESSED_CT, patient_id="79", study="1.2.9", series="1.2.9.1",
                    sop="1.2.9.1.1")
    body, kind = multipart(("application/dicom", fresh), ("application/dicom", b"not dicom"))
    stow = f"{service.http_base}/dicomweb/studies"
    # Nobody stores anonymously, nor for a domain merely named, nor as a regional system,
    # nor with a token that may only read.
    pacs = {"Content-Type": kind, **service.bearer(establishment="CHRU", name="pacs")}
    assert httpx.post(stow, content=body, headers={"Content-Type": kind}).status_code == 401
    assert httpx.post(stow, content=body, headers={
        "Content-Type": kind, "Authorization": "Bearer forged"}).status_code == 401
    assert httpx.post(stow, params={"domain": "MRUN"}, content=body,
                      headers=pacs).status_code == 400
    assert httpx.post(stow, content=body, headers={
        "Content-Type": kind, **service.bearer()}).status_code == 403
    assert httpx.post(stow, content=body, headers={
        "Content-Type": kind, **service.bearer(READER, "CHRU")}).status_code == 403
    response = httpx.post(f"{service.http_base}/dicomweb/studies", content=body,
                          headers=pacs)
    assert response.status_code == 202
    answer = response.json()
    assert answer["00081199"]["Value"][0]["00081155"]["Value"] == ["1.2.9.1.1"]
    assert answer["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    body, kind = multipart(("application/dicom", good[:-3000]))
    response = httpx.post(f"{service.http_base}/dicomweb/studies", content=body,
                          headers={**pacs, "Content-Type": kind})
    assert response.status_code == 409
    # A CHRU client may not create a patient in the Maternité's domain.
    foreign = relabel(UNCOMPRESSED_CT, patient_id="M-UNKNOWN", issuer="MRUN", study="1.2.10",
                      series="1.2.10.1", sop="1.2.10.1.1")
    body, kind = multipart(("application/dicom", foreign))
    response = httpx.post(f"{service.http_base}/dicomweb/studies", content=body,
                          headers={**pacs, "Content-Type": kind})
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC001]
    response = httpx.post(f"{service.http_base}/dicomweb/studies", content=b"x",
                          headers={**pacs, "Content-Type": "application/json"})
    assert response.status_code == 415
    response = httpx.post(f"{service.http_base}/dicomweb/studies", content=b"garbage",
                          headers={**pacs, "Content-Type": kind})
    assert response.status_code == 400


def test_the_same_instance_twice_is_acknowledged_and_new_content_keeps_the_old_version(
        service: RunningService) -> None:
    from adapters.dicom.header import parse_object
    from mpi.archive import Sender

    dicom = service.container.dicom
    first = relabel(UNCOMPRESSED_CT, patient_id="5", study="1.3.1", series="1.3.1.1",
                    sop="1.3.1.1.1")
    sender = Sender("CHRU", "CHRU")
    assert dicom.store(first, sender).outcome is StoreOutcome.STORED
    assert dicom.store(first, sender).outcome is StoreOutcome.DUPLICATE
    corrected = relabel(UNCOMPRESSED_CT, patient_id="5", study="1.3.1", series="1.3.1.1",
                        sop="1.3.1.1.1", StudyDescription="corrected")
    result = dicom.store(corrected, sender)
    assert (result.outcome, result.version) == (StoreOutcome.REPLACED, 2)
    with service.container.uow_factory(read_only=True) as uow:
        current = uow.archive.instance("1.3.1.1.1")
        history = uow.archive.instance_history("1.3.1.1.1")
    assert current is not None and current.sha256 == parse_object(corrected).sha256
    assert [(h.version, h.sha256) for h in history] == [(1, parse_object(first).sha256)]
    assert dicom.blobs.exists(history[0].blob_key) and dicom.blobs.exists(current.blob_key)
    with dicom.blobs.open(current.blob_key) as handle:
        assert handle.read() == corrected  # byte for byte as received


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_c_move_sends_coerced_objects_to_a_declared_destination(
        database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    authorities = tmp_path / "authorities.toml"
    authorities.write_text(DEFAULT_AUTHORITIES_FILE.read_text(encoding="utf-8") + (
        f'\n[[dicom_destination]]\nae_title = "VIEWER"\nhost = "127.0.0.1"\nport = {port}\n'),
        encoding="utf-8")
    service = start_service(database_url, tmp_path / "data", authorities=authorities)
    try:
        register(service, "CHRU", "100234")
        register(service, "MRUN", "M5678")
        service.container.dicom.store(
            relabel(UNCOMPRESSED_CT, patient_id="100234", study="1.4.1", series="1.4.1.1",
                    sop="1.4.1.1.1"), __import__("mpi.archive").archive.Sender("CHRU", "CHRU"))
        received = tmp_path / "moved"
        received.mkdir()
        result = run("movescu", "-aet", "MRUN", "-aec", "VNA", "-aem", "VIEWER", "--port",
                     str(port), "-S", "-od", str(received), "-k", "QueryRetrieveLevel=STUDY",
                     "-k", "StudyInstanceUID=1.4.1", "127.0.0.1", str(service.dicom_port))
        assert result.returncode == 0, result.stderr
        [moved] = [read(p) for p in received.iterdir()]
        assert (moved.SOPInstanceUID, moved.PatientID, moved.IssuerOfPatientID) == (
            "1.4.1.1.1", "M5678", "MRUN")
        assert moved.PixelData == ORIGINAL_PIXELS[UNCOMPRESSED_CT]
        refused = run("movescu", "-aet", "MRUN", "-aec", "VNA", "-aem", "UNKNOWN", "--port",
                      str(port), "-S", "-od", str(received), "-k", "QueryRetrieveLevel=STUDY",
                      "-k", "StudyInstanceUID=1.4.1", "127.0.0.1", str(service.dicom_port))
        assert "a801" in (refused.stdout + refused.stderr).lower() or refused.returncode != 0
        assert len(list(received.iterdir())) == 1
    finally:
        service.stop()


def test_associations_are_served_when_the_server_holds_more_than_1024_files(
        service: RunningService, tmp_path: Path) -> None:
    """pynetdicom checks its sockets with select(2), which cannot watch a descriptor above
    1023: with that many files and sockets open (a busy server), every association was
    aborted before it was negotiated. Ours are checked with poll(2)."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1400:
        if hard != resource.RLIM_INFINITY and hard < 1400:
            pytest.skip(f"this process may open only {hard} files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1400, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert max(held) >= 1024
        image = tmp_path / "ct.dcm"
        image.write_bytes(relabel(UNCOMPRESSED_CT, patient_id="FD-1024", study="1.2.1024",
                                  series="1.2.1024.1", sop="1.2.1024.1.1"))
        stored = run("storescu", "-aet", "CHRU", "-aec", "VNA", "127.0.0.1",
                     str(service.dicom_port), str(image))
        assert stored.returncode == 0, stored.stderr
        found = run("findscu", "-S", "-aet", "CHRU", "-aec", "VNA", "-k",
                    "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.1024",
                    "127.0.0.1", str(service.dicom_port))
        assert found.returncode == 0, found.stderr
        assert "1.2.1024" in found.stderr + found.stdout
    finally:
        for descriptor in held:
            os.close(descriptor)
