"""Each coercion rule of an object on the way out (adapters.dicom.coerce.apply_coercion): the
patient attributes rewritten for the asker, and PS3.3 C.12.1's OriginalAttributesSequence:
one new COERCE item per change holding exactly the replaced values (IssuerOfPatientID with a
changed PatientID), the earlier items kept as they were, nothing added when nothing changes."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from adapters.dicom.coerce import apply_coercion, patient_attributes
from mpi.archive import PatientCoercion
from mpi.model import Identifier

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
INS = Identifier("INS-NIR", "280015439512345")


def plan(**changes: object) -> PatientCoercion:
    values: dict[str, object] = dict(
        patient_id=Identifier("ICL", "200042"), issuer=REGISTRY.by_code("ICL"),
        others=((Identifier("CHRU", "100"), REGISTRY.by_code("CHRU")),
                (INS, REGISTRY.by_code("INS-NIR"))),
        family_name="DUPONT", given_names=("LEA", "ANNE"), birth_date=date(1990, 5, 6),
        sex="F", person_id=7)
    values.update(changes)
    return PatientCoercion(**values)  # type: ignore[arg-type]


def as_received() -> Dataset:
    ds = Dataset()
    ds.PatientID = "100"
    ds.IssuerOfPatientID = "CHRU"
    ds.PatientName = "DUPONT^LEA"
    ds.PatientBirthDate = "19900506"
    ds.PatientSex = "F"
    ds.SOPInstanceUID = "1.2.3.4"
    return ds


def earlier_item() -> Dataset:
    previous = Dataset()
    previous.PatientName = "DUPOND^LEA"
    item = Dataset()
    item.AttributeModificationDateTime = "20250101120000.000000+0000"
    item.ModifyingSystem = "OTHER-PACS"
    item.SourceOfPreviousValues = "CHRU"
    item.ReasonForTheAttributeModification = "CORRECT"
    item.ModifiedAttributesSequence = Sequence([previous])
    return item


def test_the_patient_attributes_are_rewritten_for_the_asker() -> None:
    ds = as_received()
    assert apply_coercion(ds, plan(), "CHRU", WHEN) is True
    assert (ds.PatientID, ds.IssuerOfPatientID) == ("200042", "ICL")
    assert ds.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == REGISTRY.by_code(
        "ICL").oid
    others = [(item.PatientID, item.IssuerOfPatientID) for item in ds.OtherPatientIDsSequence]
    assert others == [("100", "CHRU"), (INS.value, REGISTRY.by_code("INS-NIR").namespace)]
    assert [item.IssuerOfPatientIDQualifiersSequence[0].IdentifierTypeCode
            for item in ds.OtherPatientIDsSequence] == ["PI", "INS"]
    assert str(ds.PatientName) == "DUPONT^LEA^ANNE"
    assert ds.SOPInstanceUID == "1.2.3.4"  # coercion never changes the instance's UID


def test_one_coerce_item_records_exactly_the_replaced_values() -> None:
    ds = as_received()
    apply_coercion(ds, plan(), "CHRU", WHEN)
    [item] = ds.OriginalAttributesSequence
    assert item.ReasonForTheAttributeModification == "COERCE"
    assert item.ModifyingSystem == "NANCY-MPI"
    assert item.SourceOfPreviousValues == "CHRU"
    assert item.AttributeModificationDateTime == "20261201093000.000000+0000"
    [previous] = item.ModifiedAttributesSequence
    assert previous.PatientID == "100" and previous.IssuerOfPatientID == "CHRU"
    assert str(previous.PatientName) == "DUPONT^LEA"
    assert "PatientBirthDate" not in previous and "PatientSex" not in previous  # unchanged
    assert ds.InstanceCoercionDateTime == "20261201093000.000000+0000"


def test_a_changed_patient_id_keeps_its_issuer_even_when_the_issuer_was_absent() -> None:
    ds = as_received()
    del ds.IssuerOfPatientID  # a PACS that knows only its own domain
    apply_coercion(ds, plan(), "CHRU", WHEN)
    [previous] = ds.OriginalAttributesSequence[0].ModifiedAttributesSequence
    assert previous.PatientID == "100"
    assert "IssuerOfPatientID" in previous and previous.IssuerOfPatientID == ""


def test_earlier_original_attributes_items_are_kept_as_they_were() -> None:
    ds = as_received()
    ds.OriginalAttributesSequence = Sequence([earlier_item()])
    apply_coercion(ds, plan(), "CHRU", WHEN)
    first, second = ds.OriginalAttributesSequence
    assert first == earlier_item()
    assert second.ReasonForTheAttributeModification == "COERCE"


def test_coercing_what_already_carries_the_asker_s_attributes_changes_nothing() -> None:
    ds = as_received()
    ds.OriginalAttributesSequence = Sequence([earlier_item()])
    apply_coercion(ds, plan(), "CHRU", WHEN)
    again = ds.copy()
    assert apply_coercion(again, plan(), "CHRU", datetime(2027, 1, 1, tzinfo=UTC)) is False
    assert again == ds
    assert len(again.OriginalAttributesSequence) == 2


def test_a_second_coercion_for_another_asker_adds_one_more_item() -> None:
    ds = as_received()
    apply_coercion(ds, plan(), "CHRU", WHEN)
    master = plan(patient_id=Identifier("GCS", "M0000007"), issuer=REGISTRY.master)
    assert apply_coercion(ds, master, "ICL", WHEN) is True
    first, second = ds.OriginalAttributesSequence
    assert first.ModifiedAttributesSequence[0].PatientID == "100"
    assert second.ModifiedAttributesSequence[0].PatientID == "200042"
    assert second.ModifiedAttributesSequence[0].IssuerOfPatientID == "ICL"


def test_a_name_that_needs_unicode_switches_the_character_set_and_keeps_the_old_one() -> None:
    ds = as_received()
    ds.SpecificCharacterSet = "ISO_IR 100"
    apply_coercion(ds, plan(family_name="LEFÈVRE"), "CHRU", WHEN)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    [previous] = ds.OriginalAttributesSequence[0].ModifiedAttributesSequence
    assert previous.SpecificCharacterSet == "ISO_IR 100"


def test_the_attributes_of_a_plan_are_those_written() -> None:
    wanted = patient_attributes(plan(given_names=(), family_name=None, birth_date=None,
                                     sex=None))
    assert str(wanted.PatientName) == "" and wanted.PatientBirthDate == ""
    assert wanted.PatientSex == ""


def test_only_the_replaced_values_are_kept_when_the_patient_id_stays() -> None:
    ds = as_received()
    ds.PatientID, ds.IssuerOfPatientID = "200042", "ICL"
    apply_coercion(ds, plan(), "ICL", WHEN)
    [previous] = ds.OriginalAttributesSequence[0].ModifiedAttributesSequence
    assert "PatientID" not in previous and "IssuerOfPatientID" not in previous
    assert str(previous.PatientName) == "DUPONT^LEA"


def test_a_patient_id_changed_in_the_same_domain_keeps_the_issuer_it_had() -> None:
    ds = as_received()
    ds.PatientID, ds.IssuerOfPatientID = "199999", "ICL"  # an identifier since changed (A47)
    apply_coercion(ds, plan(), "ICL", WHEN)
    [previous] = ds.OriginalAttributesSequence[0].ModifiedAttributesSequence
    assert (previous.PatientID, previous.IssuerOfPatientID) == ("199999", "ICL")
