"""Accepting objects into the archive (``ArchiveService.accept``) on in-memory fakes: which
record an object is filed under, duplicates and new versions, what is refused with nothing
stored, and the dates kept for retention."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.archive import (
    ArchiveService,
    InstanceHeader,
    PatientAsReceived,
    Sender,
    StoreOutcome,
    StoreResult,
)
from mpi.errors import (
    ForbiddenError,
    InvalidObjectError,
    MPIError,
    StudyOwnershipError,
    UnknownAuthorityError,
)
from mpi.identity import Actor, IdentityService, MatchDecision, RecordData, RegisterRecord
from mpi.model import Identifier, LinkMethod, SourceRecord
from mpi.ports import UnitOfWork
from tests.fakes import FakeBlobStore, FakeUnitOfWork, FixedClock, fake_uow_factory

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
CHRU = Sender("CHRU", "CHRU")
MRUN = Sender("MRUN", "MRUN")
HELENE = PatientAsReceived("55", family_name="DUPONT", given_names=("HELENE",),
                           birth_date=date(1980, 1, 2), sex="F")


class LinkingMatcher:
    """Links every record it is asked about to ``person_id`` (a new person while it is None),
    and remembers what it was asked: whether the archive goes through matching is what these
    tests look at, the matching rules have tests of their own."""

    def __init__(self) -> None:
        self.person_id: int | None = None
        self.asked: list[Identifier] = []

    def match(self, uow: UnitOfWork, record: SourceRecord) -> MatchDecision:
        self.asked.append(record.identifier)
        if self.person_id is None:
            return MatchDecision(None, LinkMethod.NEW)
        return MatchDecision(self.person_id, LinkMethod.AUTO, 0.99, {"family_name": "exact"})


def header(sop: str = "1.2.3.1.1", study: str = "1.2.3", series: str = "1.2.3.1",
           patient: PatientAsReceived = HELENE, **changes: object) -> InstanceHeader:
    values: dict[str, object] = dict(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=sop,
        study_instance_uid=study, series_instance_uid=series,
        transfer_syntax_uid="1.2.840.10008.1.2.1", patient=patient,
        study_date=date(2024, 3, 1), modality="CT", series_number=1, instance_number=1)
    values.update(changes)
    return InstanceHeader(**values)  # type: ignore[arg-type]


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass
class Archive:
    """The archive on fakes, with the identity service that registers its patients."""

    factory: Callable[..., FakeUnitOfWork]
    blobs: FakeBlobStore
    matcher: LinkingMatcher
    identity: IdentityService
    service: ArchiveService

    def store(self, header: InstanceHeader, content: bytes,
              sender: Sender = CHRU) -> StoreResult:
        with self.factory() as uow:
            result = self.service.accept(uow, header, content, sha256(content), sender)
            uow.commit()
        return result

    def refuse(self, error: type[MPIError], header: InstanceHeader, content: bytes,
               sender: Sender = CHRU) -> None:
        """Accept an object that must be refused with ``error``, as the DICOM adapter does
        (the unit of work is left without commit), then check that nothing of it was stored:
        neither in the index and the identity records nor in the blob store, which no
        rollback cleans."""
        blobs_before = dict(self.blobs.blobs)
        with self.uow as uow:
            before = self.archive_state(uow)
        with self.factory() as uow, pytest.raises(error):
            self.service.accept(uow, header, content, sha256(content), sender)
        with self.uow as uow:
            assert self.archive_state(uow) == before
        assert self.blobs.blobs == blobs_before

    @staticmethod
    def archive_state(uow: FakeUnitOfWork) -> tuple[object, ...]:
        store = uow.store
        return (dict(store.records), dict(store.links), dict(store.archive_patients),
                dict(store.archive_studies), dict(store.archive_series),
                dict(store.archive_instances), list(store.archive_history))

    def register(self, authority: str, value: str, **demographics: object) -> SourceRecord:
        """A record as an ADT feed registers it."""
        with self.factory() as uow:
            record = self.identity.register(
                uow, RegisterRecord(RecordData(Identifier(authority, value), demographics)),
                Actor(f"hl7:{authority}", authority))
            uow.commit()
        return record

    @property
    def uow(self) -> FakeUnitOfWork:
        """A read-only unit of work, for looking at what was committed."""
        return self.factory(read_only=True)


@pytest.fixture
def archive() -> Archive:
    clock = FixedClock()
    matcher = LinkingMatcher()
    identity = IdentityService(REGISTRY, clock, matcher)
    blobs = FakeBlobStore()
    return Archive(fake_uow_factory(), blobs, matcher, identity,
                   ArchiveService(REGISTRY, identity, blobs, clock.now))


# -- which record an object is filed under ---------------------------------------------------


def test_a_new_patient_becomes_a_provisional_record_of_the_sender_s_domain_linked_by_matching(
    archive: Archive,
) -> None:
    known = archive.register("CHRU", "1", birth_family_name="DUPONT")
    with archive.uow as uow:
        link = uow.links.for_record(known.id)
        assert link is not None
    archive.matcher.person_id = link.person_id
    result = archive.store(header(patient=HELENE), b"object", MRUN)
    assert (result.outcome, result.version) == (StoreOutcome.STORED, 1)
    with archive.uow as uow:
        record = uow.records.by_identifier(Identifier("MRUN", "55"))
        assert record is not None and result.record_id == record.id
        assert record.reliability == ("PROV",)
        d = record.demographics
        assert (d.birth_family_name, d.given_names, d.birth_date, d.sex) == (
            "DUPONT", ("HELENE",), date(1980, 1, 2), "F")
        linked = uow.links.for_record(record.id)
        assert linked is not None
        assert (linked.person_id, linked.method) == (link.person_id, LinkMethod.AUTO)
        patient = uow.archive.patient(Identifier("MRUN", "55"))
        assert patient is not None and patient.record_id == record.id
        stored = uow.archive.instance("1.2.3.1.1")
        assert stored is not None and stored.record_id == record.id
    assert archive.matcher.asked[-1] == Identifier("MRUN", "55")
    assert archive.blobs.blobs == {stored.blob_key: b"object"}


def test_a_new_patient_nobody_matches_gets_a_person_of_its_own(archive: Archive) -> None:
    known = archive.register("CHRU", "1", birth_family_name="DUPONT")
    result = archive.store(header(patient=PatientAsReceived("56", sex="O")), b"object")
    with archive.uow as uow:
        record = uow.records.get(result.record_id)
        assert record is not None and record.identifier == Identifier("CHRU", "56")
        assert record.demographics.sex == "U"  # DICOM O has no HL7 counterpart but unknown
        link, other = uow.links.for_record(result.record_id), uow.links.for_record(known.id)
        assert link is not None and other is not None
        assert link.method is LinkMethod.NEW and link.person_id != other.person_id


def test_an_object_of_a_known_patient_reuses_its_record(archive: Archive) -> None:
    known = archive.register("CHRU", "55", birth_family_name="DUPOND", given_names=("Hélène",))
    asked = list(archive.matcher.asked)
    archive.matcher.person_id = 999  # would link a new record elsewhere
    first = archive.store(header(sop="1.2.3.1.1"), b"first")
    second = archive.store(header(sop="1.2.3.1.2", instance_number=2), b"second")
    assert first.record_id == second.record_id == known.id
    assert archive.matcher.asked == asked  # no record registered, nothing matched
    with archive.uow as uow:
        record = uow.records.get(known.id or 0)
        assert record is not None and record.version == 1  # the feed's record is not rewritten
        assert record.demographics.birth_family_name == "DUPOND"
        assert len(uow.store.archive_patients) == 1


def test_an_establishment_s_sender_files_nothing_in_another_domain(
    archive: Archive,
) -> None:
    # Even under a patient the other domain knows: the sender's establishment (proven by its
    # certificate or its loopback configuration) writes in its own identifier domain only; a
    # sender of no establishment (an import) may file it.
    known = archive.register("MRUN", "M7", birth_family_name="DUPONT")
    with archive.uow as uow:
        before = Archive.archive_state(uow)
    with pytest.raises(ForbiddenError):
        archive.store(header(patient=PatientAsReceived("M7", issuer="MRUN")), b"object", CHRU)
    with archive.uow as uow:
        assert Archive.archive_state(uow) == before
    result = archive.store(header(patient=PatientAsReceived("M7", issuer="MRUN")), b"object",
                           Sender("import", None))
    assert result.record_id == known.id
    with archive.uow as uow:
        assert uow.archive.patient(Identifier("MRUN", "M7")) is not None


# -- duplicates and new versions -------------------------------------------------------------


def test_the_same_bytes_again_are_a_duplicate_and_nothing_is_written(archive: Archive) -> None:
    first = archive.store(header(), b"object")
    with archive.uow as uow:
        before = Archive.archive_state(uow)
        blobs_before = dict(archive.blobs.blobs)
    again = archive.store(header(), b"object", MRUN)
    assert (again.outcome, again.version, again.record_id) == (
        StoreOutcome.DUPLICATE, 1, first.record_id)
    with archive.uow as uow:
        assert Archive.archive_state(uow) == before  # not even the reception dates
    assert archive.blobs.blobs == blobs_before


def test_other_bytes_for_a_known_sop_uid_replace_it_and_keep_the_previous_in_its_history(
    archive: Archive,
) -> None:
    archive.store(header(), b"version one")
    with archive.uow as uow:
        original = uow.archive.instance("1.2.3.1.1")
    result = archive.store(header(), b"version two")
    assert (result.outcome, result.version) == (StoreOutcome.REPLACED, 2)
    with archive.uow as uow:
        current = uow.archive.instance("1.2.3.1.1")
        (previous,) = uow.archive.instance_history("1.2.3.1.1")
    assert original is not None and current is not None
    assert (current.version, current.sha256, current.id) == (
        2, sha256(b"version two"), original.id)
    assert (previous.version, previous.sha256, previous.blob_key) == (
        1, sha256(b"version one"), original.blob_key)
    assert archive.blobs.blobs == {original.blob_key: b"version one",
                                   current.blob_key: b"version two"}


# -- refusals: nothing stored ----------------------------------------------------------------


def test_a_study_stored_for_another_patient_is_refused_and_leaves_no_blob(
    archive: Archive,
) -> None:
    archive.store(header(), b"helene's")
    archive.refuse(StudyOwnershipError,
                   header(sop="1.2.3.1.2", patient=PatientAsReceived("56")), b"someone else's")


def test_a_series_of_another_study_is_refused(archive: Archive) -> None:
    archive.store(header(study="1.2.3", series="1.2.3.1"), b"first")
    archive.refuse(InvalidObjectError, header(sop="1.2.4.1.1", study="1.2.4", series="1.2.3.1"),
                   b"second")


def test_an_instance_sent_again_in_another_series_is_refused_and_its_new_blob_removed(
    archive: Archive,
) -> None:
    archive.store(header(series="1.2.3.1"), b"first")
    # this refusal comes after the new bytes were written: they must go again
    archive.refuse(InvalidObjectError, header(series="1.2.3.2"), b"other content")


def test_a_sender_may_not_create_a_patient_in_another_establishment_s_domain(
    archive: Archive,
) -> None:
    archive.refuse(ForbiddenError, header(patient=PatientAsReceived("M7", issuer="MRUN")),
                   b"object", CHRU)
    assert archive.matcher.asked == []


@pytest.mark.parametrize(
    "issuer",
    [
        PatientAsReceived("180012A00100145", issuer="ASIP-SANTE-INS-NIR"),  # national
        PatientAsReceived("180012A00100145", issuer_oid="1.2.250.1.213.1.4.8"),  # national
        PatientAsReceived("0000000001", issuer="GCS-ESANTE-LORRAINE"),  # master
        PatientAsReceived("55", issuer="ELSEWHERE"),  # undeclared
    ],
)
def test_an_issuer_that_is_not_an_establishment_is_refused(
    archive: Archive, issuer: PatientAsReceived
) -> None:
    archive.refuse(UnknownAuthorityError, header(patient=issuer), b"object")


@pytest.mark.parametrize(
    "changes",
    [
        {"sop_instance_uid": ""},
        {"study_instance_uid": ""},
        {"series_instance_uid": ""},
        {"sop_class_uid": ""},
        {"transfer_syntax_uid": ""},
        {"study_instance_uid": "1.2.03"},  # not a UID: a leading zero
        {"patient": PatientAsReceived("")},
        {"patient": PatientAsReceived("  ")},
    ],
)
def test_an_object_without_its_uids_or_patient_id_is_refused(
    archive: Archive, changes: dict[str, object]
) -> None:
    archive.refuse(InvalidObjectError, header(**changes), b"object")


# -- dates kept for retention ----------------------------------------------------------------


def test_the_patient_and_study_keep_the_last_study_date_and_the_first_and_last_reception(
    archive: Archive,
) -> None:
    archive.store(header(sop="1.2.3.1.1", study="1.2.3", study_date=date(2023, 5, 1)), b"1")
    archive.store(header(sop="1.2.3.1.2", study="1.2.3", study_date=date(2023, 5, 1)), b"2")
    # an older study received later does not make the last study date older
    archive.store(header(sop="1.2.4.1.1", study="1.2.4", series="1.2.4.1",
                         study_date=date(2021, 1, 1)), b"3")
    with archive.uow as uow:
        first, second, third = (uow.archive.instance(sop).received_at  # type: ignore[union-attr]
                                for sop in ("1.2.3.1.1", "1.2.3.1.2", "1.2.4.1.1"))
        patient = uow.archive.patient(Identifier("CHRU", "55"))
        newer, older = uow.archive.study("1.2.3"), uow.archive.study("1.2.4")
    assert first < second < third
    assert patient is not None and newer is not None and older is not None
    assert patient.last_study_date == date(2023, 5, 1)
    assert (patient.first_received_at, patient.last_received_at) == (first, third)
    assert (newer.first_received_at, newer.last_received_at) == (first, second)
    assert (older.first_received_at, older.last_received_at) == (third, third)
    assert (newer.study_date, older.study_date) == (date(2023, 5, 1), date(2021, 1, 1))


def test_the_patient_as_received_keeps_what_the_latest_object_said(archive: Archive) -> None:
    archive.store(header(sop="1.2.3.1.1"), b"1")
    archive.store(header(sop="1.2.3.1.2", patient=PatientAsReceived(
        "55", family_name="MARTIN", birth_date=None)), b"2")
    with archive.uow as uow:
        patient = uow.archive.patient(Identifier("CHRU", "55"))
    assert patient is not None
    # a value the later object lacks is kept from the earlier one
    assert (patient.family_name, patient.given_names, patient.birth_date, patient.sex) == (
        "MARTIN", ("HELENE",), date(1980, 1, 2), "F")
