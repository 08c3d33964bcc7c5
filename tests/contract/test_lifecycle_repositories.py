"""The contracts of the lifecycle's repository methods (retention, deletion journal,
compression, fixity, reassignments, holds, proposals, tombstones) on the fakes, SQLite and
PostgreSQL: the same tests on each implementation."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from mpi.archive import (
    Approval,
    CompressionCriteria,
    DestructionProposal,
    ItemOutcome,
    LegalHold,
    NewContent,
    ProposalItem,
    ProposalStatus,
    Reassignment,
    Retention,
    Tombstone,
)
from mpi.model import Identifier, RecordStatus
from tests.contract.test_repositories import (  # noqa: F401 - fixtures by name
    EXPLICIT_LITTLE_ENDIAN,
    Imaging,
    UowFactory,
    imaging,
    sha,
    uow_factory,
)
from tests.entities import NOW

JPEG_LS = "1.2.840.10008.1.2.4.80"


def retention(study_id: int, expires: date, basis: str = "last-visit+20y") -> Retention:
    return Retention(study_id, "CHRU", expires, basis, date(2004, 3, 1), NOW)


def study_id(uow_factory: UowFactory, uid: str) -> int:
    with uow_factory(read_only=True) as uow:
        study = uow.archive.study(uid)
        assert study is not None and study.id is not None
        return study.id


def test_retention_facts_give_each_study_of_the_records_with_its_size(
        uow_factory: UowFactory, imaging: Imaging) -> None:
    with uow_factory(read_only=True) as uow:
        facts = uow.archive.retention_facts([imaging.records["ICL|2"], 9999])
    assert [(f.study_instance_uid, f.establishment, f.patient_id, f.study_date, f.instances,
             f.size_bytes, f.patient_birth_date) for f in facts] == [
        ("1.2.3", "ICL", "2", date(2024, 3, 1), 1, 1000 + len("1.2.3.1.1"), date(1980, 1, 2)),
        ("1.2.4", "ICL", "2", date(2022, 6, 1), 1, 1000 + len("1.2.4.1.1"), date(1980, 1, 2)),
    ]
    with uow_factory(read_only=True) as uow:
        assert uow.archive.archived_record_ids(0, 2) == sorted(imaging.records.values())[:2]
        last = max(imaging.records.values())
        assert uow.archive.archived_record_ids(last, 10) == []


def test_retention_dates_of_a_batch_of_records_with_their_persons_deaths(
        uow_factory: UowFactory, imaging: Imaging) -> None:
    chru, mrun, icl = (imaging.records[k] for k in ("CHRU|1", "MRUN|7", "ICL|2"))
    with uow_factory() as uow:  # Hélène's death known at the maternity; ICL|2 merged into CHRU|1
        record = uow.records.get(mrun)
        assert record is not None
        record.demographics = dataclasses.replace(record.demographics,
                                                  death_date=date(2030, 5, 1))
        uow.records.save(record)
        merged = uow.records.get(icl)
        assert merged is not None
        merged.retired_into, merged.status = chru, RecordStatus.RETIRED
        merged.last_activity = NOW
        uow.records.save(merged)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        found = {d.record_id: d for d in uow.archive.retention_dates([icl, chru, mrun, 9999])}
    assert sorted(found) == sorted([chru, mrun, icl])
    assert (found[chru].retired_into, found[chru].has_retired, found[chru].death_date,
            found[chru].person_active, found[chru].person_death_date) == (
        None, True, None, True, date(2030, 5, 1))
    assert (found[mrun].has_retired, found[mrun].death_date,
            found[mrun].person_death_date) == (False, date(2030, 5, 1), date(2030, 5, 1))
    assert (found[icl].retired_into, found[icl].has_retired,
            found[icl].last_activity) == (chru, False, NOW)
    assert found[icl].person_active is True  # still linked to Jean, who has no death


def test_the_records_a_retention_change_concerns_have_studies_or_merges(
        uow_factory: UowFactory, imaging: Imaging) -> None:
    chru, icl = imaging.records["CHRU|1"], imaging.records["ICL|2"]
    with uow_factory() as uow:
        original = uow.records.get(chru)
        assert original is not None
        copy = dataclasses.replace(original, id=None, identifier=Identifier("CHRU", "no-study"))
        uow.records.add(copy)
        assert copy.id is not None
        lone = copy.id
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.archive.retention_concerned([chru, icl, lone, 9999]) == {chru, icl}
    with uow_factory() as uow:  # a record without studies merged into another: both concern
        merged = uow.records.get(lone)
        assert merged is not None
        merged.retired_into, merged.status = chru, RecordStatus.RETIRED
        uow.records.save(merged)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.archive.retention_concerned([lone]) == {lone}
        assert uow.archive.retention_concerned([]) == set()


def test_retention_is_saved_replaced_and_reported_by_date_of_expiry(
        uow_factory: UowFactory, imaging: Imaging) -> None:
    s1, s3 = study_id(uow_factory, "1.2.1"), study_id(uow_factory, "1.2.3")
    with uow_factory() as uow:
        assert uow.archive.uncomputed_record_ids("ICL") == [imaging.records["ICL|2"]]
        uow.archive.save_retention([retention(s1, date(2044, 3, 1)),
                                    retention(s3, date(2050, 1, 1))])
        uow.archive.save_retention([retention(s3, date(2040, 1, 1), "28th-birthday")])
        uow.commit()
    with uow_factory(read_only=True) as uow:
        rows = uow.archive.retention_report()
        assert [(r.study_instance_uid, r.expires_on, r.basis) for r in rows] == [
            ("1.2.3", date(2040, 1, 1), "28th-birthday"),
            ("1.2.1", date(2044, 3, 1), "last-visit+20y"),
            ("1.2.2", None, None), ("1.2.4", None, None)]
        first = rows[0]
        assert (first.patient, first.person_id, first.instances, first.size_bytes,
                first.held) == ("2", imaging.jean, 1, 1009, False)
        assert [r.study_instance_uid for r in uow.archive.retention_report(
            "ICL", date(2040, 1, 1))] == ["1.2.3"]
        assert uow.archive.retention_report("ICL", date(2039, 12, 31)) == []
        assert [r.study_instance_uid for r in uow.archive.retention_report(
            study_uids=["1.2.2"])] == ["1.2.2"]
        assert uow.archive.uncomputed_record_ids("ICL") == [imaging.records["ICL|2"]]
        assert uow.archive.uncomputed_record_ids("CHRU") == []


def test_a_deleted_study_leaves_no_row_and_its_files_are_journaled(
        uow_factory: UowFactory, imaging: Imaging) -> None:
    s1 = study_id(uow_factory, "1.2.1")
    with uow_factory() as uow:
        first = uow.archive.instance("1.2.1.2.1")
        assert first is not None
        newer = dataclasses.replace(first, sha256=sha("new"), blob_key="new.dcm", version=2)
        uow.archive.replace_instance(first, newer, NOW)
        uow.archive.save_retention([retention(s1, date(2044, 3, 1))])
        uow.commit()
    with uow_factory() as uow:
        files = uow.archive.instance_files("1.2.1")
        assert [(f.sop_instance_uid, f.version) for f in files] == [
            ("1.2.1.1.1", 1), ("1.2.1.2.1", 1), ("1.2.1.2.1", 2), ("1.2.1.2.2", 1)]
        assert all(f.series_instance_uid for f in files)
        uow.archive.queue_blob_deletions([f.blob_key for f in files], "destruction:1", NOW)
        uow.archive.delete_study("1.2.1")
        uow.archive.delete_study("1.2.1")  # gone already: nothing to do
        uow.commit()
    with uow_factory() as uow:
        assert uow.archive.study("1.2.1") is None
        assert uow.archive.instances(study_uid="1.2.1") == []
        assert uow.archive.instance_history("1.2.1.2.1") == []
        assert [r.study_instance_uid for r in uow.archive.retention_report("CHRU")] == []
        pending = uow.archive.pending_deletions(10)
        assert sorted(p.blob_key for p in pending) == sorted(f.blob_key for f in files)
        assert not any(uow.archive.blob_in_use(p.blob_key) for p in pending)
        assert uow.archive.blob_in_use(imaging.instances["1.2.3.1.1"].blob_key)
        uow.archive.forget_deletions([p.id for p in pending[:2]])
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert len(uow.archive.pending_deletions(10)) == 2
        assert uow.archive.study("1.2.3") is not None


def test_compression_candidates_switch_and_failures(uow_factory: UowFactory,
                                                     imaging: Imaging) -> None:
    due = CompressionCriteria(NOW + timedelta(seconds=1), (EXPLICIT_LITTLE_ENDIAN,))
    with uow_factory() as uow:
        assert len(uow.archive.compression_candidates(due, 100)) == 6
        assert uow.archive.compression_backlog(due) == (6, sum(
            i.size for i in imaging.instances.values()))
        assert uow.archive.compression_candidates(
            CompressionCriteria(NOW, (EXPLICIT_LITTLE_ENDIAN,)), 100) == []
        ct_only = CompressionCriteria(due.received_before, due.from_syntaxes, ("CT",))
        assert {i.sop_instance_uid for i in uow.archive.compression_candidates(ct_only, 100)} \
            == {"1.2.1.2.1", "1.2.1.2.2", "1.2.3.1.1"}
        original = imaging.instances["1.2.3.1.1"]
        new = NewContent("c.dcm", JPEG_LS, 300, sha("c"), original.sha256, sha("pixels"), NOW)
        assert not uow.archive.switch_content("1.2.3.1.1", sha("other"), new)
        assert uow.archive.switch_content("1.2.3.1.1", original.sha256, new)
        uow.archive.mark_compression_failed("1.2.4.1.1", "12 bits in 32", NOW)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        switched = uow.archive.instance("1.2.3.1.1")
        assert switched is not None
        assert (switched.blob_key, switched.transfer_syntax_uid, switched.size,
                switched.sha256, switched.original_sha256, switched.pixel_sha256,
                switched.version) == ("c.dcm", JPEG_LS, 300, sha("c"), original.sha256,
                                      sha("pixels"), 1)
        assert {i.sop_instance_uid for i in uow.archive.compression_candidates(due, 100)} == {
            "1.2.1.2.1", "1.2.1.2.2", "1.2.1.1.1", "1.2.2.1.1"}
        assert [(uid, reason) for uid, reason, _ in uow.archive.compression_failures()] == [
            ("1.2.4.1.1", "12 bits in 32")]
        assert uow.archive.has_content(sha("c")) and not uow.archive.has_content(original.sha256)


def test_fixity_checks_oldest_first_and_flags_failures_until_a_check_passes(
        uow_factory: UowFactory, imaging: Imaging) -> None:
    with uow_factory() as uow:
        first = [i.sop_instance_uid for i in uow.archive.fixity_due(4)]
        assert len(first) == 4
        uow.archive.record_fixity(first, [first[0]], NOW)
        uow.commit()
    with uow_factory() as uow:
        rest = [i.sop_instance_uid for i in uow.archive.fixity_due(2)]
        assert set(rest).isdisjoint(first)
        assert [i.sop_instance_uid for i in uow.archive.fixity_failures()] == [first[0]]
        flagged = uow.archive.instance(first[0])
        assert flagged is not None and flagged.fixity_failed_at == NOW
        uow.archive.record_fixity([first[0]], [], NOW + timedelta(hours=1))
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert uow.archive.fixity_failures() == []


def test_a_study_moves_to_another_patient_with_its_history(uow_factory: UowFactory,
                                                            imaging: Imaging) -> None:
    with uow_factory() as uow:
        target = uow.archive.patient(Identifier("CHRU", "1"))
        assert target is not None and target.id is not None
        uow.archive.move_study("1.2.3", target.id)
        uow.archive.add_reassignment(Reassignment(
            "1.2.3", Identifier("ICL", "2"), Identifier("CHRU", "1"), "iv", "wrong patient",
            NOW))
        uow.commit()
    with uow_factory(read_only=True) as uow:
        [summary] = uow.archive.find_studies(__import__("mpi.archive").archive.StudyFilter(
            study_uids=("1.2.3",)))
        assert (str(summary.received_as), summary.person_id) == ("CHRU|1", imaging.helene)
        [moved] = uow.archive.reassignments("1.2.3")
        assert (str(moved.from_patient), str(moved.to_patient), moved.by, moved.reason,
                moved.at) == ("ICL|2", "CHRU|1", "iv", "wrong patient", NOW)
        assert moved.id is not None
        assert uow.archive.reassignments("1.2.1") == []


def test_holds_are_added_listed_and_released(uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        person = LegalHold("claim", "TA Nancy 24/001", "arch", NOW, person_id=7)
        study = LegalHold("audit", "CNIL-2", "arch", NOW, study_instance_uid="1.2.3")
        uow.lifecycle.add_hold(person)
        uow.lifecycle.add_hold(study)
        uow.commit()
    assert person.id is not None and study.id is not None
    with uow_factory() as uow:
        stored = uow.lifecycle.hold(person.id)
        assert stored == person
        stored.released_by, stored.released_at, stored.release_reason = "arch2", NOW, "over"
        uow.lifecycle.save_hold(stored)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        assert [h.id for h in uow.lifecycle.holds()] == [study.id]
        assert [h.id for h in uow.lifecycle.holds(active_only=False)] == [person.id, study.id]
        assert uow.lifecycle.hold(9999) is None


def test_proposals_keep_their_items_approvals_visa_and_outcomes(
        uow_factory: UowFactory) -> None:
    items = [ProposalItem(uid, "42", date(2000, 1, 2), date(2000, 1, 2), date(2020, 1, 2),
                          "last-visit+20y", 1000, 3) for uid in ("1.9.2", "1.9.1")]
    proposal = DestructionProposal("CHRU", date(2026, 1, 1), "arch", NOW, items=items)
    with uow_factory() as uow:
        uow.lifecycle.add_proposal(proposal)
        uow.commit()
    assert proposal.id is not None
    with uow_factory() as uow:
        stored = uow.lifecycle.proposal(proposal.id)
        assert stored is not None
        assert [i.study_instance_uid for i in stored.items] == ["1.9.1", "1.9.2"]
        stored.approvals += [Approval("dim", "dr.dim", NOW, False),
                             Approval("director", "mme.dir", NOW + timedelta(hours=1), True)]
        stored.status = ProposalStatus.VISAED
        stored.visa_reference, stored.visa_by, stored.visa_at = "AD54-2026-7", "arch", NOW
        stored.items[0].outcome = ItemOutcome.KEPT
        stored.items[0].outcome_reason = "a new stay"
        uow.lifecycle.save_proposal(stored)
        uow.commit()
    with uow_factory(read_only=True) as uow:
        again = uow.lifecycle.proposal(proposal.id)
        assert again == stored
        [listed] = uow.lifecycle.proposals("CHRU")
        assert (listed.id, listed.status, [a.role for a in listed.approvals]) == (
            proposal.id, ProposalStatus.VISAED, ["dim", "director"])
        assert uow.lifecycle.proposals("ICL") == []
        assert uow.lifecycle.proposal(9999) is None


def test_tombstones_are_found_by_study_and_listed_latest_first(
        uow_factory: UowFactory) -> None:
    with uow_factory() as uow:
        proposal = DestructionProposal("CHRU", date(2026, 1, 1), "arch", NOW)
        uow.lifecycle.add_proposal(proposal)
        for number, uid in enumerate(("1.9.1", "1.9.2")):
            uow.lifecycle.add_tombstone(Tombstone(
                uid, "CHRU", date(2000, 1, 2), NOW, NOW, 1, 10, (f"{uid}.1",),
                ({"sop_instance_uid": f"{uid}.1.1", "version": 1, "sha256": sha(uid)},),
                proposal.id or 0, {"proposed_by": "arch"}, "arch",
                NOW + timedelta(minutes=number)))
        uow.commit()
    with uow_factory(read_only=True) as uow:
        found = uow.lifecycle.tombstone("1.9.1")
        assert found is not None and found.files[0]["sha256"] == sha("1.9.1")
        assert (found.series, found.decision, found.destroyed_at) == (
            ("1.9.1.1",), {"proposed_by": "arch"}, NOW)
        assert [t.study_instance_uid for t in uow.lifecycle.tombstones()] == ["1.9.2", "1.9.1"]
        assert uow.lifecycle.tombstones("ICL") == []
        assert uow.lifecycle.tombstone("1.9.3") is None
