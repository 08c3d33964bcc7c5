"""The graded candidates of ``$match``, on fakes: the grade comes from the core."""

from __future__ import annotations

from datetime import date

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.identity import Actor, IdentityService, RecordData, RegisterRecord
from mpi.matching.candidates import GradedCandidate, MatchGrade, grade_of, graded_candidates
from mpi.matching.engine import ProbabilisticMatcher, RankedPerson
from mpi.matching.model import DEFAULT_MODEL
from mpi.model import Demographics, Identifier, SourceRecord
from mpi.normalize import nir_key
from mpi.queries import resolve_person
from tests.fakes import FixedClock, fake_uow_factory

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
NATIONAL = frozenset(a.code for a in REGISTRY.all if a.is_national)
MATCHER = ProbabilisticMatcher(NATIONAL)
BODY = "2750654395001"
INS = Identifier("INS-NIR", f"{BODY}{nir_key(BODY):02d}")
TRAITS = dict(birth_family_name="ZIMMERMANN", given_names=("Hélène",),
              birth_date=date(1975, 6, 14), sex="F", birthplace="54395", postcode="54000",
              phone="0612345678")


@pytest.fixture
def factory():  # type: ignore[no-untyped-def]
    factory = fake_uow_factory()
    service = IdentityService(REGISTRY, FixedClock(), MATCHER)

    def register(authority: str, value: str, ins: Identifier | None = None,
                 **traits: object) -> None:
        data = RecordData(Identifier(authority, value), traits, ins,
                          ("VALI",) if ins else ("PROV",))
        with factory() as uow:
            service.register(uow, RegisterRecord(data), Actor(f"hl7:{authority}", authority))
            uow.commit()

    factory.register = register  # type: ignore[attr-defined]
    return factory


def query(ins: Identifier | None = None, **traits: object) -> SourceRecord:
    """A record as $match builds it from a Patient: no source, not stored."""
    return SourceRecord(identifier=Identifier("", ""), demographics=Demographics().apply(traits),
                        ins=ins, reliability=("VALI",) if ins else ())


def grades(found: list[GradedCandidate]) -> list[str]:
    return [candidate.grade.value for candidate in found]


def test_the_grade_follows_the_thresholds_and_a_veto_keeps_a_candidate_from_certain() -> None:
    def ranked(probability: float, vetoed: bool = False) -> RankedPerson:
        return RankedPerson(1, 1, probability, 0.0, {"vetoed": vetoed}, vetoed)

    model = DEFAULT_MODEL
    assert grade_of(model, ranked(model.auto_link_probability)) is MatchGrade.CERTAIN
    assert grade_of(model, ranked(0.99999, vetoed=True)) is MatchGrade.PROBABLE
    assert grade_of(model, ranked(model.review_probability)) is MatchGrade.PROBABLE
    assert grade_of(model, ranked(0.49)) is MatchGrade.POSSIBLE


def test_the_holder_of_the_qualified_ins_is_certain_first_and_not_repeated(factory) -> None:  # type: ignore[no-untyped-def]
    factory.register("CHRU", "1", ins=INS, **TRAITS)
    with factory() as uow:
        holder = resolve_person(uow, REGISTRY, INS)
        assert holder is not None
        found = graded_candidates(uow, REGISTRY, MATCHER, query(INS, **TRAITS), 5, 0.05)
        assert found == [GradedCandidate(holder.id, 1.0, MatchGrade.CERTAIN, {"ins": True})]
        assert graded_candidates(uow, REGISTRY, MATCHER, query(INS, birth_family_name="AUTRE"),
                                 5, 0.05, only_certain=True)[0].evidence == {"ins": True}


def test_several_certain_candidates_are_no_certain_match(factory) -> None:  # type: ignore[no-untyped-def]
    factory.register("CHRU", "1", **TRAITS)
    factory.register("CHRU", "2", **TRAITS)  # same source: two persons
    factory.register("CHRU", "3", **dict(TRAITS, given_names=("Claire",)))  # a twin
    with factory() as uow:
        found = graded_candidates(uow, REGISTRY, MATCHER, query(**TRAITS), 5, 0.05)
        assert grades(found)[:2] == ["certain", "certain"]
        assert "certain" not in grades(found)[2:]
        assert found[2].evidence["twins"] is True
        assert graded_candidates(uow, REGISTRY, MATCHER, query(**TRAITS), 5, 0.05,
                                 only_certain=True) == []
        assert len(graded_candidates(uow, REGISTRY, MATCHER, query(**TRAITS), 1, 0.05)) == 1
        partial = graded_candidates(uow, REGISTRY, MATCHER, query(**dict(
            TRAITS, birth_date=date(1975, 1, 1), phone="0698765432")), 5, 0.05)
        assert partial and "certain" not in grades(partial)


def test_only_certain_is_judged_before_the_count_cuts_the_list(factory) -> None:  # type: ignore[no-untyped-def]
    other = dict(TRAITS, birth_family_name="KOWALSKI", birthplace="75056", postcode="75001",
                 phone="0700000000")
    factory.register("CHRU", "1", ins=INS, **TRAITS)
    factory.register("ICL", "2", **other)
    factory.register("CCEG", "3", **other)
    with factory() as uow:
        kowalski = query(INS, **other)
        everyone = graded_candidates(uow, REGISTRY, MATCHER, kowalski, 5, 0.05)
        assert grades(everyone)[0] == "certain" and "certain" in grades(everyone)[1:]
        assert graded_candidates(uow, REGISTRY, MATCHER, kowalski, 1, 0.05,
                                 only_certain=True) == []
