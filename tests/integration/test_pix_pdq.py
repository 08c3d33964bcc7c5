"""PIX Query (ITI-9) and Patient Demographics Query (ITI-21) over MLLP, against patients
registered through the identity feed, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mpi.model import Identifier, master_id_of
from mpi.queries import resolve_person
from tests.feeds import Peer, segments
from tests.hl7_messages import (
    MASTER_OID,
    control_id,
    cx,
    domain,
    ident,
    identifiers_of,
    ins_number,
    line_of,
    merge,
    pdq_query,
    pix_query,
    query_cancel,
    registration,
)
from tests.service import RunningService, start_service

JEAN_INS = ins_number(1)


@dataclass
class Index:
    """The running service, one open MLLP connection, and the master ids of the persons."""

    service: RunningService
    peer: Peer

    def send(self, text: str) -> dict[str, list[list[str]]]:
        return segments(self.peer.send(text))

    def master_id(self, code: str, value: str) -> str:
        container = self.service.container
        with container.uow_factory(read_only=True) as uow:
            person = resolve_person(uow, container.registry, Identifier(code, value))
        assert person is not None and person.id is not None
        return master_id_of(person.id)


def accepted(reply: dict[str, list[list[str]]]) -> None:
    assert reply["MSA"][0][1] == "AA", reply


@pytest.fixture
def index(database_url: str, tmp_path) -> Iterator[Index]:  # type: ignore[no-untyped-def]
    """Jean DUPONT known at CHRU, ICL and MRUN with one qualified INS; Marie DÛPONT at CCEG
    (same birth date); Paul DUPONTEL at CHRU; Anne DUPUIS at ICL; Luc MARTIN at CHRU."""
    service = start_service(database_url, tmp_path)
    peer = Peer(service.mllp_port)
    index = Index(service, peer)
    try:
        for facility, ipp in (("CHRU", "100001"), ("ICL", "200001"), ("MRUN", "300001")):
            accepted(index.send(registration(facility, ipp, "DUPONT", "Jean", ins=JEAN_INS)))
        accepted(index.send(registration("CCEG", "400001", "DÛPONT", "Marie", sex="F")))
        accepted(index.send(registration("CHRU", "100003", "DUPONTEL", "Paul", "19750505")))
        accepted(index.send(registration("ICL", "200004", "DUPUIS", "Anne", "19900303", "F")))
        accepted(index.send(registration("CHRU", "100005", "MARTIN", "Luc", "19600606")))
        yield index
    finally:
        peer.close()
        service.stop()


def error_of(reply: dict[str, list[list[str]]]) -> tuple[str, str]:
    """(ERR-2 location, ERR-3 code) of a reply's first ERR segment."""
    err = reply["ERR"][0]
    return err[2], err[3].split("^")[0]


def persons_in(reply: dict[str, list[list[str]]]) -> list[set[tuple[str, str, str]]]:
    """The PID-3 identifiers of each PID of an RSP^K22, in order."""
    return [identifiers_of(pid) for pid in reply.get("PID", [])]


# -- PIX Query (ITI-9) -----------------------------------------------------------------------


def test_pix_query_lists_every_other_identifier_of_the_person_but_not_the_queried_one(
    index: Index,
) -> None:
    query = pix_query(cx("100001", "CHRU"), tag="Q-JEAN")
    raw = index.peer.send(query)
    reply = segments(raw)

    assert reply["MSH"][0][8] == "RSP^K23^RSP_K23"
    assert reply["MSA"][0][1:3] == ["AA", line_of(query, "MSH").split("|")[9]]
    assert "ERR" not in reply
    assert reply["QAK"][0][1:3] == ["Q-JEAN", "OK"]
    assert line_of(raw, "QPD") == line_of(query, "QPD")
    assert len(reply["PID"]) == 1
    assert identifiers_of(reply["PID"][0]) == {
        ident("200001", "ICL"),
        ident("300001", "MRUN"),
        ident(JEAN_INS, "INS-NIR"),
        (index.master_id("CHRU", "100001"), "GCS-ESANTE-LORRAINE", MASTER_OID),
    }
    # IHE: no real name in a PIX answer, only the pseudo-name type in a second repetition.
    assert reply["PID"][0][5] == "~^^^^^^S"


def test_pix_query_by_the_ins_lists_the_local_identifiers_of_every_establishment(
    index: Index,
) -> None:
    reply = index.send(pix_query(cx(JEAN_INS, "INS-NIR")))

    assert reply["QAK"][0][2] == "OK"
    found = identifiers_of(reply["PID"][0])
    assert {ident("100001", "CHRU"), ident("200001", "ICL"), ident("300001", "MRUN")} <= found
    assert ident(JEAN_INS, "INS-NIR") not in found


def test_pix_query_by_the_master_identifier_resolves_the_person(index: Index) -> None:
    master = index.master_id("ICL", "200001")
    reply = index.send(pix_query(f"{master}^^^GCS-ESANTE-LORRAINE&{MASTER_OID}&ISO",
                                 [domain("CHRU")]))

    assert reply["QAK"][0][2] == "OK"
    assert identifiers_of(reply["PID"][0]) == {ident("100001", "CHRU")}


def test_pix_query_returns_only_the_domains_asked_in_qpd_4(index: Index) -> None:
    reply = index.send(pix_query(cx("100001", "CHRU"), [domain("ICL"), domain("MRUN")]))

    accepted(reply)
    assert reply["QAK"][0][2] == "OK"
    assert identifiers_of(reply["PID"][0]) == {ident("200001", "ICL"), ident("300001", "MRUN")}


def test_pix_query_for_domains_where_the_person_has_nothing_answers_not_found(
    index: Index,
) -> None:
    reply = index.send(pix_query(cx("100001", "CHRU"), [domain("CCEG")], tag="Q-NF"))

    accepted(reply)
    assert "ERR" not in reply
    assert reply["QAK"][0][1:3] == ["Q-NF", "NF"]
    assert "PID" not in reply


def test_pix_query_asking_only_the_queried_domain_answers_not_found(index: Index) -> None:
    reply = index.send(pix_query(cx("100003", "CHRU"), [domain("CHRU")]))

    accepted(reply)
    assert reply["QAK"][0][2] == "NF"
    assert "PID" not in reply


def test_pix_query_for_an_unknown_identifier_in_a_known_domain_is_an_error_204(
    index: Index,
) -> None:
    query = pix_query(cx("199999", "CHRU"), tag="Q-UNKNOWN")
    raw = index.peer.send(query)
    reply = segments(raw)

    assert reply["MSA"][0][1] == "AE"
    assert reply["QAK"][0][1:3] == ["Q-UNKNOWN", "AE"]
    assert error_of(reply) == ("QPD^1^3^1^1", "204")
    assert line_of(raw, "QPD") == line_of(query, "QPD")
    assert "PID" not in reply


def test_pix_query_in_an_unknown_domain_is_an_error_on_qpd_3_component_4(index: Index) -> None:
    reply = index.send(pix_query("100001^^^HOPITAL-X&1.2.250.1.999.99.9&ISO^PI"))

    assert reply["MSA"][0][1] == "AE"
    assert reply["QAK"][0][2] == "AE"
    assert error_of(reply) == ("QPD^1^3^1^4", "204")
    assert "PID" not in reply


def test_pix_query_with_an_unknown_domain_in_the_second_qpd_4_repetition_is_an_error(
    index: Index,
) -> None:
    reply = index.send(
        pix_query(cx("100001", "CHRU"), [domain("ICL"), "^^^HOPITAL-X&1.2.250.1.999.99.9&ISO"])
    )

    assert reply["MSA"][0][1] == "AE"
    assert reply["QAK"][0][2] == "AE"
    assert error_of(reply) == ("QPD^1^4^2", "204")
    assert "PID" not in reply


def test_pix_query_of_an_identifier_retired_by_a_merge_resolves_to_the_survivor(
    index: Index,
) -> None:
    accepted(index.send(registration("CHRU", "100006", "MARTIN", "Luc", "19600606")))
    accepted(index.send(merge("CHRU", "100005", "100006", "MARTIN", "Luc", "19600606")))

    reply = index.send(pix_query(cx("100006", "CHRU")))

    accepted(reply)
    assert reply["QAK"][0][2] == "OK"
    assert identifiers_of(reply["PID"][0]) == {
        ident("100005", "CHRU"),
        (index.master_id("CHRU", "100005"), "GCS-ESANTE-LORRAINE", MASTER_OID),
    }


def test_pix_query_never_lists_nor_resolves_an_ins_that_is_not_qualified(index: Index) -> None:
    unqualified = ins_number(2, sex=2)
    accepted(index.send(registration("CCEG", "400002", "BERNARD", "Lucie", "19910707", "F",
                                     ins=unqualified, reliability="PROV")))

    listed = index.send(pix_query(cx("400002", "CCEG")))
    by_ins = index.send(pix_query(cx(unqualified, "INS-NIR")))

    assert identifiers_of(listed["PID"][0]) == {
        (index.master_id("CCEG", "400002"), "GCS-ESANTE-LORRAINE", MASTER_OID)
    }
    assert by_ins["MSA"][0][1] == "AE"
    assert error_of(by_ins) == ("QPD^1^3^1^1", "204")


# -- Patient Demographics Query (ITI-21) ---------------------------------------------------


def test_pdq_by_family_name_and_birth_date_returns_one_pid_and_qri_per_person(
    index: Index,
) -> None:
    query = pdq_query([("PID.5.1.1", "DUPONT"), ("PID.7", "19800101")], tag="PDQ-DUPONT")
    raw = index.peer.send(query)
    reply = segments(raw)

    assert reply["MSH"][0][8] == "RSP^K22^RSP_K21"
    accepted(reply)
    assert reply["QAK"][0][1:3] == ["PDQ-DUPONT", "OK"]
    assert line_of(raw, "QPD") == line_of(query, "QPD")
    # Jean's three records are one person: one PID; Marie DÛPONT matches without her accent.
    found = persons_in(reply)
    assert len(found) == 2
    assert len(reply["QRI"]) == 2
    jean = next(ids for ids in found if ident("100001", "CHRU") in ids)
    assert {ident("200001", "ICL"), ident("300001", "MRUN"), ident(JEAN_INS, "INS-NIR")} <= jean
    assert any(ident("400001", "CCEG") in ids for ids in found)
    # Each PID is followed by its QRI.
    body = [line[:3] for line in raw.split("\r") if line[:3] in ("PID", "QRI")]
    assert body == ["PID", "QRI", "PID", "QRI"]
    assert "DSC" not in reply


def test_pdq_family_name_search_ignores_accents_and_case(index: Index) -> None:
    reply = index.send(pdq_query([("PID.5.1.1", "dûpônt"), ("PID.7", "19800101")]))

    accepted(reply)
    found = persons_in(reply)
    assert len(found) == 2
    assert any(ident("100001", "CHRU") in ids for ids in found)
    assert any(ident("400001", "CCEG") in ids for ids in found)


def test_pdq_family_name_with_a_trailing_star_is_a_prefix_search(index: Index) -> None:
    every_dup = persons_in(index.send(pdq_query([("PID.5.1.1", "DUP*")])))
    every_dupont = persons_in(index.send(pdq_query([("PID.5.1.1", "DUPONT*")])))
    exact = persons_in(index.send(pdq_query([("PID.5.1.1", "DUPONT")])))

    def local_ids(found: list[set[tuple[str, str, str]]]) -> set[str]:
        return {value for ids in found for value, namespace, _ in ids
                if namespace in ("CHRU", "ICL", "MRUN", "CCEG")}

    jean = {"100001", "200001", "300001"}
    assert len(every_dup) == 4
    assert local_ids(every_dup) == jean | {"400001", "100003", "200004"}
    assert len(every_dupont) == 3
    assert local_ids(every_dupont) == jean | {"400001", "100003"}
    assert len(exact) == 2
    assert local_ids(exact) == jean | {"400001"}


def test_pdq_by_identifier_and_its_domain_finds_the_person(index: Index) -> None:
    reply = index.send(pdq_query([("PID.3.1", "300001"), ("PID.3.4.1", "MRUN")]))

    accepted(reply)
    [found] = persons_in(reply)
    assert {ident("100001", "CHRU"), ident("200001", "ICL"), ident("300001", "MRUN")} <= found
    assert reply["PID"][0][5].startswith("DUPONT^Jean")
    assert reply["PID"][0][7] == "19800101"


def test_pdq_qpd_8_returns_only_persons_known_in_those_domains_with_those_identifiers(
    index: Index,
) -> None:
    reply = index.send(pdq_query([("PID.5.1.1", "DUP*")], [domain("ICL")]))

    accepted(reply)
    assert sorted(persons_in(reply), key=sorted) == sorted(
        [{ident("200001", "ICL")}, {ident("200004", "ICL")}], key=sorted
    )


def test_pdq_with_an_unknown_domain_in_qpd_8_is_an_error_204(index: Index) -> None:
    reply = index.send(
        pdq_query([("PID.5.1.1", "DUPONT")], ["^^^HOPITAL-X&1.2.250.1.999.99.9&ISO"])
    )

    assert reply["MSA"][0][1] == "AE"
    assert reply["QAK"][0][2] == "AE"
    assert error_of(reply) == ("QPD^1^8^1", "204")
    assert "PID" not in reply


def test_pdq_without_a_match_answers_not_found(index: Index) -> None:
    reply = index.send(pdq_query([("PID.5.1.1", "INCONNU"), ("PID.7", "19800101")], tag="NONE"))

    accepted(reply)
    assert "ERR" not in reply
    assert reply["QAK"][0][1:3] == ["NONE", "NF"]
    assert "PID" not in reply and "QRI" not in reply and "DSC" not in reply


def test_pdq_pages_by_rcp_2_quantity_and_continues_with_the_dsc_pointer(index: Index) -> None:
    for number in range(1, 6):
        accepted(index.send(registration("CHRU", f"10010{number}", "LEGRAND", f"Prenom{number}",
                                         f"1970010{number}")))
    criteria = [("PID.5.1.1", "LEGRAND")]

    first = index.send(pdq_query(criteria, tag="PAGED", quantity=2))
    accepted(first)
    assert len(first["PID"]) == 2
    assert first["QAK"][0][4:7] == ["5", "2", "3"]
    pointer = first["DSC"][0][1]
    assert pointer
    assert first["DSC"][0][2] == "I"

    second = index.send(pdq_query(criteria, tag="PAGED", quantity=2, pointer=pointer))
    accepted(second)
    assert len(second["PID"]) == 2
    assert second["QAK"][0][4:7] == ["5", "2", "1"]
    pointer = second["DSC"][0][1]

    third = index.send(pdq_query(criteria, tag="PAGED", quantity=2, pointer=pointer))
    accepted(third)
    assert len(third["PID"]) == 1
    assert "DSC" not in third

    pages = persons_in(first) + persons_in(second) + persons_in(third)
    ipps = [value for ids in pages for value, namespace, _ in ids if namespace == "CHRU"]
    assert sorted(ipps) == [f"10010{n}" for n in range(1, 6)]


def test_pdq_with_a_continuation_pointer_it_never_gave_is_an_error(index: Index) -> None:
    reply = index.send(pdq_query([("PID.5.1.1", "DUP*")], tag="PAGED", quantity=2,
                                 pointer="SOMETHING-ELSE"))

    assert reply["MSA"][0][1] == "AE"
    assert reply["QAK"][0][2] == "AE"
    assert "ERR" in reply
    assert "PID" not in reply


def test_cancel_of_a_continued_query_is_acknowledged(index: Index) -> None:
    first = index.send(pdq_query([("PID.5.1.1", "DUP*")], tag="TO-CANCEL", quantity=1))
    assert "DSC" in first
    control = control_id("QCN")

    reply = index.send(query_cancel("TO-CANCEL", control=control))

    assert reply["MSH"][0][8].split("^")[0] == "ACK"
    assert reply["MSA"][0][1:3] == ["AA", control]
    assert "ERR" not in reply
