"""Moving objects in and out of the archive in bulk: importing a folder of an existing archive,
and writing coerced copies of a person's studies to a folder (media, transfer)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from adapters.dicom.blobstore import FilesystemBlobStore
from adapters.dicom.service import DicomArchive, StoreTrail, UnsupportedInPlaceError
from adapters.errors import AdapterError
from mpi.archive import ArchiveQuery, Sender, StoreOutcome
from mpi.audit import AuditAction
from mpi.errors import MPIError
from mpi.model import Authority, master_id_of

__all__ = ["FolderImport", "import_folder", "export_person"]


@dataclass
class FolderImport:
    """What an import of a folder did: counts by outcome, and each refused file with why."""

    stored: int = 0
    replaced: int = 0
    skipped: int = 0  # stored byte for byte already (an earlier run, or a duplicate)
    refused: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"stored": self.stored, "replaced": self.replaced, "skipped": self.skipped,
                "refused": len(self.refused)}


def dicom_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively), hidden ones left out, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def import_folder(archive: DicomArchive, folder: Path, authority: str | None, jobs: int,
                  progress: Callable[[int], None] | None = None, *, actor: str = "import",
                  source: str | None = None, in_place: bool = False) -> FolderImport:
    """Store every DICOM file under ``folder`` through the archive's ingest, ``jobs`` at a
    time. Resumable: files already stored byte for byte are skipped. A refused file is
    listed and the import goes on. The access trail names ``actor`` for each study stored.
    Raises UnknownAuthorityError for an unknown ``authority`` (the domain of objects without
    an IssuerOfPatientID). ``in_place``: each file is indexed where it lies, not copied
    (its SHA-256 computed and kept, checked by ``mpi archive verify``); the archive owns it
    from then on (see :mod:`adapters.dicom.blobstore`). Raises UnsupportedInPlaceError off
    the filesystem store."""
    if authority is not None:
        archive.registry.by_code(authority)
    if in_place and not isinstance(archive.blobs, FilesystemBlobStore):
        raise UnsupportedInPlaceError(
            "files can be indexed in place on the filesystem store only")
    sender = Sender(f"import:{folder.resolve().name}"[:64], authority)
    trail = StoreTrail("import", actor, authority, source)
    files = dicom_files(folder)
    summary = FolderImport()

    def one(path: Path) -> str:
        data = path.read_bytes()
        if archive.already_stored(data):
            return "skipped"
        try:
            outcome = archive.store(data, sender, trail,
                                    in_place=path if in_place else None).outcome
        except (AdapterError, MPIError, ValueError) as exc:
            summary.refused.append(f"{path}: {exc}")
            return "refused"
        return "skipped" if outcome is StoreOutcome.DUPLICATE else outcome.value

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for outcome in pool.map(one, files):
            if outcome != "refused":
                setattr(summary, outcome, getattr(summary, outcome) + 1)
            if progress is not None:
                progress(1)
    return summary


def export_person(archive: DicomArchive, person_id: int, asker: Authority, folder: Path, *,
                  actor: str, source: str | None) -> int:
    """Write coerced copies of every study of a person to ``folder/study/series/sop.dcm``
    (coerced for ``asker``'s domain), traced in the access trail whatever happens. Returns
    how many objects were written."""
    found = archive.instances(
        ArchiveQuery("PATIENT", patient_id=master_id_of(person_id),
                     issuer=archive.registry.master.namespace), asker)
    written = 0
    try:
        for instance, plan in found:
            target = (folder / str(instance.study_instance_uid)
                      / str(instance.series_instance_uid) / f"{instance.sop_instance_uid}.dcm")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as handle:
                for chunk in archive.coerced_file(instance, plan):
                    handle.write(chunk)
            written += 1
    finally:
        archive.trace(
            channel="cli", action=AuditAction.EXPORT, actor=actor,
            subject=f"archive export --person {person_id} {folder}",
            persons={plan.person_id for _, plan in found}, authority=asker.code,
            source=source, detail={"instances": written})
    return written
