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
from mpi.errors import MPIError

__all__ = ["COMMANDS"]


@click.group()
def archive() -> None:
    """The imaging archive: bulk import of existing archives, export of coerced copies."""


@archive.command("import")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--authority", help="Domain of objects without an IssuerOfPatientID (e.g. CHRU).")
@click.option("--jobs", default=4, show_default=True, help="Files read and stored in parallel.")
@common_options
@click.pass_context
def archive_import(ctx: click.Context, folder: Path, authority: str | None, jobs: int,
                   **options: Any) -> None:
    """Import every DICOM file under FOLDER (recursively). Resumable: files already stored
    byte for byte are skipped. A file that is refused is reported and the import goes on."""
    from adapters.dicom.transfer import dicom_files, import_folder

    with open_container(ctx, **options) as container, click.progressbar(
            length=len(dicom_files(folder)), label="importing", file=sys.stderr,
            show_pos=True) as bar:
        try:
            summary = import_folder(container.dicom, folder, authority, jobs, bar.update)
        except MPIError as exc:
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


COMMANDS = (archive,)
