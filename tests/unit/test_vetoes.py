"""The vetoes, declared once: the flags of the feed's evidence and of ``rank``'s."""

from __future__ import annotations

from datetime import date

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.identity import Actor, IdentityService, RecordData, RegisterRecord
from mpi.matching.comparisons import compare
from mpi.matching.engine import ProbabilisticMatcher
from mpi.matching.profile import profile_of
from mpi.matching.vetoes import VETOES, Candidacy, vetoes_holding, without_source
from mpi.model import Demographics, Identifier, SourceRecord
from tests.fakes import FixedClock, fake_uow_factory

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
NATIONAL = frozenset(a.code for a in REGISTRY.all if a.is_national)
TRAITS = dict(birth_family_name="ZIMMERMANN", given_names=("Hélène", "Marie"),
              birth_date=date(1975, 6, 14), sex="F", birthplace="54395", postcode="54000",
              phone="0612345678")
# The evidence keys stored review tasks are read by.
STORED_FLAGS = ("twins", "same_source", "other_birth_date", "partial_birth_date",
                "newborn_placeholder")


def record(authority: str, value: str, **traits: object) -> SourceRecord:
    return SourceRecord(identifier=Identifier(authority, value),
                        demographics=Demographics().apply(traits))


def test_the_vetoes_are_the_stored_flags_and_only_same_source_needs_a_source() -> None:
    assert tuple(veto.name for veto in VETOES) == STORED_FLAGS
    assert [veto.name for veto in VETOES if not veto.applies_without_source] == ["same_source"]
    assert all(veto.explanation for veto in VETOES)


def test_each_veto_holds_for_its_case_alone() -> None:
    def holding(a: SourceRecord, b: SourceRecord, same_source: bool = False) -> list[str]:
        first, second = profile_of(a), profile_of(b)
        flags = vetoes_holding(Candidacy(compare(first, second), first, second, same_source))
        assert tuple(flags) == STORED_FLAGS
        return [name for name, flag in flags.items() if flag]

    one = record("CHRU", "1", **TRAITS)
    assert holding(one, record("ICL", "2", **TRAITS)) == []
    assert holding(one, record("ICL", "2", **dict(TRAITS, given_names=("Claire",)))) == ["twins"]
    assert holding(one, record("CHRU", "2", **TRAITS), same_source=True) == ["same_source"]
    assert holding(one, record("ICL", "2", **dict(TRAITS, birth_date=date(2025, 9, 25)))) == [
        "other_birth_date"]
    # 01/01 stands for an unknown day: vetoed unless everything else corroborates it (the
    # same names, sex, phone and birthplace or postcode), so another phone keeps the veto
    assert holding(one, record("ICL", "2", **dict(TRAITS, birth_date=date(1975, 1, 1),
                                                    phone="0698765432"))) == [
        "partial_birth_date"]
    assert holding(one, record("ICL", "2", **dict(TRAITS, birth_date=date(1975, 1, 1)))) == []
    assert holding(one, record("ICL", "2", **dict(TRAITS, birth_family_name="BB1 ZIMMERMANN",
                                                    given_names=()))) == ["newborn_placeholder"]
    assert without_source({"twins": True, "same_source": True}) == {"twins": True}


def test_rank_flags_the_vetoes_that_apply_without_a_source_and_the_decision_all() -> None:
    factory = fake_uow_factory()
    matcher = ProbabilisticMatcher(NATIONAL)
    service = IdentityService(REGISTRY, FixedClock(), matcher)
    with factory() as uow:
        data = RecordData(Identifier("CHRU", "1"), TRAITS, None, ("PROV",))
        service.register(uow, RegisterRecord(data), Actor("hl7:CHRU", "CHRU"))
        uow.commit()
    with factory() as uow:
        # A record of the same establishment as the candidate's: same_source would hold for
        # the feed, but rank is for records without a source.
        [ranked] = matcher.rank(uow, record("CHRU", "2", **TRAITS))
        assert {name: ranked.evidence[name] for name in ("twins", "other_birth_date",
                                                          "partial_birth_date", "vetoed")} == {
            "twins": False, "other_birth_date": False, "partial_birth_date": False,
            "vetoed": False}
        assert "same_source" not in ranked.evidence
        [twin] = matcher.rank(uow, record("", "", **dict(TRAITS, given_names=("Claire",))))
        assert twin.evidence["twins"] is True and twin.evidence["vetoed"] is True
        decision = matcher.match(uow, record("CHRU", "2", **TRAITS))
        assert decision.person_id is None
        assert {name: decision.evidence[name] for name in STORED_FLAGS} == {
            "twins": False, "same_source": True, "other_birth_date": False,
            "partial_birth_date": False, "newborn_placeholder": False}
        assert all(set(STORED_FLAGS) <= set(candidate.evidence) for candidate in decision.review)


def test_looks_like_twins_only_for_the_same_family_and_birth_date_and_other_first_names(
) -> None:
    from mpi.matching.vetoes import looks_like_twins

    def twins(**changes: object) -> bool:
        a = profile_of(record("CHRU", "1", **TRAITS))
        b = profile_of(record("ICL", "2", **dict(TRAITS, **changes)))
        return looks_like_twins(compare(a, b), a, b)

    assert twins(given_names=("Claire",))
    assert twins(given_names=("Claire",), birth_family_name="ZIMERMANN")  # a typo apart
    assert twins(given_names=("Helen",), sex="M")  # a brother with a close name
    assert not twins()
    assert not twins(given_names=("Marie", "Hélène"))  # the same names reordered
    assert not twins(given_names=("Helena", "Marie"))  # a typo in her first name
    assert not twins(given_names=("Hélène", "Marie"), sex="M")  # a typo in the sex
    assert not twins(given_names=("Claire",), birth_date=date(1976, 6, 14))
    assert not twins(given_names=("Claire",), birth_family_name="DUPONT")
    assert not twins(given_names=())  # no given name to tell


def test_a_newborn_placeholder_is_read_in_the_first_part_of_a_name_or_the_first_given_name(
) -> None:
    from mpi.matching.vetoes import is_newborn_placeholder

    def placeholder(**changes: object) -> bool:
        return is_newborn_placeholder(profile_of(record("MRUN", "1", **dict(TRAITS, **changes))))

    assert placeholder(birth_family_name="BB2 ZIMMERMANN", given_names=())
    assert placeholder(given_names=("NOUVEAU-NE",))
    assert placeholder(given_names=("Jumelle 2",))
    assert placeholder(used_family_name="NOUVEAU-NE ZIMMERMANN")
    assert not placeholder()
    assert not placeholder(birth_family_name="ZIMMERMANN BB", given_names=("Léa",))
    assert not placeholder(given_names=("Léa", "NN"))
    assert not placeholder(given_names=("J",))  # an initial, not a placeholder


def test_a_typo_in_the_birth_date_is_not_a_partial_birth_date() -> None:
    first = profile_of(record("CHRU", "1", **TRAITS))
    for typo in (date(1975, 6, 15), date(1975, 6, 11), date(1975, 7, 14)):
        second = profile_of(record("ICL", "2", **dict(TRAITS, birth_date=typo)))
        flags = vetoes_holding(Candidacy(compare(first, second), first, second, False))
        assert flags["partial_birth_date"] is False, typo
