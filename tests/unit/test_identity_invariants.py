"""The safety rules as invariants, checked after every step of random message sequences.

A hypothesis state machine drives A28/A31/A08 (one use case: register), A40 (and the FHIR
merge, the same use case for another sender), A47, A24, A37 and review decisions through
the IdentityService on fakes, with the real probabilistic matcher (one that links), over a
small pool of look-alike identities: a woman, her twin sister, a twin brother with a close
name, her record without given names (the bridge), a typo of her name, newborns registered
as BB1/BB2, an unidentified INCONNU and an unrelated man; qualified INS among three. After
each step:

- no active person holds two different qualified INS;
- every active record belongs to exactly one active person;
- a fictitious or unidentified record, or a newborn's placeholder (BB1...), is never linked
  automatically, nor the record an automatic link was decided on;
- a separation (A37, keep-apart, review unlink) is never undone automatically: its two
  records, while active, are in different persons;
- two records that look like twins are never in one person through an automatic link (of
  either, whichever record it was decided on).
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mpi.errors import MPIError
from mpi.identity import Actor, MergeRecords
from mpi.matching.comparisons import compare
from mpi.matching.profile import profile_of
from mpi.matching.vetoes import is_newborn_placeholder, looks_like_twins
from mpi.model import (
    Identifier,
    LinkMethod,
    PersonStatus,
    ReviewDecision,
    ReviewKind,
    ReviewStatus,
    SourceRecord,
)
from tests.identity_env import TRAITS, IdentityEnv, nir

AUTHORITIES = ("CHRU", "ICL", "MRUN")
LOCAL_IDS = ("1", "2", "3")
NEWBORN = dict(TRAITS, given_names=(), birth_date=date(2026, 11, 2))
VARIANTS: dict[str, dict[str, Any]] = {
    "helene": TRAITS,
    "claire": dict(TRAITS, given_names=("Claire",)),  # her twin sister
    "helen": dict(TRAITS, given_names=("Helen",), sex="M"),  # a twin brother, a close name
    "bridge": dict(TRAITS, given_names=()),  # given names missing
    "typo": dict(TRAITS, birth_family_name="ZIMERMANN"),
    "reborn": dict(TRAITS, birth_date=date(1957, 2, 3)),  # a birth date corrected
    "bb1": dict(NEWBORN, birth_family_name="BB1 ZIMMERMANN"),
    "bb2": dict(NEWBORN, birth_family_name="BB2 ZIMMERMANN"),
    "inconnu": dict(TRAITS, birth_family_name="INCONNU", given_names=()),
    "paul": dict(TRAITS, given_names=("Paul",), birth_date=date(1990, 1, 8), sex="M"),
}
INS_POOL = (None, None, nir("2750654395012"), nir("2750654395013"), nir("1900154395014"))
STAFF = Actor("user:vigilance", None)


class IdentityMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.env = IdentityEnv()

    @initialize()
    def start(self) -> None:
        self.env = IdentityEnv()

    def attempt(self, action: Any, *args: Any) -> None:
        """Refusals (identity conflicts, unknown records...) are answers, not failures: the
        unit of work is not committed and the invariants hold on what was."""
        try:
            action(*args)
        except MPIError:
            pass

    # -- the messages ----------------------------------------------------------------------

    @rule(authority=st.sampled_from(AUTHORITIES), local=st.sampled_from(LOCAL_IDS),
          variant=st.sampled_from(sorted(VARIANTS)), ins=st.sampled_from(INS_POOL),
          fictitious=st.booleans())
    def register(self, authority: str, local: str, variant: str, ins: Identifier | None,
                 fictitious: bool) -> None:
        """A28, A31 or A08: create or update a record."""
        traits = VARIANTS[variant]
        if variant == "inconnu" or fictitious and ins is None:
            reliability: tuple[str, ...] = ("FICT",)
        else:
            reliability = ("VALI",) if ins else ("PROV",)
        self.attempt(lambda: self.env.register(authority, local, ins, reliability, **traits))

    @rule(authority=st.sampled_from(AUTHORITIES), survivor=st.sampled_from(LOCAL_IDS),
          retired=st.sampled_from(LOCAL_IDS), fhir=st.booleans())
    def merge(self, authority: str, survivor: str, retired: str, fhir: bool) -> None:
        """A40, or a FHIR Patient PUT with active false and a replaced-by link."""
        actor = Actor(f"{'fhir' if fhir else 'hl7'}:{authority}", authority)
        command = MergeRecords(self.env.data(authority, survivor), Identifier(authority, retired))
        self.attempt(self.env.run, "merge", command, actor)

    @rule(authority=st.sampled_from(AUTHORITIES), new=st.sampled_from(("4", "5")),
          obsolete=st.sampled_from(LOCAL_IDS))
    def change_identifier(self, authority: str, new: str, obsolete: str) -> None:
        """A47."""
        self.attempt(self.env.change_identifier, authority, new, obsolete)

    @rule(first=st.tuples(st.sampled_from(AUTHORITIES), st.sampled_from(LOCAL_IDS)),
          second=st.tuples(st.sampled_from(AUTHORITIES), st.sampled_from(LOCAL_IDS)))
    def link(self, first: tuple[str, str], second: tuple[str, str]) -> None:
        """A24."""
        self.attempt(self.env.link, first, second)

    @rule(first=st.tuples(st.sampled_from(AUTHORITIES), st.sampled_from(LOCAL_IDS)),
          second=st.tuples(st.sampled_from(AUTHORITIES), st.sampled_from(LOCAL_IDS)))
    def unlink(self, first: tuple[str, str], second: tuple[str, str]) -> None:
        """A37."""
        self.attempt(self.env.unlink, first, second)

    @rule(data=st.data())
    def decide(self, data: st.DataObject) -> None:
        """A review decision on one of the open tasks."""
        tasks = sorted((t for t in self.env.store.reviews.values()
                        if t.status is ReviewStatus.OPEN), key=lambda t: t.id or 0)
        if not tasks:
            return
        task = data.draw(st.sampled_from(tasks))
        if task.kind is ReviewKind.COLLISION:
            choices = [ReviewDecision.APPLY_UPDATE, ReviewDecision.DISCARD_UPDATE]
        else:
            choices = [ReviewDecision.LINK, ReviewDecision.KEEP_APART,
                       ReviewDecision.MERGE_PERSONS, ReviewDecision.UNLINK]
        decision = data.draw(st.sampled_from(choices))
        assert task.id is not None
        self.attempt(self.env.decide, task.id, decision)

    # -- the invariants --------------------------------------------------------------------

    def active_records(self) -> list[SourceRecord]:
        return [r for r in self.env.store.records.values() if r.is_active]

    def person_of(self, record: SourceRecord) -> int:
        return int(self.env.store.links[record.id].person_id)

    def by_person(self) -> dict[int, list[SourceRecord]]:
        persons: dict[int, list[SourceRecord]] = {}
        for record in self.active_records():
            persons.setdefault(self.person_of(record), []).append(record)
        return persons

    @invariant()
    def every_active_record_belongs_to_exactly_one_active_person(self) -> None:
        for record in self.active_records():
            link = self.env.store.links.get(record.id)
            assert link is not None, record.identifier
            person = self.env.store.persons[link.person_id]
            assert person.status is PersonStatus.ACTIVE, record.identifier

    @invariant()
    def no_person_holds_two_different_qualified_ins(self) -> None:
        for person, records in self.by_person().items():
            held = {r.qualified_ins for r in records} - {None}
            assert len(held) <= 1, (person, held)

    @invariant()
    def fictitious_identities_and_placeholders_are_never_linked_automatically(self) -> None:
        fictitious = {r.id for r in self.active_records()
                      if profile_of(r).fictitious or is_newborn_placeholder(profile_of(r))}
        for record in self.active_records():
            link = self.env.store.links[record.id]
            if link.method is LinkMethod.AUTO:
                assert record.id not in fictitious, record.identifier
                assert link.evidence.get("candidate_record") not in fictitious

    @invariant()
    def a_separation_is_never_undone_automatically(self) -> None:
        records = self.env.store.records
        for first, second in self.env.store.separations:
            a, b = records[first], records[second]
            if a.is_active and b.is_active:
                assert self.person_of(a) != self.person_of(b), (a.identifier, b.identifier)

    @invariant()
    def twins_are_never_in_one_person_through_an_automatic_link(self) -> None:
        links = self.env.store.links
        for records in self.by_person().values():
            for i, a in enumerate(records):
                for b in records[i + 1:]:
                    if LinkMethod.AUTO not in (links[a.id].method, links[b.id].method):
                        continue
                    pa, pb = profile_of(a), profile_of(b)
                    if pa.fictitious or pb.fictitious or pa.ins and pa.ins == pb.ins:
                        continue  # not auto-linked, or one person by their equal INS
                    assert not looks_like_twins(compare(pa, pb), pa, pb), (
                        a.identifier, b.identifier)


# The suite runs a fixed sequence of examples, so that every run gives the same answer;
# MPI_TEST_EXPLORE=N explores N random sequences of twice the length instead (a seed it
# fails with is printed; see docs/pages/matching.md).
EXPLORE = int(os.environ.get("MPI_TEST_EXPLORE") or 0)
IdentityMachine.TestCase.settings = settings(
    max_examples=EXPLORE or 200, stateful_step_count=40 if EXPLORE else 20, deadline=None,
    derandomize=not EXPLORE, suppress_health_check=[HealthCheck.too_slow])
test_the_safety_rules_hold_after_every_step = IdentityMachine.TestCase

