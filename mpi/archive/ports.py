"""The ports of the archive: its index, where the bytes of objects live, and the unit of work
that holds both beside the identity repositories (implemented in ``adapters/``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import BinaryIO, Protocol

from mpi.archive.model import (
    ArchivedPatient,
    StoredInstance,
    StoredSeries,
    StoredStudy,
    StudyFilter,
    StudySummary,
)
from mpi.model import Identifier
from mpi.ports import UnitOfWork

__all__ = ["ArchiveRepository", "BlobStore", "ArchiveUnitOfWork"]


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


class ArchiveUnitOfWork(UnitOfWork, Protocol):
    """One transaction over the identity repositories and the archive's index: storing an
    object may register its patient as a provisional record in the same transaction."""

    @property
    def archive(self) -> ArchiveRepository: ...
