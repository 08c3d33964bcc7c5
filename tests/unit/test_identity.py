"""The identity use cases on in-memory fakes: the rules of linking, merging and separating.

The service has the real probabilistic matcher: a rule that forbids a link is tested on traits
the matcher would link, so that the test fails when the rule is lost."""

from __future__ import annotations

from datetime import date

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.authorities import AuthorityRegistry
from mpi.errors import (
    DuplicateIdentifierError,
    ForbiddenError,
    IdentityConflictError,
    InvalidValueError,
    UnknownAuthorityError,
    UnknownIdentifierError,
)
from mpi.events import PersonIdentifiersChanged, PersonsMerged, RecordDeleted
from mpi.handlers import EventDispatcher, PixNotificationPolicy
from mpi.identity import (
    Actor,
    ChangeIdentifier,
    DeleteRecord,
    IdentityService,
    LinkRecords,
    MergeRecords,
    RecordData,
    RegisterRecord,
    UnlinkRecords,
)
from mpi.matching.engine import ProbabilisticMatcher
from mpi.model import Consumer, Identifier, LinkMethod, RecordStatus
from mpi.normalize import nir_key
from mpi.queries import person_view, resolve_person
from tests.fakes import FixedClock, fake_uow_factory


def nir(body: str) -> str:
    return f"{body}{nir_key(body):02d}"


INS_A = Identifier("INS-NIR", nir("1800354395012"))
INS_B = Identifier("INS-NIR", nir("2800354395013"))
CHRU = Actor("hl7:CHRU", "CHRU")
ICL = Actor("hl7:ICL", "ICL")
MRUN = Actor("hl7:MRUN", "MRUN")
# Traits the matcher links alone when they agree: what a rule must overrule.
TRAITS = dict(birth_family_name="ZIMMERMANN", given_names=("Hélène", "Marie"),
              birth_date=date(1975, 6, 14), sex="F", birthplace="54395", postcode="54000",
              phone="0612345678")


@pytest.fixture
def registry() -> AuthorityRegistry:
    base = load_authorities(DEFAULT_AUTHORITIES_FILE)
    consumer = Consumer("PACS", "127.0.0.1", 9, ("CHRU", "INS-NIR"))
    return AuthorityRegistry(base.all, [consumer])


@pytest.fixture
def env(registry):  # type: ignore[no-untyped-def]
    factory = fake_uow_factory()
    clock = FixedClock()
    national = frozenset(a.code for a in registry.all if a.is_national)
    service = IdentityService(registry, clock, ProbabilisticMatcher(national))
    # As the service does after each change: the outbox job hands the events to the handlers.
    dispatcher = EventDispatcher(factory, clock, {
        PersonIdentifiersChanged: [PixNotificationPolicy(registry, clock)]})

    class Env:
        def run(self, method: str, command: object, actor: Actor = CHRU) -> object:
            with factory() as uow:
                result = getattr(service, method)(uow, command, actor)
                uow.commit()
            dispatcher.dispatch_due()
            return result

        def register(self, authority: str, value: str, ins: Identifier | None = None,
                     reliability: tuple[str, ...] | None = None, **demographics: object) -> object:
            actor = Actor(f"hl7:{authority}", authority)
            data = RecordData(Identifier(authority, value), demographics, ins,
                              reliability if reliability is not None else (("VALI",) if ins else ()))
            return self.run("register", RegisterRecord(data), actor)

        def person_of(self, authority: str, value: str) -> int | None:
            with factory() as uow:
                person = resolve_person(uow, registry, Identifier(authority, value))
                return None if person is None else person.id

        def identifiers(self, authority: str, value: str) -> set[str]:
            with factory() as uow:
                person = resolve_person(uow, registry, Identifier(authority, value))
                assert person is not None
                view = person_view(uow, registry, person)
                return {str(i) for i in view.identifiers if i.authority != "GCS"}

        @property
        def store(self):  # type: ignore[no-untyped-def]
            return factory.store  # type: ignore[attr-defined]

    return Env()


def test_equal_qualified_ins_designate_one_person(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A, birth_family_name="DUPONT")
    env.register("ICL", "2", INS_A, birth_family_name="DUPONT")
    env.register("MRUN", "3", INS_A, birth_family_name="DUPONT")
    assert env.person_of("CHRU", "1") == env.person_of("ICL", "2") == env.person_of("MRUN", "3")
    assert env.identifiers("ICL", "2") == {"CHRU|1", "ICL|2", "MRUN|3", str(INS_A)}
    links = [k for k in env.store.links.values() if k.method is LinkMethod.INS]
    assert len(links) == 2 and all(k.evidence == {"ins": "equal"} for k in links)


def test_the_same_traits_link_automatically(env) -> None:  # type: ignore[no-untyped-def]
    # What the rules below overrule: without them, these records are one person.
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    assert env.person_of("CHRU", "1") == env.person_of("ICL", "2")


def test_different_qualified_ins_never_one_person_even_with_same_traits(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A, **TRAITS)
    env.register("ICL", "2", INS_B, **TRAITS)
    assert env.person_of("CHRU", "1") != env.person_of("ICL", "2")
    env.register("MRUN", "3", **TRAITS)  # a third record like both joins neither alone
    assert env.person_of("MRUN", "3") not in (env.person_of("CHRU", "1"),
                                              env.person_of("ICL", "2"))


def test_an_ins_without_qualified_identity_is_not_kept(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A)
    env.register("ICL", "2", INS_A, reliability=("PROV",))
    assert env.person_of("CHRU", "1") != env.person_of("ICL", "2")
    assert env.identifiers("ICL", "2") == {"ICL|2"}


def test_a_bad_ins_key_is_refused(env) -> None:  # type: ignore[no-untyped-def]
    bad = Identifier("INS-NIR", INS_A.value[:13] + "00")
    with pytest.raises(InvalidValueError):
        env.register("CHRU", "1", bad)


def test_an_update_that_qualifies_the_ins_joins_the_holder(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A)
    env.register("ICL", "2", birth_family_name="DUPONT")
    assert env.person_of("CHRU", "1") != env.person_of("ICL", "2")
    env.register("ICL", "2", INS_A)
    assert env.person_of("CHRU", "1") == env.person_of("ICL", "2")
    assert any(isinstance(e, PersonsMerged) for e in env.store.events)


def test_empty_leaves_unchanged_and_none_deletes(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", birth_family_name="DUPONT", birth_date=date(1970, 1, 2), city="NANCY")
    env.register("CHRU", "1", birth_date=None)
    record = next(iter(env.store.records.values()))
    assert record.demographics.birth_date is None
    assert record.demographics.city == "NANCY"
    assert record.version == 2


def test_a_sender_writes_only_its_own_domain(env) -> None:  # type: ignore[no-untyped-def]
    data = RecordData(Identifier("CHRU", "1"))
    with pytest.raises(ForbiddenError):
        env.run("register", RegisterRecord(data), ICL)
    with pytest.raises(UnknownAuthorityError):
        env.run("register", RegisterRecord(RecordData(Identifier("XYZ", "1"))), CHRU)
    assert env.store.records == {}


def test_merge_folds_the_retired_record_and_its_person(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "old", INS_A)
    env.register("ICL", "9", INS_A)
    env.register("CHRU", "new", birth_family_name="DUPONT")
    env.run("merge", MergeRecords(RecordData(Identifier("CHRU", "new")), Identifier("CHRU", "old")))
    assert env.person_of("CHRU", "old") == env.person_of("CHRU", "new") == env.person_of("ICL", "9")
    assert env.identifiers("CHRU", "new") == {"CHRU|new", "ICL|9", str(INS_A)}
    old = next(r for r in env.store.records.values() if r.identifier.value == "old")
    assert old.status is RecordStatus.RETIRED


def test_merge_of_an_unknown_record_changes_nothing(env) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownIdentifierError) as caught:
        env.run("merge", MergeRecords(RecordData(Identifier("CHRU", "new")), Identifier("CHRU", "x")))
    assert caught.value.location == "MRG^1^1"
    assert env.store.records == {}


def test_change_identifier_keeps_the_person(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A, birth_family_name="DUPONT")
    before = env.person_of("CHRU", "1")
    env.run("change_identifier", ChangeIdentifier(RecordData(Identifier("CHRU", "2")), Identifier("CHRU", "1")))
    assert env.person_of("CHRU", "2") == before == env.person_of("CHRU", "1")
    assert env.identifiers("CHRU", "2") == {"CHRU|2", str(INS_A)}
    renamed = next(r for r in env.store.records.values() if r.identifier.value == "2")
    assert renamed.demographics.birth_family_name == "DUPONT"


def test_change_identifier_to_an_existing_one_is_a_duplicate(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1")
    env.register("CHRU", "2")
    with pytest.raises(DuplicateIdentifierError):
        env.run("change_identifier", ChangeIdentifier(RecordData(Identifier("CHRU", "2")), Identifier("CHRU", "1")))


def test_link_across_domains_writes_nothing_in_the_other_domain(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", birth_family_name="DUPONT")
    env.register("ICL", "2", birth_family_name="DUPOND")
    env.run("link", LinkRecords(RecordData(Identifier("CHRU", "1")),
                                RecordData(Identifier("ICL", "2"), {"birth_family_name": "X"})))
    assert env.person_of("CHRU", "1") == env.person_of("ICL", "2")
    icl = next(r for r in env.store.records.values() if r.identifier.authority == "ICL")
    assert icl.demographics.birth_family_name == "DUPOND"


def test_link_of_different_qualified_ins_is_a_conflict(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A)
    env.register("ICL", "2", INS_B)
    with pytest.raises(IdentityConflictError):
        env.run("link", LinkRecords(RecordData(Identifier("CHRU", "1")), RecordData(Identifier("ICL", "2"))))


def test_unlink_separates_for_good(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    assert env.person_of("CHRU", "1") == env.person_of("ICL", "2")  # linked automatically
    link = LinkRecords(RecordData(Identifier("CHRU", "1")), RecordData(Identifier("ICL", "2")))
    env.run("unlink", UnlinkRecords(link.first, link.second))
    assert env.person_of("CHRU", "1") != env.person_of("ICL", "2")
    assert env.store.separations
    env.register("ICL", "2", **dict(TRAITS, phone="0698765432"))  # a later update
    env.register("CHRU", "1", INS_A)  # a qualification
    assert env.person_of("CHRU", "1") != env.person_of("ICL", "2")


def test_unlink_of_same_qualified_ins_is_a_conflict(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A)
    env.register("ICL", "2", INS_A)
    with pytest.raises(IdentityConflictError):
        env.run("unlink", UnlinkRecords(RecordData(Identifier("CHRU", "1")), RecordData(Identifier("ICL", "2"))))


def test_identifier_changes_notify_the_consumers_of_their_domains(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A)
    pending = [n for n in env.store.notifications.values() if n["status"] == "pending"]
    assert [(n["consumer"], n["status"]) for n in pending] == [("PACS", "pending")]
    env.register("ICL", "2")  # nothing in the PACS's domains changed
    assert len(env.store.notifications) == 1
    changed = [e for e in env.store.events if isinstance(e, PersonIdentifiersChanged)]
    assert len(changed) == 2


def test_fictitious_identities_never_auto_link(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", reliability=("FICT",), **TRAITS)
    env.register("MRUN", "3", reliability=("FICT",), **TRAITS)
    assert len({env.person_of("CHRU", "1"), env.person_of("ICL", "2"),
                env.person_of("MRUN", "3")}) == 3
    env.register("CCEG", "4", **dict(TRAITS, birth_family_name="INCONNU"))
    env.register("MRUN", "5", **dict(TRAITS, birth_family_name="INCONNU"))
    assert env.person_of("CCEG", "4") != env.person_of("MRUN", "5")
    assert all(link.method is not LinkMethod.AUTO for link in env.store.links.values())


def test_a_deleted_record_no_longer_designates_its_person(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", INS_A, birth_family_name="DUPONT")
    env.register("ICL", "2", INS_A, birth_family_name="DUPONT")
    person = env.person_of("ICL", "2")
    assert env.run("delete", DeleteRecord(Identifier("CHRU", "1"))) == person
    assert env.person_of("CHRU", "1") is None
    assert env.identifiers("ICL", "2") == {"ICL|2", str(INS_A)}
    record = next(r for r in env.store.records.values() if r.identifier.value == "1")
    assert record.status is RecordStatus.DELETED
    assert any(isinstance(e, RecordDeleted) and e.person_id == person for e in env.store.events)
    changed = [e for e in env.store.events if isinstance(e, PersonIdentifiersChanged)]
    assert Identifier("CHRU", "1") in changed[-1].before
    assert Identifier("CHRU", "1") not in changed[-1].after


def test_a_record_is_deleted_only_by_its_own_domain_and_only_once(env) -> None:  # type: ignore[no-untyped-def]
    env.register("CHRU", "1", birth_family_name="DUPONT")
    with pytest.raises(ForbiddenError):
        env.run("delete", DeleteRecord(Identifier("CHRU", "1")), ICL)
    env.run("delete", DeleteRecord(Identifier("CHRU", "1")))
    with pytest.raises(UnknownIdentifierError):
        env.run("delete", DeleteRecord(Identifier("CHRU", "1")))
    with pytest.raises(UnknownAuthorityError):
        env.run("delete", DeleteRecord(Identifier("NOWHERE", "1")))
