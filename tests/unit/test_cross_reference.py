"""The PIX cross-reference (mpi.queries.cross_reference), the one rule behind PIX Query
(ITI-9) and PIXm (ITI-83)."""

from __future__ import annotations

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.errors import UnknownIdentifierError
from mpi.identity import (
    Actor,
    IdentityService,
    LinkRecords,
    MergeRecords,
    RecordData,
    RegisterRecord,
)
from mpi.model import Identifier
from mpi.queries import cross_reference
from tests.fakes import FixedClock, fake_uow_factory

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
CHRU, ICL = Actor("hl7:CHRU", "CHRU"), Actor("hl7:ICL", "ICL")


@pytest.fixture
def index():  # type: ignore[no-untyped-def]
    """CHRU|1 and ICL|9 linked (A24), CHRU|2 merged into CHRU|1 (A40)."""
    factory = fake_uow_factory()
    service = IdentityService(REGISTRY, FixedClock())
    with factory() as uow:
        for actor, identifier in ((CHRU, Identifier("CHRU", "1")), (CHRU, Identifier("CHRU", "2")),
                                  (ICL, Identifier("ICL", "9"))):
            service.register(uow, RegisterRecord(RecordData(identifier)), actor)
        service.link(uow, LinkRecords(RecordData(Identifier("CHRU", "1")),
                                      RecordData(Identifier("ICL", "9"))), CHRU)
        service.merge(uow, MergeRecords(RecordData(Identifier("CHRU", "1")),
                                        Identifier("CHRU", "2")), CHRU)
        uow.commit()
    return factory


def test_the_other_identifiers_of_the_person_without_the_queried_one(index) -> None:  # type: ignore[no-untyped-def]
    with index() as uow:
        found = cross_reference(uow, REGISTRY, Identifier("CHRU", "1"))
    assert Identifier("CHRU", "1") not in found.identifiers
    assert Identifier("ICL", "9") in found.identifiers
    assert {i.authority for i in found.identifiers} == {"ICL", "GCS"}


def test_only_the_domains_asked_for(index) -> None:  # type: ignore[no-untyped-def]
    with index() as uow:
        found = cross_reference(uow, REGISTRY, Identifier("ICL", "9"), {"CHRU"})
    assert found.identifiers == (Identifier("CHRU", "1"),)


def test_a_retired_identifier_answers_for_its_survivor(index) -> None:  # type: ignore[no-untyped-def]
    with index() as uow:
        retired = cross_reference(uow, REGISTRY, Identifier("CHRU", "2"), {"CHRU", "ICL"})
        survivor = cross_reference(uow, REGISTRY, Identifier("CHRU", "1"))
    assert retired.person.id == survivor.person.id
    assert set(retired.identifiers) == {Identifier("CHRU", "1"), Identifier("ICL", "9")}


def test_an_unknown_identifier_is_an_error(index) -> None:  # type: ignore[no-untyped-def]
    with index() as uow, pytest.raises(UnknownIdentifierError):
        cross_reference(uow, REGISTRY, Identifier("CHRU", "404"))
