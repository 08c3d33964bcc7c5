"""The archive domain: studies, series and instances as received, whose patient they are,
and how a patient is presented to whoever asks.

A stored study points at the source record it arrived with (its authority and PatientID, the
*patient as received*); the person is found through that record's link at read time. A merge,
an identifier change, a link or an unlink therefore moves every study at the cost of a few
link rows, and no stored object is ever rewritten. Originals stay byte for byte as received.

- :mod:`mpi.archive.model`: the entities (plain data);
- :mod:`mpi.archive.ports`: the archive's repository, the blob store, its unit of work;
- :mod:`mpi.archive.ingest`: accepting an object (:class:`ArchiveService`);
- :mod:`mpi.archive.retention`: R.1112-7, the end of retention of each study;
- :mod:`mpi.archive.lifecycle`: who may act, legal holds, destruction proposals, approvals,
  visa, destruction and tombstones, reassignment of a misfiled study;
- :mod:`mpi.archive.reading`: which persons and studies answer a query, and the coercion plan
  of each patient for the asker's domain (the DICOM adapter applies it to the header and
  streams the pixel data through untouched).

The archive builds on the identity core; the identity core never imports it.
"""

from mpi.archive.ingest import ArchiveService
from mpi.archive.model import (
    Approval,
    ArchivedPatient,
    DestructionProposal,
    InstanceHeader,
    ItemOutcome,
    LegalHold,
    PatientAsReceived,
    PatientCoercion,
    ProposalItem,
    ProposalStatus,
    Reassignment,
    RecordDates,
    Retention,
    RetentionRow,
    Sender,
    SeriesSummary,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    StoreOutcome,
    StoreResult,
    StudyFacts,
    StudyFilter,
    StudySummary,
    Tombstone,
    blob_key,
    is_valid_uid,
)
from mpi.archive.ports import (
    ArchiveRepository,
    ArchiveUnitOfWork,
    BlobStore,
    CompressionCriteria,
    LifecycleRepository,
    NewContent,
    PendingDeletion,
    StagedBlob,
)
from mpi.archive.reading import (
    LEVELS,
    ArchiveMatch,
    ArchiveQuery,
    ArchiveReader,
    asker_authority,
    coercion_for,
    find_studies,
    owner_views,
    studies_of_person,
)

__all__ = [
    "Approval",
    "DestructionProposal",
    "ItemOutcome",
    "LegalHold",
    "ProposalItem",
    "ProposalStatus",
    "Reassignment",
    "Retention",
    "RetentionRow",
    "RecordDates",
    "StudyFacts",
    "Tombstone",
    "CompressionCriteria",
    "LifecycleRepository",
    "NewContent",
    "PendingDeletion",
    "ArchiveService",
    "ArchiveReader",
    "ArchiveQuery",
    "ArchiveMatch",
    "LEVELS",
    "ArchiveRepository",
    "ArchiveUnitOfWork",
    "BlobStore",
    "StagedBlob",
    "ArchivedPatient",
    "InstanceHeader",
    "PatientAsReceived",
    "PatientCoercion",
    "Sender",
    "SeriesSummary",
    "StoredInstance",
    "StoredSeries",
    "StoredStudy",
    "StoreOutcome",
    "StoreResult",
    "StudyFilter",
    "StudySummary",
    "asker_authority",
    "blob_key",
    "coercion_for",
    "find_studies",
    "is_valid_uid",
    "owner_views",
    "studies_of_person",
]
