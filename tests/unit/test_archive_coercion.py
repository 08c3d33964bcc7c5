"""Which identifiers an object carries for each asker (mpi.archive.coercion_for), and what the
archive refuses before storing anything."""

from __future__ import annotations

from datetime import date

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.archive import (
    ArchiveService,
    InstanceHeader,
    PatientAsReceived,
    Sender,
    asker_authority,
    blob_key,
    coercion_for,
    is_valid_uid,
)
from mpi.errors import ForbiddenError, InvalidObjectError, UnknownAuthorityError
from mpi.model import Demographics, Identifier, Person, SourceRecord
from mpi.queries import PersonView

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
INS = Identifier("INS-NIR", "280015439512345")


def view(*identifiers: Identifier) -> PersonView:
    record = SourceRecord(Identifier("CHRU", "100"), Demographics(
        birth_family_name="DUPONT", used_family_name="MARTIN", given_names=("Léa", "Anne"),
        birth_date=date(1990, 5, 6), sex="U"))
    return PersonView(Person(id=7), tuple(sorted(identifiers)), record.demographics, (record,))


def test_the_asker_gets_its_own_identifier_and_every_other_one_cross_referenced() -> None:
    plan = coercion_for(REGISTRY, view(Identifier("CHRU", "100"), Identifier("MRUN", "M1"),
                                       Identifier("GCS", "0000000007"), INS),
                        REGISTRY.by_code("MRUN"))
    assert (plan.patient_id, plan.issuer.code) == (Identifier("MRUN", "M1"), "MRUN")
    assert [str(i) for i, _ in plan.others] == ["CHRU|100", "GCS|0000000007", str(INS)]
    assert [plan.identifier_type(a) for _, a in plan.others] == ["PI", "PI", "INS"]
    assert (plan.family_name, plan.given_names, plan.birth_date, plan.sex) == (
        "DUPONT", ("Léa", "Anne"), date(1990, 5, 6), "O")


def test_an_asker_without_an_identifier_of_the_person_gets_the_master_one() -> None:
    plan = coercion_for(REGISTRY, view(Identifier("CHRU", "100"), Identifier("GCS", "0000000007")),
                        REGISTRY.by_code("CCEG"))
    assert (plan.patient_id, plan.issuer.code) == (Identifier("GCS", "0000000007"), "GCS")
    assert [str(i) for i, _ in plan.others] == ["CHRU|100"]


def test_the_asker_may_be_named_by_code_namespace_or_oid_and_defaults_to_the_master() -> None:
    assert asker_authority(REGISTRY, None).code == "GCS"
    assert asker_authority(REGISTRY, "MRUN").code == "MRUN"
    assert asker_authority(REGISTRY, "urn:oid:1.2.250.1.999.54.2").code == "ICL"
    assert asker_authority(REGISTRY, "GCS-ESANTE-LORRAINE").code == "GCS"
    with pytest.raises(UnknownAuthorityError):
        asker_authority(REGISTRY, "ELSEWHERE")


def header(**changes: object) -> InstanceHeader:
    values: dict[str, object] = dict(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3.1.1",
        study_instance_uid="1.2.3", series_instance_uid="1.2.3.1",
        transfer_syntax_uid="1.2.840.10008.1.2.1", patient=PatientAsReceived("55"))
    values.update(changes)
    return InstanceHeader(**values)  # type: ignore[arg-type]


def test_uids_must_be_uids_so_that_blob_keys_stay_inside_the_store() -> None:
    service = ArchiveService(REGISTRY, None, None, None)  # type: ignore[arg-type]
    assert is_valid_uid("1.2.840.10008.1.2.4.90") and not is_valid_uid("1.02.3")
    assert not is_valid_uid("../../etc") and not is_valid_uid("1." + "2" * 70)
    with pytest.raises(InvalidObjectError):
        service.check(header(study_instance_uid="../x"))
    with pytest.raises(InvalidObjectError):
        service.check(header(patient=PatientAsReceived(" ")))
    assert blob_key(header(), "ab" * 32) == "1.2.3/1.2.3.1/1.2.3.1.1.abababababababab.dcm"


def test_the_domain_comes_from_the_issuer_first_then_from_the_sender() -> None:
    service = ArchiveService(REGISTRY, None, None, None)  # type: ignore[arg-type]
    chru = Sender("CHRU", "CHRU")
    assert service.domain_of(header(), chru).code == "CHRU"
    assert service.domain_of(header(patient=PatientAsReceived("5", issuer="MRUN")),
                             Sender("import", None)).code == "MRUN"
    with pytest.raises(ForbiddenError):  # an establishment's sender stays in its own domain
        service.domain_of(header(patient=PatientAsReceived("5", issuer="MRUN")), chru)
    assert service.domain_of(header(patient=PatientAsReceived(
        "5", issuer_oid="1.2.250.1.999.54.4")), Sender("x", None)).code == "CCEG"
    with pytest.raises(UnknownAuthorityError):
        service.domain_of(header(), Sender("import", None))
    with pytest.raises(UnknownAuthorityError):  # an INS is not a local patient identifier
        service.domain_of(header(patient=PatientAsReceived("5", issuer="ASIP-SANTE-INS-NIR")),
                          chru)
