"""The safety rules of identity on fakes, with a matcher that can link: twins through any path,
newborn placeholders, re-examination of automatic links after a change, identity collisions
(an update describing another person is held for review), and separations under INS."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from mpi.errors import InvalidInputError
from mpi.events import PersonsMerged, RecordUnlinked, UpdateQuarantined
from mpi.model import LinkMethod, ReviewDecision, ReviewKind
from tests.identity_env import INS_A, INS_B, TRAITS, IdentityEnv


@pytest.fixture
def env() -> IdentityEnv:
    return IdentityEnv()


def qualified_ins_of_each_person(env: IdentityEnv) -> dict[int, set[str]]:
    held: dict[int, set[str]] = {}
    for record in env.store.records.values():
        if record.is_active and record.qualified_ins is not None:
            person = env.person(*_key(record))
            assert person is not None
            held.setdefault(person, set()).add(str(record.qualified_ins))
    return held


def _key(record) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return record.identifier.authority, record.identifier.value


# -- twins, through every path ------------------------------------------------------------


def test_a_record_without_given_names_never_bridges_two_twins(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, given_names=()))
    assert env.person("ICL", "2") == env.person("CHRU", "1")  # the bridge links alone
    env.register("MRUN", "3", **dict(TRAITS, given_names=("Claire",)))
    assert env.person("MRUN", "3") != env.person("CHRU", "1")
    [task] = [t for t in env.open_tasks() if t.record_id == env.record("MRUN", "3").id]
    assert task.evidence["twins"] is True
    assert task.evidence["twin_record"] == env.record("CHRU", "1").id


def test_twins_of_opposite_sex_with_close_first_names_never_link(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **dict(TRAITS, given_names=("Jean",), sex="M"))
    env.register("ICL", "2", **dict(TRAITS, given_names=("Jeanne",), sex="F"))
    assert env.person("ICL", "2") != env.person("CHRU", "1")
    assert all(t.evidence["twins"] for t in env.open_tasks())


def test_newborns_registered_as_bb1_and_bb2_never_link(env: IdentityEnv) -> None:
    newborn = dict(TRAITS, given_names=(), birth_date=date(2026, 11, 2))
    env.register("MRUN", "1", **dict(newborn, birth_family_name="BB1 ZIMMERMANN"))
    env.register("CHRU", "2", **dict(newborn, birth_family_name="BB2 ZIMMERMANN"))
    env.register("CCEG", "3", **dict(newborn, birth_family_name="JUMEAU ZIMMERMANN",
                                     given_names=("NOUVEAU-NE",)))
    persons = {env.person("MRUN", "1"), env.person("CHRU", "2"), env.person("CCEG", "3")}
    assert len(persons) == 3
    assert env.open_tasks()
    assert all(t.evidence["newborn_placeholder"] for t in env.open_tasks())


# -- re-examination of automatic links ------------------------------------------------------


def test_a_birth_date_corrected_after_an_automatic_link_detaches_the_record_for_review(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    person = env.person("CHRU", "1")
    assert env.person("ICL", "2") == person
    assert env.link_of("ICL", "2").method is LinkMethod.AUTO
    env.register("ICL", "2", birth_date=date(1957, 2, 3))
    assert env.person("CHRU", "1") == person
    assert env.person("ICL", "2") != person
    [task] = env.open_tasks(ReviewKind.REEXAMINED)
    assert (task.record_id, task.person_id) == (env.record("ICL", "2").id, person)
    assert task.evidence["other_birth_date"] is True
    assert task.evidence["changed_record"] == env.record("ICL", "2").id
    assert any(isinstance(e, RecordUnlinked) for e in env.store.events)


def test_a_correction_on_the_other_side_detaches_the_automatically_linked_record(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    person = env.person("CHRU", "1")
    env.register("CHRU", "1", birth_date=date(1957, 2, 3))  # the founding record changes
    assert env.person("CHRU", "1") == person  # it keeps its person (and studies)
    assert env.person("ICL", "2") != person
    assert [t.record_id for t in env.open_tasks(ReviewKind.REEXAMINED)] == [
        env.record("ICL", "2").id]


def test_a_second_given_name_that_reveals_a_twin_detaches_the_record(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **dict(TRAITS, given_names=("Louise",)))
    env.register("ICL", "2", **dict(TRAITS, given_names=("Louise",)))
    assert env.person("ICL", "2") == env.person("CHRU", "1")
    env.register("ICL", "2", given_names=("Yasmine", "Louise"))
    assert env.person("ICL", "2") != env.person("CHRU", "1")
    [task] = env.open_tasks(ReviewKind.REEXAMINED)
    assert task.evidence["twins"] is True


def test_a_twin_arriving_later_then_completing_the_bridge_record_takes_it_along(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)  # Hélène
    env.register("ICL", "2", **dict(TRAITS, given_names=()))  # her sister's, names missing
    env.register("MRUN", "3", **dict(TRAITS, given_names=("Claire",)))  # the sister, later
    assert env.person("MRUN", "3") != env.person("CHRU", "1")
    env.register("ICL", "2", given_names=("Claire",))  # the names are completed
    assert env.person("ICL", "2") != env.person("CHRU", "1")
    assert env.person("ICL", "2") == env.person("MRUN", "3")


def test_links_decided_by_a_person_are_not_undone_by_a_re_examination(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, given_names=("Claire",)))
    env.link(("CHRU", "1"), ("ICL", "2"))  # A24: the same person, says the source
    env.register("ICL", "2", birth_date=date(1957, 2, 3))
    assert env.person("ICL", "2") == env.person("CHRU", "1")
    assert not env.open_tasks(ReviewKind.REEXAMINED)


def test_an_unchanged_update_re_examines_nothing(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    assert env.person("ICL", "2") == env.person("CHRU", "1")
    assert not env.open_tasks()


def test_a_record_qualified_later_with_another_ins_leaves_the_person_it_was_linked_to(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", INS_A, **TRAITS)
    env.register("ICL", "2", **TRAITS)
    assert env.person("ICL", "2") == env.person("CHRU", "1")
    env.register("ICL", "2", INS_B, ("VALI",))
    assert env.person("ICL", "2") != env.person("CHRU", "1")
    assert all(len(held) == 1 for held in qualified_ins_of_each_person(env).values())


def test_a_record_qualified_with_the_ins_of_another_person_joins_that_person(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", INS_A, **TRAITS)
    env.register("ICL", "2", **TRAITS)  # linked to CHRU 1's person by its traits
    env.register("MRUN", "3", INS_B, **dict(TRAITS, given_names=("Claire",)))
    env.register("ICL", "2", INS_B, ("VALI",))
    assert env.person("ICL", "2") == env.person("MRUN", "3") != env.person("CHRU", "1")
    assert env.link_of("ICL", "2").method is LinkMethod.INS


def test_a_record_becoming_fictitious_no_longer_holds_an_automatic_link(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    env.register("ICL", "2", reliability=("FICT",))
    assert env.person("ICL", "2") != env.person("CHRU", "1")


# -- identity collisions (overlays) -------------------------------------------------------

OTHER_PERSON = dict(given_names=("Paul",), birth_date=date(1990, 1, 8), sex="M")


def test_an_update_describing_another_person_is_held_with_both_versions(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    person = env.person("CHRU", "1")
    env.register("ICL", "2", **OTHER_PERSON)
    record = env.record("ICL", "2")
    assert record.demographics.given_names == ("Hélène", "Marie")  # not applied
    assert env.person("ICL", "2") == person  # its studies stay where they were
    [task] = env.open_tasks(ReviewKind.COLLISION)
    assert (task.record_id, task.person_id) == (record.id, person)
    assert task.evidence["held"]["demographics"]["given_names"] == ["Paul"]
    assert task.evidence["current"]["demographics"]["given_names"] == ["Hélène", "Marie"]
    assert task.evidence["reason"] == "another birth date and another first given name"
    [held] = [e for e in env.store.events if isinstance(e, UpdateQuarantined)]
    assert held.task_id == task.id


def test_a_newer_held_update_replaces_the_one_waiting(env: IdentityEnv) -> None:
    env.register("ICL", "2", **TRAITS)
    env.register("ICL", "2", **OTHER_PERSON)
    env.register("ICL", "2", **dict(OTHER_PERSON, given_names=("Pierre",)))
    [task] = env.open_tasks(ReviewKind.COLLISION)
    assert task.evidence["held"]["demographics"]["given_names"] == ["Pierre"]


def test_another_qualified_ins_than_the_one_held_is_a_collision(env: IdentityEnv) -> None:
    env.register("CHRU", "1", INS_A, **TRAITS)
    env.register("CHRU", "1", INS_B, ("VALI",))
    assert env.record("CHRU", "1").qualified_ins == INS_A
    [task] = env.open_tasks(ReviewKind.COLLISION)
    assert task.evidence["held"]["ins"] == str(INS_B)
    assert task.evidence["reason"] == "another qualified INS than the one held"


@pytest.mark.parametrize("correction", [
    dict(birth_date=date(1975, 6, 15)),  # a typo fixed, the names agree
    dict(given_names=("Paul",)),  # another given name, the same birth date
    dict(birth_date=date(1990, 1, 8), given_names=("Helene",)),  # accents lost
    dict(birth_date=date(1990, 1, 8), given_names=("Marie", "Hélène")),  # names reordered
    dict(birth_date=date(1990, 1, 8), given_names=("Hélène-Marie",)),  # compound
    dict(birth_date=None, given_names=("Paul",)),  # a birth date removed is not another one
])
def test_corrections_are_applied_not_held(env: IdentityEnv, correction: dict[str, object]
                                          ) -> None:
    env.register("ICL", "2", **TRAITS)
    env.register("ICL", "2", **correction)
    assert not env.open_tasks(ReviewKind.COLLISION)
    assert replace(env.record("ICL", "2").demographics).apply(correction) == env.record(
        "ICL", "2").demographics


def test_one_part_of_a_compound_first_name_is_the_same_first_name(env: IdentityEnv) -> None:
    env.register("ICL", "2", **dict(TRAITS, given_names=("Jean-Pierre",)))
    env.register("ICL", "2", birth_date=date(1990, 1, 8), given_names=("Pierre",))
    assert not env.open_tasks(ReviewKind.COLLISION)
    assert env.record("ICL", "2").demographics.given_names == ("Pierre",)


def test_discarding_a_held_update_leaves_the_record_as_it_was(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    env.register("ICL", "2", **OTHER_PERSON)
    [task] = env.open_tasks(ReviewKind.COLLISION)
    assert task.id is not None
    env.decide(task.id, ReviewDecision.DISCARD_UPDATE)
    assert env.record("ICL", "2").demographics.given_names == ("Hélène", "Marie")
    assert env.person("ICL", "2") == env.person("CHRU", "1")
    assert not env.open_tasks()


def test_applying_a_held_update_moves_the_record_to_a_person_of_its_own(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **TRAITS)
    person = env.person("CHRU", "1")
    env.register("ICL", "2", **OTHER_PERSON)
    [task] = env.open_tasks(ReviewKind.COLLISION)
    assert task.id is not None
    env.decide(task.id, ReviewDecision.APPLY_UPDATE)
    record = env.record("ICL", "2")
    assert record.demographics.given_names == ("Paul",)
    assert record.demographics.birth_date == date(1990, 1, 8)
    assert env.person("CHRU", "1") == person
    assert env.person("ICL", "2") not in (None, person)


def test_a_collision_task_takes_only_the_collision_decisions(env: IdentityEnv) -> None:
    env.register("ICL", "2", **TRAITS)
    env.register("ICL", "2", **OTHER_PERSON)
    [task] = env.open_tasks(ReviewKind.COLLISION)
    assert task.id is not None
    with pytest.raises(InvalidInputError):
        env.decide(task.id, ReviewDecision.LINK)
    env.register("CHRU", "1", **TRAITS)
    env.register("CHRU", "3", **TRAITS)  # a duplicate of the same establishment: review
    [duplicate] = env.open_tasks(ReviewKind.DUPLICATE)
    assert duplicate.id is not None
    with pytest.raises(InvalidInputError):
        env.decide(duplicate.id, ReviewDecision.APPLY_UPDATE)


# -- separations under the INS rules ------------------------------------------------------


def test_a_new_record_with_an_ins_never_merges_persons_kept_apart(env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", **dict(TRAITS, given_names=("Claire",)))
    env.unlink(("CHRU", "1"), ("ICL", "2"))
    env.register("CHRU", "1", INS_A, ("VALI",))
    env.register("ICL", "2", INS_A, ("VALI",))
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    merges = sum(isinstance(e, PersonsMerged) for e in env.store.events)
    env.register("MRUN", "3", INS_A, **TRAITS)
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    assert sum(isinstance(e, PersonsMerged) for e in env.store.events) == merges


def test_an_a37_takes_along_the_records_sharing_the_separated_record_s_ins(
        env: IdentityEnv) -> None:
    env.register("CHRU", "1", **TRAITS)
    env.register("ICL", "2", INS_A, **TRAITS)  # linked to CHRU 1 by its traits
    env.register("MRUN", "3", INS_A, **TRAITS)  # joins by the INS
    assert env.person("CHRU", "1") == env.person("ICL", "2") == env.person("MRUN", "3")
    env.unlink(("CHRU", "1"), ("ICL", "2"))
    assert env.person("ICL", "2") == env.person("MRUN", "3") != env.person("CHRU", "1")
    assert env.link_of("MRUN", "3").method is LinkMethod.INS
