"""The `mpi` command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from adapters.authorities_file import AuthoritiesFileError, load_authorities
from adapters.settings import Settings
from mpi.model import JournalStatus

__all__ = ["main"]


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _container(settings: Settings, migrate: bool | None = None):  # type: ignore[no-untyped-def]
    from adapters.bootstrap import DatabaseNotReadyError, bootstrap

    try:
        return bootstrap(settings, migrate=migrate)
    except (AuthoritiesFileError, DatabaseNotReadyError) as exc:
        raise click.ClickException(str(exc)) from exc


_common = [
    click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder [MPI_DATA_DIR, ./var]"),
    click.option("--database-url", help="SQLAlchemy URL [MPI_DATABASE_URL, SQLite in the data folder]"),
    click.option("--authorities", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                 help="Authorities file [MPI_AUTHORITIES, fixtures/authorities.toml]"),
]


def common_options(function):  # type: ignore[no-untyped-def]
    for option in reversed(_common):
        function = option(function)
    return function


@click.group()
def main() -> None:
    """Master patient index and archive layer for a shared imaging archive."""


@main.command()
@click.option("--host", help="Address to listen on [MPI_HOST, 127.0.0.1]")
@click.option("--mllp-port", type=int, help="MLLP port [MPI_MLLP_PORT, 2575]")
@click.option("--http-port", type=int, help="HTTP port [MPI_HTTP_PORT, 8080]")
@common_options
def serve(**options: Any) -> None:
    """Run the MLLP listener and the HTTP server until SIGTERM/SIGINT."""
    from adapters.serve import serve as run

    settings = _settings(**options)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(_container(settings))


@main.command()
@click.option("--authorities", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def authorities(authorities: Path | None) -> None:
    """List the identifier domains, who speaks for them, and the notification consumers."""
    settings = _settings(authorities=authorities)
    try:
        registry = load_authorities(settings.authorities)
    except AuthoritiesFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{'CODE':<14}{'KIND':<15}{'OID':<24}{'NAMESPACE':<26}SPEAKS FOR IT")
    for a in registry.all:
        speakers = ", ".join([*(f"MSH-4 {f}" for f in a.sending_facilities),
                              *(f"AE {t}" for t in a.ae_titles)])
        click.echo(f"{a.code:<14}{a.kind.value:<15}{a.oid:<24}{a.namespace:<26}{speakers}")
    for c in registry.consumers:
        click.echo(f"consumer {c.name}: {c.host}:{c.port} domains {', '.join(c.domains)}")


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
@common_options
def upgrade(**options: Any) -> None:
    """Migrate the database to the current schema."""
    container = _container(_settings(**options), migrate=True)
    from adapters.sql.migrate import current_revision

    click.echo(f"database at revision {current_revision(container.engine)}")
    container.close()


@main.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Every message, not only failures.")
@click.option("--limit", default=50, show_default=True)
@common_options
@click.pass_context
def journal(ctx: click.Context, show_all: bool, limit: int, **options: Any) -> None:
    """The inbound message journal: failures first (use a subcommand to show or replay)."""
    ctx.obj = options
    if ctx.invoked_subcommand is not None:
        return
    container = _container(_settings(**options))
    statuses = None if show_all else [JournalStatus.ERROR, JournalStatus.REJECTED]
    with container.uow_factory(read_only=True) as uow:
        entries = uow.journal.list(statuses, limit)
    for e in entries:
        code = f"{e.ack_code or ''} {e.error_code or ''}".strip()
        click.echo(f"{e.id:>8} {e.received_at:%Y-%m-%d %H:%M:%S} {e.status.value:<9} {code:<7} "
                   f"{e.sender or '-':<8} {e.control_id or '-':<22} {e.message_type or '-':<18} "
                   f"{e.error_text or ''}")
    container.close()


@journal.command("show")
@click.argument("entry_id", type=int)
@click.pass_context
def journal_show(ctx: click.Context, entry_id: int) -> None:
    """Print one journaled message and the reply it got."""
    container = _container(_settings(**ctx.obj))
    with container.uow_factory(read_only=True) as uow:
        entry = uow.journal.get(entry_id)
    container.close()
    if entry is None:
        raise click.ClickException(f"no journal entry {entry_id}")
    click.echo(f"entry {entry.id}: {entry.status.value}, {entry.ack_code} {entry.error_code or ''}"
               f" {entry.error_text or ''}")
    click.echo(entry.raw.replace("\r", "\n"))
    click.echo("--- reply")
    click.echo((entry.reply or "").replace("\r", "\n"))


@journal.command("replay")
@click.argument("entry_id", type=int)
@click.pass_context
def journal_replay(ctx: click.Context, entry_id: int) -> None:
    """Apply a failed message again, after the cause was fixed."""
    container = _container(_settings(**ctx.obj))
    try:
        entry = container.hl7.replay(entry_id)
    except KeyError:
        raise click.ClickException(f"no journal entry {entry_id}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        container.close()
    if entry.status is JournalStatus.REPLAYED:
        click.echo(f"entry {entry_id} applied")
    else:
        click.echo(f"entry {entry_id} still fails: {entry.error_text}", err=True)
        sys.exit(1)
