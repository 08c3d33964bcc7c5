"""Undoing a review decision: its effect reversed, the task open again, the undone decision
kept in the task's evidence; what cannot be undone is refused."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.errors import InvalidInputError, UnknownIdentifierError
from mpi.identity import Actor, IdentityService, RecordData, RegisterRecord
from mpi.matching.engine import ProbabilisticMatcher
from mpi.model import Identifier, ReviewDecision, ReviewStatus
from mpi.queries import resolve_person
from mpi.review import decide_review, undo_review
from tests.fakes import FixedClock, fake_uow_factory

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
NATIONAL = frozenset(a.code for a in REGISTRY.all if a.is_national)
STAFF = Actor("user:vigilance", None)
TWIN = dict(birth_family_name="ZIMMERMANN", birth_date=date(1975, 6, 14), sex="F",
            birthplace="54395", postcode="54000", phone="0612345678")


class Env:
    def __init__(self) -> None:
        self.factory = fake_uow_factory()
        self.store: Any = self.factory.store  # type: ignore[attr-defined]
        self.service = IdentityService(REGISTRY, FixedClock(), ProbabilisticMatcher(NATIONAL))
        for authority, value, given in (("CHRU", "1", "Claire"), ("ICL", "2", "Hélène")):
            with self.factory() as uow:
                self.service.register(uow, RegisterRecord(RecordData(
                    Identifier(authority, value), dict(TWIN, given_names=(given,)))),
                    Actor(f"hl7:{authority}", authority))
                uow.commit()
        [self.task_id] = list(self.store.reviews)

    def person(self, authority: str, value: str) -> int:
        with self.factory() as uow:
            person = resolve_person(uow, REGISTRY, Identifier(authority, value))
            assert person is not None and person.id is not None
            return person.id

    def decide(self, decision: ReviewDecision) -> None:
        with self.factory() as uow:
            decide_review(uow, self.service, self.task_id, decision, STAFF, "seen at the desk")
            uow.commit()

    def undo(self, reason: str = "wrong patient file") -> Any:
        with self.factory() as uow:
            task = undo_review(uow, self.service, self.task_id, STAFF, reason)
            uow.commit()
            return task


@pytest.mark.parametrize("decision", [ReviewDecision.LINK, ReviewDecision.MERGE_PERSONS])
def test_undoing_a_link_or_a_merge_separates_the_records_again(
        decision: ReviewDecision) -> None:
    env = Env()
    env.decide(decision)
    assert env.person("CHRU", "1") == env.person("ICL", "2")
    task = env.undo()
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    assert task.status is ReviewStatus.OPEN and task.decision is None
    [undone] = task.evidence["undone"]
    assert undone["decision"] == decision.value and undone["decided_by"] == STAFF.name
    assert undone["undo_reason"] == "wrong patient file"
    env.decide(ReviewDecision.KEEP_APART)  # open again: decided anew


def test_undoing_keep_apart_forgets_the_separation() -> None:
    env = Env()
    env.decide(ReviewDecision.KEEP_APART)
    assert env.store.separations
    env.undo()
    assert not env.store.separations
    env.decide(ReviewDecision.LINK)  # no longer declared different: a link is allowed
    assert env.person("CHRU", "1") == env.person("ICL", "2")


def test_undoing_an_unlink_brings_the_record_back() -> None:
    env = Env()
    env.decide(ReviewDecision.LINK)
    with env.factory() as uow:  # a second task on the linked pair, decided by unlink
        task = uow.reviews.get(env.task_id)
        assert task is not None
        task.status, task.decision = ReviewStatus.OPEN, None
        uow.reviews.save(task)
        uow.commit()
    env.decide(ReviewDecision.UNLINK)
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    env.undo()
    assert env.person("CHRU", "1") == env.person("ICL", "2")
    assert not env.store.separations


def test_keep_apart_on_a_task_whose_records_were_joined_since_separates_them() -> None:
    """The task proposed Claire's record for Hélène's person; the CHRU then linked them
    (an A24 here: the two records are one person when the task is decided). Keeping them
    apart takes the record out again and declares it different from her records; undoing
    it brings the record back. (Found by the identity state machine: the decision tried to
    declare the record different from itself.)"""
    env = Env()
    with env.factory() as uow:  # joined after the task was opened
        record = next(r for r in env.store.records.values()
                      if r.identifier == Identifier("ICL", "2"))
        person = env.person("CHRU", "1")
        link = env.store.links[record.id]
        link.person_id = person
        uow.links.save(link)
        uow.commit()
    assert env.person("CHRU", "1") == env.person("ICL", "2")
    env.decide(ReviewDecision.KEEP_APART)
    assert env.person("CHRU", "1") != env.person("ICL", "2")
    assert len(env.store.separations) == 1
    task = env.undo()
    assert env.person("CHRU", "1") == env.person("ICL", "2")
    assert not env.store.separations
    assert "left_person" not in task.evidence


def test_what_cannot_be_undone_is_refused() -> None:
    env = Env()
    with pytest.raises(InvalidInputError, match="not decided"):
        env.undo()
    env.decide(ReviewDecision.KEEP_APART)
    with pytest.raises(InvalidInputError, match="reason"):
        env.undo(" ")
    with env.factory() as uow, pytest.raises(UnknownIdentifierError):
        undo_review(uow, env.service, 424242, STAFF, "no such task")
