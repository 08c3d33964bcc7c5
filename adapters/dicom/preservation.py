"""Background preservation of stored objects: lossless compression with its backlog, and
fixity (stored files re-read against their SHA-256).

Compression of one instance, crash-safe at every step: the copy's key is journaled for
deletion first (so a copy never adopted is removed later), the copy is written atomically,
the index is switched in one transaction that journals the original for deletion, and the
journal is then purged (a blob the index points at is never deleted). Ingest never waits for
any of it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from adapters.dicom.compress import (
    COMPRESSIBLE_SYNTAXES,
    CompressionFailedError,
    compress_object,
)
from mpi.archive import ArchiveUnitOfWork, BlobStore, CompressionCriteria, NewContent
from mpi.archive.lifecycle import purge_deletions
from mpi.audit import AuditAction, AuditEvent
from mpi.ports import AuditTrail, Clock

__all__ = ["CompressionSettings", "CompressionPass", "Compressor", "FixityPass",
           "check_fixity"]

log = logging.getLogger("mpi.archive")


@dataclass(frozen=True)
class CompressionSettings:
    transfer_syntax: str  # a lossless UID
    after_days: float = 30.0
    modalities: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()

    def criteria(self, now: datetime, min_age_days: float | None = None) -> CompressionCriteria:
        days = self.after_days if min_age_days is None else min_age_days
        return CompressionCriteria(now - timedelta(days=days), COMPRESSIBLE_SYNTAXES,
                                   self.modalities, self.sop_classes)


@dataclass
class CompressionPass:
    compressed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0

    @property
    def ratio(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else 0.0


class Compressor:
    """Compresses the instances due, one at a time (each in its own transactions)."""

    def __init__(self, uow_factory: Callable[..., ArchiveUnitOfWork], blobs: BlobStore,
                 clock: Clock, settings: CompressionSettings) -> None:
        self.uow_factory = uow_factory
        self.blobs = blobs
        self.clock = clock
        self.settings = settings

    def backlog(self, min_age_days: float | None = None) -> tuple[int, int]:
        with self.uow_factory(read_only=True) as uow:
            return uow.archive.compression_backlog(
                self.settings.criteria(self.clock.now(), min_age_days))

    def run(self, limit: int = 100, *, min_age_days: float | None = None,
            dry_run: bool = False,
            progress: Callable[[int], None] | None = None) -> CompressionPass:
        """Compress up to ``limit`` due instances; ``dry_run`` encodes and verifies without
        writing anything. Failures are recorded and never raised."""
        import time

        started = time.perf_counter()
        with self.uow_factory(read_only=True) as uow:
            due = uow.archive.compression_candidates(
                self.settings.criteria(self.clock.now(), min_age_days), limit)
        report = CompressionPass()
        for instance in due:
            try:
                with self.blobs.open(instance.blob_key) as handle:
                    data = handle.read()
                if hashlib.sha256(data).hexdigest() != instance.sha256:
                    raise CompressionFailedError("the stored file does not match its SHA-256")
                copy = compress_object(data, self.settings.transfer_syntax)
            except (CompressionFailedError, OSError) as exc:
                report.failed.append((instance.sop_instance_uid, str(exc)))
                if not dry_run:
                    self._failed(instance.sop_instance_uid, str(exc))
            else:
                if dry_run or self._adopt(instance.sop_instance_uid, instance.blob_key,
                                          instance.sha256, copy):
                    report.compressed += 1
                    report.bytes_before += len(data)
                    report.bytes_after += len(copy.data)
            if progress is not None:
                progress(1)
        if not dry_run:
            purge_deletions(self.uow_factory, self.blobs)
        report.seconds = time.perf_counter() - started
        return report

    def _failed(self, sop_uid: str, reason: str) -> None:
        log.warning("instance %s left uncompressed: %s", sop_uid, reason)
        with self.uow_factory() as uow:
            uow.archive.mark_compression_failed(sop_uid, reason, self.clock.now())
            uow.commit()

    def _adopt(self, sop_uid: str, old_key: str, old_sha: str, copy: object) -> bool:
        from adapters.dicom.compress import Compressed

        assert isinstance(copy, Compressed)
        folder = old_key.rsplit("/", 1)[0]
        key = f"{folder}/{sop_uid}.{copy.sha256[:16]}.dcm"
        now = self.clock.now()
        with self.uow_factory() as uow:  # never adopted unless the switch commits
            uow.archive.queue_blob_deletions([key], f"compression-copy:{sop_uid}", now)
            uow.commit()
        self.blobs.put(key, copy.data)
        with self.uow_factory() as uow:
            uow.lock([f"sop:{sop_uid}", f"blob:{key}"])
            switched = self.blobs.exists(key) and uow.archive.switch_content(
                sop_uid, old_sha, NewContent(key, copy.transfer_syntax_uid, len(copy.data),
                                             copy.sha256, old_sha, copy.pixel_sha256, now))
            if not switched:  # replaced meanwhile: the copy is journaled, it goes
                return False
            uow.archive.queue_blob_deletions([old_key], f"compressed:{sop_uid}", now)
            uow.commit()
        return True


@dataclass
class FixityPass:
    checked: int = 0
    failed: list[str] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0


def check_fixity(uow_factory: Callable[..., ArchiveUnitOfWork], blobs: BlobStore,
                 clock: Clock, audit: AuditTrail, *, limit: int,
                 progress: Callable[[int], None] | None = None) -> FixityPass:
    """Re-read the ``limit`` longest unchecked files against their SHA-256; a mismatch or a
    missing file flags the instance, and is logged and written to the audit trail."""
    import time

    started = time.perf_counter()
    with uow_factory(read_only=True) as uow:
        due = uow.archive.fixity_due(limit)
    report = FixityPass()
    for instance in due:
        digest = hashlib.sha256()
        try:
            with blobs.open(instance.blob_key) as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    report.bytes_read += len(chunk)
            ok = digest.hexdigest() == instance.sha256
        except OSError:
            ok = False
        report.checked += 1
        if not ok:
            report.failed.append(instance.sop_instance_uid)
            log.error("fixity: instance %s (%s) does not match its SHA-256",
                      instance.sop_instance_uid, instance.blob_key)
            audit.record(AuditEvent(
                occurred_at=clock.now(), channel="archive", action=AuditAction.READ,
                actor="system:fixity", subject=f"fixity {instance.sop_instance_uid}",
                outcome="fixity-mismatch", detail={
                    "study": instance.study_instance_uid, "blob_key": instance.blob_key,
                    "sha256": instance.sha256}))
        if progress is not None:
            progress(1)
    with uow_factory() as uow:
        uow.archive.record_fixity([i.sop_instance_uid for i in due], report.failed,
                                  clock.now())
        uow.commit()
    report.seconds = time.perf_counter() - started
    return report
