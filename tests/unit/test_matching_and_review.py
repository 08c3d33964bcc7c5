"""The probabilistic matcher inside the identity use cases, and the review queue, on fakes."""

from __future__ import annotations

from datetime import date

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.errors import InvalidInputError
from mpi.identity import Actor, IdentityService, RecordData, RegisterRecord
from mpi.matching.engine import ProbabilisticMatcher
from mpi.model import Identifier, LinkMethod, ReviewDecision, ReviewStatus
from mpi.normalize import nir_key
from mpi.queries import resolve_person
from mpi.review import decide_review, show_review
from tests.fakes import FixedClock, fake_uow_factory

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
NATIONAL = frozenset(a.code for a in REGISTRY.all if a.is_national)
STAFF = Actor("user:vigilance", None)

TRAITS = dict(birth_family_name="ZIMMERMANN", given_names=("Hélène", "Marie"),
              birth_date=date(1975, 6, 14), sex="F", birthplace="54395", postcode="54000",
              phone="0612345678")


@pytest.fixture
def env():  # type: ignore[no-untyped-def]
    factory = fake_uow_factory()
    service = IdentityService(REGISTRY, FixedClock(), ProbabilisticMatcher(NATIONAL))

    class Env:
        store = factory.store  # type: ignore[attr-defined]

        def register(self, authority: str, value: str, ins: Identifier | None = None,
                     **traits: object) -> None:
            data = RecordData(Identifier(authority, value), traits, ins,
                              ("VALI",) if ins else ("PROV",))
            with factory() as uow:
                service.register(uow, RegisterRecord(data), Actor(f"hl7:{authority}", authority))
                uow.commit()

        def person(self, authority: str, value: str) -> int:
            with factory() as uow:
                person = resolve_person(uow, REGISTRY, Identifier(authority, value))
                assert person is not None and person.id is not None
                return person.id

        def decide(self, task_id: int, decision: ReviewDecision, reason: str = "checked") -> None:
            with factory() as uow:
                decide_review(uow, service, task_id, decision, STAFF, reason)
                uow.commit()

        def show(self, task_id: int):  # type: ignore[no-untyped-def]
            with factory() as uow:
                return show_review(uow, service, task_id)

    return Env()


def test_identical_traits_at_two_establishments_link_automatically(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    assert env.person("CHRU", "1") == env.person("ICL", "2")
    link = next(k for k in env.store.links.values() if k.method is LinkMethod.AUTO)
    assert link.evidence["fields"]["birth_date"]["level"] == "exact"


def test_a_common_name_alone_never_links(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", birth_family_name="MARTIN", given_names=("Jean",),
                 birth_date=date(1960, 1, 2), sex="M")
    env.register("ICL", "2", birth_family_name="MARTIN", given_names=("Paul",),
                 birth_date=date(1971, 5, 9), sex="M")
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    assert not env.store.reviews


def test_twins_go_to_review_not_to_one_person(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", **TRAITS)
    twin = dict(TRAITS, given_names=("Claire",))
    env.register("ICL", "2", **twin)
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    task = next(iter(env.store.reviews.values()))
    assert task.evidence["twins"] is True


def test_a_newborn_sharing_name_address_and_phone_with_her_mother_is_never_linked_to_her(
    env,  # type: ignore[no-untyped-def]
) -> None:
    mother = dict(TRAITS, given_names=("Mila",), birth_date=date(1998, 8, 13))
    env.register("MRUN", "1", **mother)
    env.register("CHRU", "2", **dict(mother, birth_date=date(2025, 9, 25)))
    assert env.person("MRUN", "1") != env.person("CHRU", "2")
    for task in env.store.reviews.values():
        assert task.evidence["other_birth_date"] is True


def test_a_sister_carrying_her_twin_s_first_name_as_a_second_one_is_never_linked_to_her(
    env,  # type: ignore[no-untyped-def]
) -> None:
    env.register("CHRU", "1", **dict(TRAITS, given_names=("Yasmine", "Louise", "Sandrine")))
    env.register("CCEG", "2", **dict(TRAITS, given_names=("Louise",)))
    assert env.person("CHRU", "1") != env.person("CCEG", "2")
    assert all(task.evidence["twins"] for task in env.store.reviews.values())


def test_a_birth_date_known_only_to_the_year_links_automatically_only_when_all_else_agrees(
    env,  # type: ignore[no-untyped-def]
) -> None:
    env.register("CHRU", "1", **dict(TRAITS, birth_date=date(1975, 6, 14)))
    env.register("CCEG", "2", **dict(TRAITS, birth_date=date(1975, 1, 1), phone="0698765432"))
    assert env.person("CHRU", "1") != env.person("CCEG", "2")
    task = next(iter(env.store.reviews.values()))
    assert task.evidence["partial_birth_date"] is True
    # Names, sex, phone and birthplace all the same: the 01/01 of an unknown day.
    env.register("ICL", "3", **dict(TRAITS, birth_date=date(1975, 1, 1)))
    assert env.person("ICL", "3") == env.person("CHRU", "1")


def test_the_same_first_given_name_with_other_given_names_that_disagree_is_close_only() -> None:
    from mpi.matching.comparisons import compare
    from mpi.matching.profile import MatchProfile

    def person(*given: str) -> MatchProfile:
        return MatchProfile("ADAM", ("ADAM",), "", (), given, date(1991, 9, 6), "M", None,
                            None, None, None, False)

    assert compare(person("LUCAS", "MICKAEL"), person("LUCAS", "LOUIS"))["given_name"] == "close"
    assert compare(person("LUCAS", "MICKAEL"), person("LUCAS"))["given_name"] == "exact"
    assert compare(person("LUCAS", "LOUIS", "MICKAEL"),
                   person("LUCAS", "MICKAEL"))["given_name"] == "exact"


def test_a_typo_in_the_name_goes_to_review_and_a_link_decision_is_sticky(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", **dict(TRAITS, phone=None, postcode=None))
    env.register("ICL", "2", **dict(TRAITS, birth_family_name="ZIMERMAN",
                                    birth_date=date(1975, 1, 1), phone=None, postcode=None))
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    task = next(iter(env.store.reviews.values()))
    view = env.show(task.id)
    assert view.record.identifier == Identifier("ICL", "2")
    assert view.candidate is not None
    env.decide(task.id, ReviewDecision.LINK)
    assert env.person("CHRU", "1") == env.person("ICL", "2")
    decided = env.store.reviews[task.id]
    assert (decided.status, decided.decided_by, decided.reason) == (
        ReviewStatus.DECIDED, "user:vigilance", "checked")
    with pytest.raises(InvalidInputError):
        env.decide(task.id, ReviewDecision.KEEP_APART)


def test_keep_apart_records_a_separation(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, given_names=("Claire",)))
    task = next(iter(env.store.reviews.values()))
    env.decide(task.id, ReviewDecision.KEEP_APART, "twins confirmed at the desk")
    assert env.store.separations


def test_a_decision_needs_a_reason(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, given_names=("Claire",)))
    task = next(iter(env.store.reviews.values()))
    with pytest.raises(InvalidInputError):
        env.decide(task.id, ReviewDecision.LINK, "  ")


def test_two_records_of_one_establishment_are_never_linked_automatically(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", **TRAITS)
    env.register("CHRU", "2", **TRAITS)
    assert env.person("CHRU", "1") != env.person("CHRU", "2")
    task = next(iter(env.store.reviews.values()))
    assert task.evidence["same_source"] is True


def test_a_record_never_links_to_a_person_with_another_qualified_ins(env) -> None:  # type: ignore[no-untyped-def]
    body_a, body_b = "2750654395001", "2750654395002"
    env.register("CHRU", "1", ins=Identifier("INS-NIR", f"{body_a}{nir_key(body_a):02d}"),
                 **TRAITS)
    env.register("ICL", "2", ins=Identifier("INS-NIR", f"{body_b}{nir_key(body_b):02d}"),
                 **TRAITS)
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    assert not env.store.reviews
