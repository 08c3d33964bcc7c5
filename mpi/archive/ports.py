"""The ports of the archive: its index, where the bytes of objects live, and the unit of work
that holds both beside the identity repositories (implemented in ``adapters/``)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import BinaryIO, Protocol

from mpi.archive.model import (
    ArchivedPatient,
    DestructionProposal,
    LegalHold,
    Reassignment,
    RecordDates,
    Retention,
    RetentionRow,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    StudyFacts,
    StudyFilter,
    StudySummary,
    Tombstone,
)
from mpi.model import Identifier
from mpi.ports import UnitOfWork

__all__ = ["ArchiveRepository", "BlobStore", "StagedBlob", "ArchiveUnitOfWork",
           "LifecycleRepository",
           "CompressionCriteria", "PendingDeletion", "NewContent"]


@dataclass(frozen=True)
class CompressionCriteria:
    """Which stored instances are due for lossless compression: received before
    ``received_before``, stored in one of the ``from_syntaxes`` (the uncompressed ones), of
    these modalities and SOP classes when given, never failed before."""

    received_before: datetime
    from_syntaxes: tuple[str, ...]
    modalities: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PendingDeletion:
    """A blob that must go (the write-ahead journal of file deletions): the file of a
    destroyed study, the original of a compressed instance, or a compressed copy never
    adopted. Deleting it and forgetting the row may be repeated."""

    id: int
    blob_key: str
    reason: str


@dataclass(frozen=True)
class NewContent:
    """The verified compressed copy that replaces an instance's stored file."""

    blob_key: str
    transfer_syntax_uid: str
    size: int
    sha256: str
    original_sha256: str
    pixel_sha256: str
    compressed_at: datetime


class StagedBlob(Protocol):
    """The bytes of a blob written and flushed to storage before the transaction that indexes
    them, not yet visible under their key: the slow part of storing an object done outside
    the database's locks."""

    key: str

    def commit(self) -> None:
        """Make the bytes visible under the key (atomically; again after a delete of the key,
        for a retried transaction). Raises OSError."""
        ...

    def withdraw(self) -> None:
        """Make committed bytes invisible again (a failed transaction); what they were made
        from stays (a referenced file is not deleted). Raises OSError."""
        ...

    def discard(self) -> None:
        """Forget bytes never made visible; nothing happens to committed ones."""
        ...


class BlobStore(Protocol):
    """Where the archive keeps the bytes of objects, by key (``study/series/sop.hash.dcm``).
    A written blob is complete or absent, never partial."""

    def put(self, key: str, data: bytes) -> None:
        """Store the bytes durably under the key (atomically: visible whole or not at all).
        Raises OSError when the storage fails."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Read a blob. Raises FileNotFoundError for an unknown key."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove a blob; an absent one is not an error."""
        ...


class ArchiveRepository(Protocol):
    """The index of the archive: patients as received, studies, series, instances."""

    def patient(self, identifier: Identifier) -> ArchivedPatient | None: ...

    def add_patient(self, patient: ArchivedPatient) -> None:
        """Store a new patient as received: assigns ``id``."""
        ...

    def save_patient(self, patient: ArchivedPatient) -> None: ...

    def study(self, study_uid: str) -> StoredStudy | None: ...

    def add_study(self, study: StoredStudy) -> None: ...

    def save_study(self, study: StoredStudy) -> None: ...

    def series(self, series_uid: str) -> StoredSeries | None: ...

    def add_series(self, series: StoredSeries) -> None: ...

    def instance(self, sop_uid: str) -> StoredInstance | None:
        """The current version of an instance, with its study and series UIDs and record."""
        ...

    def add_instance(self, instance: StoredInstance) -> None: ...

    def replace_instance(self, previous: StoredInstance, current: StoredInstance,
                         when: datetime) -> None:
        """Make ``current`` the instance's content and keep ``previous`` in its history."""
        ...

    def instance_history(self, sop_uid: str) -> list[StoredInstance]:
        """Earlier versions of an instance, oldest first."""
        ...

    def has_content(self, sha256: str) -> bool:
        """Whether some stored instance (current version) has exactly this content."""
        ...

    def find_studies(self, criteria: StudyFilter) -> list[StudySummary]:
        """Studies matching the criteria, newest first, with their series and the current
        person of the record each arrived with."""
        ...

    def instances(self, study_uid: str | None = None, series_uid: str | None = None,
                  sop_uids: Iterable[str] = (), person_id: int | None = None,
                  limit: int = 100_000) -> list[StoredInstance]:
        """Current instances under the given study / series / SOP UIDs / person, ordered by
        study, series and instance number."""
        ...

    # -- retention -----------------------------------------------------------------------

    def retention_facts(self, record_ids: Iterable[int]) -> list[StudyFacts]:
        """Every study of the patients as received designating these records, with its
        size and number of instances (current versions), by study id."""
        ...

    def retention_concerned(self, record_ids: Iterable[int]) -> set[int]:
        """The records among these whose studies' retention a change of theirs can move:
        designated by a patient as received, or in a merge (retired into another record, or
        others retired into them). Most records of a feed are neither."""
        ...

    def retention_dates(self, record_ids: Iterable[int]) -> list[RecordDates]:
        """The dates the retention rule reads of these records (unknown ids left out), by
        record id."""
        ...

    def archived_record_ids(self, after: int, limit: int) -> list[int]:
        """The distinct records that patients as received designate, above ``after``,
        ascending (the retention sweep's pages)."""
        ...

    def save_retention(self, rows: Iterable[Retention]) -> None:
        """Store (insert or replace) the retention of each study."""
        ...

    def retention_report(self, establishment: str | None = None,
                         expiring_by: date | None = None, study_uids: Iterable[str] = (),
                         limit: int = 1_000_000) -> list[RetentionRow]:
        """Studies with their retention (None where never computed), the patient's IPP,
        sizes and current person, optionally of one establishment, of these studies, and
        expiring on or before a date, by date of expiry (never computed last) then study UID. ``held`` is left False (holds are the
        lifecycle's)."""
        ...

    def uncomputed_record_ids(self, establishment: str | None = None) -> list[int]:
        """Records of studies whose retention was never computed."""
        ...

    # -- destruction ---------------------------------------------------------------------

    def instance_files(self, study_uid: str) -> list[StoredInstance]:
        """Every version of every instance of a study (current and earlier), by SOP
        Instance UID and version."""
        ...

    def delete_study(self, study_uid: str) -> None:
        """Remove a study's index rows: its instances and their history, series, retention
        and reassignments (the files are the caller's, through the deletion journal)."""
        ...

    def queue_blob_deletions(self, keys: Iterable[str], reason: str, when: datetime) -> None:
        """Journal blobs that must be deleted, in the current transaction."""
        ...

    def pending_deletions(self, limit: int) -> list[PendingDeletion]:
        """Journaled deletions, oldest first."""
        ...

    def forget_deletions(self, ids: Iterable[int]) -> None:
        """Drop journaled deletions once their blobs are gone."""
        ...

    def blob_in_use(self, key: str) -> bool:
        """Whether an instance (current or earlier version) still points at this blob."""
        ...

    # -- compression and fixity ----------------------------------------------------------

    def compression_candidates(self, criteria: CompressionCriteria,
                               limit: int) -> list[StoredInstance]:
        """Current instances due for compression, oldest received first."""
        ...

    def compression_backlog(self, criteria: CompressionCriteria) -> tuple[int, int]:
        """(instances, bytes) due for compression."""
        ...

    def switch_content(self, sop_uid: str, expected_sha256: str, new: NewContent) -> bool:
        """Point the instance at its compressed copy (same SOP Instance UID, same version),
        keeping the original's and the pixels' hashes. False, and nothing changed, when the
        instance's content is no longer ``expected_sha256`` (replaced meanwhile)."""
        ...

    def mark_compression_failed(self, sop_uid: str, reason: str, when: datetime) -> None:
        """Remember that an instance could not be compressed or verified: it stays as it
        is and is not tried again."""
        ...

    def compression_failures(self) -> list[tuple[str, str, datetime]]:
        """(SOP Instance UID, reason, when) of every instance that could not be compressed."""
        ...

    def fixity_due(self, limit: int) -> list[StoredInstance]:
        """Current instances, the longest unchecked first (never checked first)."""
        ...

    def record_fixity(self, checked: Iterable[str], failed: Iterable[str],
                      when: datetime) -> None:
        """Remember when these instances (SOP UIDs) were checked and which failed (flagged
        until a later check passes)."""
        ...

    def fixity_failures(self) -> list[StoredInstance]:
        """Instances flagged by a fixity check."""
        ...

    # -- corrections ---------------------------------------------------------------------

    def move_study(self, study_uid: str, to_patient_id: int) -> None:
        """File a study under another patient as received (its ``ArchivedPatient`` row)."""
        ...

    def add_reassignment(self, reassignment: Reassignment) -> None: ...

    def reassignments(self, study_uid: str) -> list[Reassignment]:
        """A study's reassignments, oldest first."""
        ...


class LifecycleRepository(Protocol):
    """Legal holds, destruction proposals with their approvals, and tombstones."""

    def add_hold(self, hold: LegalHold) -> None:
        """Store a hold: assigns ``id``."""
        ...

    def hold(self, hold_id: int) -> LegalHold | None: ...

    def save_hold(self, hold: LegalHold) -> None: ...

    def holds(self, active_only: bool = True) -> builtins.list[LegalHold]:
        """Holds, oldest first."""
        ...

    def add_proposal(self, proposal: DestructionProposal) -> None:
        """Store a proposal with its items: assigns ``id``."""
        ...

    def proposal(self, proposal_id: int) -> DestructionProposal | None:
        """A proposal with its items (by study UID) and approvals."""
        ...

    def save_proposal(self, proposal: DestructionProposal) -> None:
        """Store a proposal's status, approvals, visa and items' outcomes."""
        ...

    def proposals(self, establishment: str | None = None) -> builtins.list[DestructionProposal]:
        """Proposals, newest first (without their items)."""
        ...

    def add_tombstone(self, tombstone: Tombstone) -> None: ...

    def tombstone(self, study_uid: str) -> Tombstone | None: ...

    def tombstones(self, establishment: str | None = None,
                   limit: int = 100_000) -> builtins.list[Tombstone]:
        """Tombstones, the latest destroyed first."""
        ...


class ArchiveUnitOfWork(UnitOfWork, Protocol):
    """One transaction over the identity repositories and the archive's index: storing an
    object may register its patient as a provisional record in the same transaction."""

    @property
    def archive(self) -> ArchiveRepository: ...

    @property
    def lifecycle(self) -> LifecycleRepository: ...
