"""`mpi backup DIR` and `mpi restore DIR` (see ``adapters/backup.py`` for what a backup holds
and why it is consistent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from adapters.cli.common import CommandError, common_options, settings_of
from adapters.settings import displayed_database_url

__all__ = ["COMMANDS"]


@click.command("backup")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@common_options
@click.pass_context
def backup_command(ctx: click.Context, folder: Path, **options: Any) -> None:
    """Back up the index (SQLite online backup, or pg_dump) and the stored objects into
    FOLDER, a new or empty folder; the service may keep running."""
    from adapters.backup import BackupError, backup

    settings, _ = settings_of(ctx, **options)
    click.echo(f"database: {displayed_database_url(settings.resolved_database_url())}",
               err=True)
    try:
        report = backup(settings, folder)
    except BackupError as exc:
        raise CommandError(exc.message) from None
    click.echo(f"backed up a {report.database} index naming {report.instances} instance(s) "
               f"and {report.files} object file(s) ({report.bytes} bytes) into {report.folder}")


@click.command("restore")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--yes", is_flag=True, help="Replace the index without asking.")
@common_options
@click.pass_context
def restore_command(ctx: click.Context, folder: Path, yes: bool, **options: Any) -> None:
    """Restore a backup made by `mpi backup` into the database and archive folder of the
    settings, the service stopped: the index is replaced, the objects copied back. Then run
    `mpi archive verify --all`."""
    from adapters.backup import BackupError, restore

    settings, _ = settings_of(ctx, **options)
    shown = displayed_database_url(settings.resolved_database_url())
    click.echo(f"database: {shown}", err=True)
    if not yes:
        click.confirm(f"replace the index of {shown} with the backup in {folder}?",
                      abort=True, err=True)
    try:
        report = restore(settings, folder)
    except BackupError as exc:
        raise CommandError(exc.message) from None
    click.echo(f"restored a {report.database} index naming {report.instances} instance(s) "
               f"and {report.files} object file(s) ({report.bytes} bytes); now run "
               "`mpi archive verify --all`")


COMMANDS = (backup_command, restore_command)
