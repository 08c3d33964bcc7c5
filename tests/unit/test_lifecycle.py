"""The archive's legal lifecycle on in-memory fakes: retention from the feed and the studies,
holds, the separation of duties of a destruction, destruction checked again and finished
after a crash at any point, tombstones, reassignment."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.archive import ArchiveService, InstanceHeader, PatientAsReceived, Sender
from mpi.archive.lifecycle import (
    Staff,
    approve,
    destroy_proposal,
    place_hold,
    propose_destruction,
    reassign_study,
    record_visa,
    release_hold,
    retention_report,
)
from mpi.archive.retention import RetentionPolicy, recompute_retention
from mpi.errors import ForbiddenError, LifecycleStateError
from mpi.identity import Actor, IdentityService, MergeRecords, RecordData, RegisterRecord
from mpi.model import Identifier
from tests.fakes import FakeBlobStore, FakeUnitOfWork, FixedClock, fake_uow_factory

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
POLICY = RetentionPolicy()
TODAY = date(2040, 1, 1)
ARCHIVIST, DIM, DIRECTOR = Staff("arch"), Staff("dr.dim"), Staff("mme.dir")


@dataclass
class World:
    factory: Callable[..., FakeUnitOfWork]
    blobs: FakeBlobStore
    identity: IdentityService
    archive: ArchiveService
    clock: FixedClock

    def now(self) -> datetime:
        return self.clock.now()

    def patient(self, value: str, *, birth: date = date(1950, 1, 1),
                visit: datetime | None = None, death: date | None = None,
                authority: str = "CHRU") -> None:
        demographics: dict[str, Any] = {"birth_family_name": "DUPONT", "birth_date": birth}
        if death is not None:
            demographics["death_date"] = death
        with self.factory() as uow:
            self.identity.register(uow, RegisterRecord(RecordData(
                Identifier(authority, value), demographics, activity_at=visit)),
                Actor("HIS", authority))
            uow.commit()

    def study(self, uid: str, value: str, day: date | None, instances: int = 2,
              authority: str = "CHRU") -> None:
        for number in range(1, instances + 1):
            content = f"{uid}.{number}".encode() * 10
            header = InstanceHeader(
                "1.2.840.10008.5.1.4.1.1.2", f"{uid}.1.{number}", uid, f"{uid}.1",
                "1.2.840.10008.1.2.1", PatientAsReceived(value), study_date=day,
                modality="CT", instance_number=number)
            with self.factory() as uow:
                self.archive.accept(uow, header, content, hashlib.sha256(content).hexdigest(),
                                    Sender(authority, authority))
                uow.commit()

    def recompute(self) -> None:
        with self.factory() as uow:
            recompute_retention(uow, POLICY, uow.archive.archived_record_ids(0, 1000),
                                self.now())
            uow.commit()

    def report(self, establishment: str | None = "CHRU") -> dict[str, tuple[Any, ...]]:
        with self.factory(read_only=True) as uow:
            return {r.study_instance_uid: (r.expires_on, r.basis, r.held)
                    for r in retention_report(uow, establishment)}

    def approved(self) -> int:
        with self.factory() as uow:
            proposal = propose_destruction(uow, ARCHIVIST, "CHRU", TODAY, self.now(), POLICY)
            uow.commit()
        assert proposal.id is not None
        for staff in (DIM, DIRECTOR):
            with self.factory() as uow:
                approve(uow, staff, proposal.id, self.now())
                uow.commit()
        with self.factory() as uow:
            record_visa(uow, ARCHIVIST, proposal.id, "AD54-2040-1", self.now())
            uow.commit()
        return proposal.id


@pytest.fixture
def world() -> World:
    clock = FixedClock(datetime(2040, 1, 1, 8, tzinfo=UTC))
    identity = IdentityService(REGISTRY, clock)
    blobs = FakeBlobStore()
    return World(fake_uow_factory(), blobs, identity,
                 ArchiveService(REGISTRY, identity, blobs, clock.now), clock)


def test_the_last_visit_is_the_latest_of_the_feed_and_the_establishments_studies(
        world: World) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC))
    world.study("1.1", "1", date(2010, 6, 1))
    world.study("1.2", "1", date(2001, 1, 1))
    world.patient("2", visit=datetime(2015, 6, 1, tzinfo=UTC))
    world.study("2.1", "2", date(2010, 6, 1))
    world.recompute()
    assert world.report() == {"1.1": (date(2030, 6, 1), "last-visit+20y", False),
                              "1.2": (date(2030, 6, 1), "last-visit+20y", False),
                              "2.1": (date(2035, 6, 1), "last-visit+20y", False)}


def test_a_new_stay_at_one_establishment_does_not_extend_anothers_record(
        world: World) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC))
    world.patient("7", visit=datetime(2025, 6, 1, tzinfo=UTC), authority="MRUN")
    world.study("1.1", "1", date(2005, 6, 1))
    world.study("7.1", "7", date(2006, 6, 1), authority="MRUN")
    world.recompute()
    assert world.report(None) == {"1.1": (date(2025, 6, 1), "last-visit+20y", False),
                                  "7.1": (date(2045, 6, 1), "last-visit+20y", False)}


def test_a_merge_keeps_the_latest_visit_of_both_records(world: World) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC))
    world.patient("2", visit=datetime(2012, 6, 1, tzinfo=UTC))
    world.study("1.1", "1", date(2005, 6, 1))
    with world.factory() as uow:
        world.identity.merge(uow, MergeRecords(RecordData(Identifier("CHRU", "1")),
                                               Identifier("CHRU", "2")), Actor("HIS", "CHRU"))
        uow.commit()
    world.recompute()
    assert world.report() == {"1.1": (date(2032, 6, 1), "last-visit+20y", False)}


def test_a_hold_keeps_a_study_out_of_every_proposal_until_released(world: World) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC), death=date(2006, 1, 1))
    world.study("1.1", "1", date(2005, 6, 1))
    world.study("1.2", "1", date(2005, 6, 1))
    world.recompute()
    with world.factory() as uow:
        hold = place_hold(uow, ARCHIVIST, study_uid="1.1", reason="claim",
                          reference="TA-1", now=world.now())
        uow.commit()
    assert world.report()["1.1"] == (date(2016, 1, 1), "death+10y", True)
    with world.factory() as uow:
        proposal = propose_destruction(uow, ARCHIVIST, "CHRU", TODAY, world.now(), POLICY)
    assert [i.study_instance_uid for i in proposal.items] == ["1.2"]
    with world.factory() as uow:
        release_hold(uow, ARCHIVIST, hold.id or 0, reason="settled", now=world.now(),
                     policy=POLICY)
        uow.commit()
    assert world.report()["1.1"][2] is False
    with world.factory() as uow, pytest.raises(LifecycleStateError):
        release_hold(uow, ARCHIVIST, hold.id or 0, reason="again", now=world.now(),
                     policy=POLICY)


def test_two_different_approvers_neither_the_proposer_dim_before_director(
        world: World) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC))
    world.study("1.1", "1", date(2005, 6, 1))
    with world.factory() as uow:
        proposal = propose_destruction(uow, ARCHIVIST, "CHRU", TODAY, world.now(), POLICY)
        pid = proposal.id or 0
        with pytest.raises(ForbiddenError):
            approve(uow, ARCHIVIST, pid, world.now())  # the proposer
        with pytest.raises(LifecycleStateError):
            approve(uow, DIRECTOR, pid, world.now(), role="director")  # before the DIM
        with pytest.raises(LifecycleStateError):
            record_visa(uow, ARCHIVIST, pid, "AD54", world.now())  # before the approvals
        approve(uow, DIM, pid, world.now())
        with pytest.raises(ForbiddenError):
            approve(uow, DIM, pid, world.now())  # the same person twice
        done = approve(uow, DIRECTOR, pid, world.now())
        assert [(a.role, a.approved_by, a.roles_verified) for a in done.approvals] == [
            ("dim", "dr.dim", False), ("director", "mme.dir", False)]
        with pytest.raises(LifecycleStateError):
            approve(uow, Staff("third"), pid, world.now())


def test_known_roles_are_required_and_decide_which_approval_it_is(world: World) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC))
    world.study("1.1", "1", date(2005, 6, 1))
    with world.factory() as uow:
        with pytest.raises(ForbiddenError):
            propose_destruction(uow, Staff("nurse", frozenset({"clinician"})), "CHRU", TODAY,
                                world.now(), POLICY)
        proposal = propose_destruction(uow, Staff("arch", frozenset({"archivist"})), "CHRU",
                                       TODAY, world.now(), POLICY)
        with pytest.raises(ForbiddenError):
            approve(uow, Staff("boss", frozenset({"director"})), proposal.id or 0, world.now(),
                    role="dim")
        approve(uow, Staff("doc", frozenset({"dim"})), proposal.id or 0, world.now())
        with pytest.raises(ForbiddenError):
            approve(uow, Staff("doc2", frozenset({"dim"})), proposal.id or 0, world.now())
        done = approve(uow, Staff("boss", frozenset({"director"})), proposal.id or 0,
                       world.now())
    assert [(a.role, a.roles_verified) for a in done.approvals] == [("dim", True),
                                                                    ("director", True)]


def test_only_a_visaed_proposal_is_destroyed_and_a_new_stay_keeps_its_study(
        world: World) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC))
    world.patient("2", visit=datetime(2005, 6, 1, tzinfo=UTC))
    world.study("1.1", "1", date(2005, 6, 1))
    world.study("2.1", "2", date(2005, 6, 1))
    with world.factory() as uow:
        unvisaed = propose_destruction(uow, ARCHIVIST, "CHRU", TODAY, world.now(), POLICY)
        uow.commit()
    with pytest.raises(LifecycleStateError):
        destroy_proposal(world.factory, world.blobs, ARCHIVIST, unvisaed.id or 0, world.now,
                         POLICY)
    proposal_id = world.approved()
    world.patient("2", visit=datetime(2039, 6, 1, tzinfo=UTC))  # a new stay since
    destroyed: list[tuple[str, int | None]] = []
    report = destroy_proposal(world.factory, world.blobs, ARCHIVIST, proposal_id, world.now,
                              POLICY, lambda uid, person: destroyed.append((uid, person)))
    assert report.destroyed == ["1.1"]
    assert report.kept == [("2.1", "retention now ends on 2059-06-01 (last visit 2039-06-01)")]
    assert [uid for uid, _ in destroyed] == ["1.1"] and destroyed[0][1] is not None
    with world.factory(read_only=True) as uow:
        assert uow.archive.study("1.1") is None and uow.archive.study("2.1") is not None
        tombstone = uow.lifecycle.tombstone("1.1")
        assert tombstone is not None
        assert (tombstone.instances, len(tombstone.files), tombstone.establishment) == (
            2, 2, "CHRU")
        assert [a["role"] for a in tombstone.decision["approvals"]] == ["dim", "director"]
        assert "DUPONT" not in repr(tombstone)
        assert uow.archive.pending_deletions(10) == []
    assert sorted(world.blobs.blobs) == sorted(
        i.blob_key for i in _instances(world, "2.1"))


def _instances(world: World, study: str) -> list[Any]:
    with world.factory(read_only=True) as uow:
        return uow.archive.instances(study_uid=study)


class Crash(BaseException):
    """The process dies here (not an Exception: nothing catches it)."""


def _crashing(world: World, at: int) -> tuple[Callable[..., FakeUnitOfWork], FakeBlobStore]:
    """A unit-of-work factory and a blob store that die at the ``at``-th commit or delete."""
    steps = iter(range(1, 10_000))

    def step() -> None:
        if next(steps) == at:
            raise Crash()

    class Units:
        def __call__(self, read_only: bool = False) -> FakeUnitOfWork:
            uow = world.factory(read_only)
            commit = uow.commit

            def dying_commit() -> None:
                step()
                commit()

            uow.commit = dying_commit  # type: ignore[method-assign]
            return uow

    class Blobs(FakeBlobStore):
        def delete(self, key: str) -> None:
            step()
            world.blobs.delete(key)

        def exists(self, key: str) -> bool:
            return world.blobs.exists(key)

    return Units(), Blobs()


def _consistent(world: World) -> Iterator[str]:
    """Files without a row (neither an instance nor the deletion journal) and rows without
    their file."""
    with world.factory(read_only=True) as uow:
        rows = {i.blob_key for s in ("1.1", "1.2", "1.3")
                for i in uow.archive.instance_files(s)}
        journal = {p.blob_key for p in uow.archive.pending_deletions(1000)}
    for key in world.blobs.blobs:
        if key not in rows | journal:
            yield f"file without its row: {key}"
    for key in rows:
        if key not in world.blobs.blobs:
            yield f"row without its file: {key}"


@pytest.mark.parametrize("crash_at", range(1, 12))
def test_a_destruction_interrupted_anywhere_finishes_when_run_again(world: World,
                                                                   crash_at: int) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC))
    for uid in ("1.1", "1.2", "1.3"):
        world.study(uid, "1", date(2005, 6, 1), instances=2)
    proposal_id = world.approved()
    factory, blobs = _crashing(world, crash_at)
    try:
        destroy_proposal(factory, blobs, ARCHIVIST, proposal_id, world.now, POLICY)
    except Crash:
        assert list(_consistent(world)) == []
    report = destroy_proposal(world.factory, world.blobs, ARCHIVIST, proposal_id, world.now,
                              POLICY)
    assert sorted(report.destroyed) == ["1.1", "1.2", "1.3"]
    assert world.blobs.blobs == {}
    with world.factory(read_only=True) as uow:
        assert uow.archive.pending_deletions(10) == []
        assert len(uow.lifecycle.tombstones()) == 3
        assert uow.lifecycle.proposal(proposal_id).status.value == "destroyed"  # type: ignore[union-attr]


def test_a_misfiled_study_moves_to_the_right_record_and_back(world: World) -> None:
    world.patient("1", visit=datetime(2005, 6, 1, tzinfo=UTC))
    world.patient("2", visit=datetime(2030, 6, 1, tzinfo=UTC))
    world.study("1.1", "1", date(2005, 6, 1))
    vigilance = Staff("iv")
    with world.factory() as uow:
        with pytest.raises(ForbiddenError):
            reassign_study(uow, Staff("arch", frozenset({"archivist"})), "1.1",
                           Identifier("CHRU", "2"), "wrong patient", world.now())
        reassign_study(uow, vigilance, "1.1", Identifier("CHRU", "2"), "wrong patient",
                       world.now())
        uow.commit()
    with world.factory(read_only=True) as uow:
        [summary] = uow.archive.find_studies(
            __import__("mpi.archive").archive.StudyFilter(study_uids=("1.1",)))
        assert str(summary.received_as) == "CHRU|2"
    with world.factory() as uow:
        reassign_study(uow, vigilance, "1.1", Identifier("CHRU", "1"), "undo", world.now())
        uow.commit()
    with world.factory(read_only=True) as uow:
        moves = uow.archive.reassignments("1.1")
    assert [(str(m.from_patient), str(m.to_patient), m.reason) for m in moves] == [
        ("CHRU|1", "CHRU|2", "wrong patient"), ("CHRU|2", "CHRU|1", "undo")]
