"""ER7 reading/writing and the PAM-FR PID mapping."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from adapters.hl7v2.er7 import ParseError, escape, parse, unescape
from adapters.hl7v2.pid import record_data_from_pid
from mpi.errors import InvalidValueError, MissingFieldError, UnknownAuthorityError
from mpi.model import Identifier

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
MSH = "MSH|^~\\&|DXCARE|CHRU|MPI|GCS|20240304075600||ADT^A28^ADT_A05|1|P|2.5"


def pid_of(pid: str):  # type: ignore[no-untyped-def]
    segment = parse(f"{MSH}\r{pid}").first("PID")
    assert segment is not None
    return segment


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_escape_then_unescape_gives_the_text_back(text: str) -> None:
    text = text.replace("\r", "").replace("\n", "")
    assert unescape(escape(text)) == text


def test_segment_terminators_cr_lf_and_crlf_are_all_accepted() -> None:
    for sep in ("\r", "\n", "\r\n"):
        message = parse(f"{MSH}{sep}PID|1||42^^^CHRU{sep}")
        assert [s.name for s in message.segments] == ["MSH", "PID"]


def test_msh_fields_are_numbered_as_the_standard_says() -> None:
    msh = parse(MSH).msh
    assert msh.raw(1) == "|"
    assert msh.raw(2) == "^~\\&"
    assert msh.value(9, 2) == "A28"
    assert msh.value(10) == "1"


def test_text_that_is_not_hl7_is_refused() -> None:
    with pytest.raises(ParseError):
        parse("hello")
    with pytest.raises(ParseError):
        parse("MSH|^^^^|x")


def test_pid_maps_identifiers_names_and_traits() -> None:
    fields = [""] * 33
    fields[0], fields[1] = "PID", "1"
    fields[3] = ("100002^^^CHRU&1.2.250.1.999.54.1&ISO^PI~285045439512322^^^ASIP-SANTE-INS-NIR&"
                 "1.2.250.1.213.1.4.8&ISO^INS")
    fields[5] = "LEFEVRE^Hélène^Hélène Marie^^^^L~GARNIER^Léna^^^^^D"
    fields[7], fields[8] = "19850412", "F"
    fields[11] = "14 rue Jeanne d'Arc^^Nancy^^54000^FRA^H~^^^^^^BDL^^54395"
    fields[13] = "0612457890"
    fields[32] = "VALI"
    pid = pid_of("|".join(fields))
    data = record_data_from_pid(pid, REGISTRY, "CHRU")
    assert data.identifier == Identifier("CHRU", "100002")
    assert data.ins == Identifier("INS-NIR", "285045439512322")
    assert data.reliability == ("VALI",)
    d = data.demographics
    assert d["birth_family_name"] == "LEFEVRE"
    assert d["given_names"] == ("Hélène", "Marie")
    assert d["used_family_name"] == "GARNIER"
    assert d["used_given_name"] == "Léna"
    assert d["birth_date"] == date(1985, 4, 12)
    assert (d["city"], d["postcode"], d["birthplace"]) == ("Nancy", "54000", "54395")


def test_empty_leaves_unchanged_and_double_quotes_delete() -> None:
    data = record_data_from_pid(pid_of('PID|1||1^^^CHRU||DUPONT^^^^^^L||""'), REGISTRY, "CHRU")
    assert data.demographics == {"birth_family_name": "DUPONT", "birth_date": None}
    assert data.reliability is None


def test_billing_nir_is_never_an_identity_key() -> None:
    pid = pid_of("PID|1||1^^^CHRU~185045439512399^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^NH")
    assert record_data_from_pid(pid, REGISTRY, "CHRU").ins is None


def test_errors_carry_their_hl7_location() -> None:
    with pytest.raises(MissingFieldError) as missing:
        record_data_from_pid(pid_of("PID|1||"), REGISTRY, "CHRU")
    assert missing.value.location == "PID^1^3"
    with pytest.raises(UnknownAuthorityError) as unknown:
        record_data_from_pid(pid_of("PID|1||1^^^CHRU~2^^^XYZ&1.2.3&ISO^PI"), REGISTRY, "CHRU")
    assert unknown.value.location == "PID^1^3^2^4"
    with pytest.raises(InvalidValueError) as bad_date:
        record_data_from_pid(pid_of("PID|1||1^^^CHRU||X||19851341"), REGISTRY, "CHRU")
    assert bad_date.value.location == "PID^1^7"
    with pytest.raises(InvalidValueError) as bad_sex:
        record_data_from_pid(pid_of("PID|1||1^^^CHRU||X||19850101|Z"), REGISTRY, "CHRU")
    assert bad_sex.value.location == "PID^1^8"


def _encounter(event: str, *segments: str) -> object:
    from adapters.hl7v2.adt import _activity

    text = "\r".join([MSH.replace("ADT^A28^ADT_A05", f"ADT^{event}^ADT_A01"), *segments])
    return _activity(parse(text), event)


def test_the_visit_of_an_encounter_is_its_discharge_else_admission_else_the_event_time() -> None:
    from datetime import UTC, datetime

    evn = "EVN||20240305080000||||20240301090000"
    pv1 = "PV1|1|I" + "|" * 42 + "20240210080000|20240220170000"
    assert _encounter("A03", evn, "PID|1||42^^^CHRU", pv1) == datetime(2024, 2, 20, 17, tzinfo=UTC)
    admitted = "PV1|1|I" + "|" * 42 + "20240210080000"
    assert _encounter("A01", evn, "PID|1||42^^^CHRU", admitted) == datetime(
        2024, 2, 10, 8, tzinfo=UTC)
    assert _encounter("A08", evn, "PID|1||42^^^CHRU", "PV1|1|O") == datetime(
        2024, 3, 1, 9, tzinfo=UTC)
    assert _encounter("A28", evn, "PID|1||42^^^CHRU", pv1) is None  # not an encounter


def test_a_death_indicator_n_clears_the_death_date_and_y_alone_changes_nothing() -> None:
    died = record_data_from_pid(pid_of("PID|1||42^^^CHRU" + "|" * 26 + "20240301|Y"),
                                REGISTRY, "CHRU")
    assert died.demographics["death_date"] == date(2024, 3, 1)
    alive = record_data_from_pid(pid_of("PID|1||42^^^CHRU" + "|" * 27 + "N"), REGISTRY, "CHRU")
    assert alive.demographics["death_date"] is None
    unknown = record_data_from_pid(pid_of("PID|1||42^^^CHRU" + "|" * 27 + "Y"), REGISTRY, "CHRU")
    assert "death_date" not in unknown.demographics
