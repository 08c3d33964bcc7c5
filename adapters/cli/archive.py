"""Operating the imaging archive: bulk import of an existing archive, export of coerced
copies."""

from __future__ import annotations

import getpass
import socket
import sys
from pathlib import Path
from typing import Any

import click

from adapters.cli.common import CommandError, common_options, open_container
from adapters.cli.lifecycle import lifecycle_call, staff
from adapters.errors import AdapterError
from mpi.errors import MPIError

__all__ = ["COMMANDS"]


@click.group()
def archive() -> None:
    """The imaging archive: bulk import of existing archives, export of coerced copies."""


@archive.command("import")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--authority", help="Domain of objects without an IssuerOfPatientID (e.g. CHRU).")
@click.option("--jobs", default=4, show_default=True, help="Files read and stored in parallel.")
@click.option("--in-place", is_flag=True,
              help="Index the files where they lie, without copying them (filesystem store); "
                   "the archive owns them from then on and deletes them when it destroys "
                   "their study.")
@common_options
@click.pass_context
def archive_import(ctx: click.Context, folder: Path, authority: str | None, jobs: int,
                   in_place: bool, **options: Any) -> None:
    """Import every DICOM file under FOLDER (recursively). Resumable: files already stored
    byte for byte are skipped. A file that is refused is reported and the import goes on.
    With --in-place the files are not copied: the archive references them where they lie
    (their SHA-256 kept and checked by `mpi archive verify`)."""
    from adapters.dicom.transfer import dicom_files, import_folder

    with open_container(ctx, **options) as container, click.progressbar(
            length=len(dicom_files(folder)), label="importing", file=sys.stderr,
            show_pos=True) as bar:
        try:
            summary = import_folder(container.dicom, folder, authority, jobs, bar.update,
                                    actor=f"os:{getpass.getuser()}",
                                    source=socket.gethostname(), in_place=in_place)
        except (MPIError, AdapterError) as exc:
            raise CommandError(exc.message) from None
    for line in summary.refused:
        click.echo(f"refused {line}", err=True)
    click.echo(", ".join(f"{n} {k}" for k, n in summary.counts().items()))
    if summary.refused:
        sys.exit(1)


@archive.command("export")
@click.option("--person", "person_id", type=int, required=True, help="Master person id.")
@click.option("--domain", help="Identifier domain of the copies [the master domain].")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@common_options
@click.pass_context
def archive_export(ctx: click.Context, person_id: int, domain: str | None, folder: Path,
                   **options: Any) -> None:
    """Write coerced copies of every study of a person to FOLDER/study/series/sop.dcm (for
    media or transfer). Traced in the access trail."""
    from adapters.dicom.transfer import export_person

    with open_container(ctx, **options) as container:
        try:
            asker = container.dicom.asker(domain)
        except MPIError as exc:
            raise CommandError(exc.message) from None
        written = export_person(container.dicom, person_id, asker, folder,
                                actor=f"os:{getpass.getuser()}", source=socket.gethostname())
    if not written:
        raise CommandError(f"no stored object for person {person_id}")
    click.echo(f"{written} object(s) written to {folder}")


@archive.command("compress")
@click.option("--min-age-days", type=float, help="Override the configured age.")
@click.option("--limit", default=1000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Encode and verify, write nothing.")
@common_options
@click.pass_context
def archive_compress(ctx: click.Context, min_age_days: float | None, limit: int, dry_run: bool,
                     **options: Any) -> None:
    """Compress uncompressed instances losslessly, verified bit for bit (the original goes
    only once the copy is in the index). Progress bar; the ratio achieved at the end."""
    with open_container(ctx, **options) as container:
        due, _ = container.compressor.backlog(min_age_days)
        with click.progressbar(length=min(due, limit), label="compressing",
                               file=sys.stderr) as bar:
            report = container.compressor.run(limit, min_age_days=min_age_days,
                                              dry_run=dry_run, progress=bar.update)
    for sop, reason in report.failed:
        click.echo(f"left uncompressed {sop}: {reason}", err=True)
    rate = report.bytes_before / 1e6 / report.seconds if report.seconds else 0.0
    click.echo(f"{report.compressed} compressed{' (dry run)' if dry_run else ''}, "
               f"{len(report.failed)} left as they are; {report.bytes_before} -> "
               f"{report.bytes_after} bytes, ratio {report.ratio:.2f}:1, {rate:.1f} MB/s")


@archive.command("verify")
@click.option("--sample", type=int, default=100, show_default=True,
              help="How many files (the longest unchecked first).")
@click.option("--all", "check_all", is_flag=True, help="Every stored file.")
@common_options
@click.pass_context
def archive_verify(ctx: click.Context, sample: int, check_all: bool, **options: Any) -> None:
    """Re-read stored files against their SHA-256; a mismatch flags the instance (shown on
    /health, logged, audited)."""
    from adapters.dicom.preservation import check_fixity

    with open_container(ctx, **options) as container:
        with container.uow_factory(read_only=True) as uow:
            total = len(uow.archive.fixity_due(10_000_000)) if check_all else sample
        c = container
        with click.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
            report = check_fixity(c.uow_factory, c.dicom.blobs, c.clock, c.audit,
                                  limit=total, progress=bar.update)
    for sop in report.failed:
        click.echo(f"MISMATCH {sop}", err=True)
    rate = report.bytes_read / 1e6 / report.seconds if report.seconds else 0.0
    click.echo(f"{report.checked} checked, {len(report.failed)} mismatch(es), {rate:.1f} MB/s")
    if report.failed:
        sys.exit(1)


@archive.command("reassign")
@click.option("--study", "study_uid", required=True)
@click.option("--to", "target", required=True, help="The right record: CODE|IPP.")
@click.option("--by", "user", required=True, help="Who corrects (role identity-vigilance).")
@click.option("--reason", required=True)
@common_options
@click.pass_context
def archive_reassign(ctx: click.Context, study_uid: str, target: str, user: str, reason: str,
                     **options: Any) -> None:
    """File a study under the right patient record (IOCM incorrect worklist entry): no file
    rewritten, kept in the study's history, undone by reassigning back."""
    from mpi.model import Identifier

    try:
        identifier = Identifier.parse(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    with open_container(ctx, **options) as container:
        moved = lifecycle_call(lambda: container.lifecycle.reassign(
            staff(container, user), study_uid, identifier, reason, channel="cli",
            source=socket.gethostname()))
    click.echo(f"study {study_uid}: {moved.from_patient} -> {moved.to_patient}")


COMMANDS = (archive,)
