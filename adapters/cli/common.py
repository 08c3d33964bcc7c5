"""What every `mpi` command shares: the settings (flags given to `mpi` itself or to the
command, then the environment, then the configuration file), opening the service's parts
on the right database (and saying which), tables and JSON output, the access trail of a
read made from the command line.

Exit codes: 0 success; 1 the command failed (a refusal, nothing found, a failed file); 2 bad
usage or settings (click's own code for usage errors); 3 the database is missing or behind the
code; 4 a server could not listen (port in use, no permission).
"""

from __future__ import annotations

import csv
import getpass
import json
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from adapters.authorities_file import AuthoritiesFileError
from adapters.container import Container
from adapters.settings import (
    Provenance,
    Settings,
    SettingsError,
    displayed_database_url,
    load_settings,
)
from mpi.audit import AuditAction, AuditEvent

__all__ = ["F", "EXIT_DATABASE", "EXIT_LISTEN", "EXIT_SETTINGS", "common_options",
           "format_option", "settings_of", "open_container", "emit", "audit_cli",
           "CommandError", "BadSettingsError", "DatabaseError", "ListenFailure"]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_SETTINGS = 2
EXIT_DATABASE = 3
EXIT_LISTEN = 4

# The settings every command takes, as `mpi --data-dir X COMMAND` or `mpi COMMAND --data-dir X`
# (the command's own wins).
_COMMON: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--config", dict(type=click.Path(path_type=Path, dir_okay=False),
                      help="Configuration file (TOML) [MPI_CONFIG]")),
    ("--data-dir", dict(type=click.Path(path_type=Path, file_okay=False),
                        help="Data folder [MPI_DATA_DIR, ./var]")),
    ("--database-url", dict(help="SQLAlchemy URL [MPI_DATABASE_URL, SQLite in the data "
                                 "folder]")),
    ("--authorities", dict(type=click.Path(path_type=Path, exists=True, dir_okay=False),
                           help="Authorities file [MPI_AUTHORITIES, the four Nancy "
                                "establishments]")),
    ("--log-level", dict(type=click.Choice(["debug", "info", "warning", "error"],
                                           case_sensitive=False),
                         help="Log level [MPI_LOG_LEVEL, info]")),
    ("--log-format", dict(type=click.Choice(["text", "json"]),
                          help="Log lines as text or JSON [MPI_LOG_FORMAT, text]")),
)
COMMON_KEYS = tuple(flag[2:].replace("-", "_") for flag, _ in _COMMON)


class CommandError(click.ClickException):
    """A command that cannot do what was asked (exit code 1)."""

    exit_code = 1


class BadSettingsError(CommandError):
    """A setting, the configuration file or the authorities file is wrong (exit code 2)."""

    exit_code = EXIT_SETTINGS


class DatabaseError(CommandError):
    """The database is missing, empty or behind the code (exit code 3)."""

    exit_code = EXIT_DATABASE


class ListenFailure(CommandError):
    """A server could not listen on its address (exit code 4)."""

    exit_code = EXIT_LISTEN


def common_options(function: F) -> F:
    """Add the settings every command takes."""
    for flag, options in reversed(_COMMON):
        function = click.option(flag, default=None, **options)(function)
    return function


def format_option(function: F) -> F:
    """``--format table|json`` for a listing command."""
    return click.option("--format", "output_format", type=click.Choice(["table", "json"]),
                        default="table", show_default=True,
                        help="A table for people, JSON for scripts.")(function)


def _given(ctx: click.Context, options: dict[str, Any]) -> dict[str, Any]:
    """The settings given on the command line: `mpi`'s own, overridden by the command's."""
    merged: dict[str, Any] = {}
    current: click.Context | None = ctx
    chain = []
    while current is not None:
        chain.append(current)
        current = current.parent
    for context in reversed(chain):
        for key, value in (context.params or {}).items():
            if key in COMMON_KEYS and value is not None:
                merged[key] = value
    merged.update({k: v for k, v in options.items() if v is not None})
    return merged


def settings_of(ctx: click.Context, **options: Any) -> tuple[Settings, dict[str, Provenance]]:
    """The settings in force for this command and where each came from. Raises
    CommandError (exit 2) naming what is wrong."""
    try:
        return load_settings(_given(ctx, options))
    except SettingsError as exc:
        raise BadSettingsError(exc.message) from None


def open_container(ctx: click.Context, *, create: bool = False,
                   **options: Any) -> Container:
    """The service's parts on the database the settings name, announced on standard error.
    Only ``create`` commands (`serve`, `db upgrade`) may start a new, empty database: the
    others refuse, so that a command run from the wrong folder does not quietly create and
    read an empty index. Raises CommandError (exit 3 for a missing or outdated database)."""
    from adapters.bootstrap import DatabaseNotReadyError, bootstrap

    settings, _ = settings_of(ctx, **options)
    url = settings.resolved_database_url()
    click.echo(f"database: {displayed_database_url(url)}", err=True)
    sqlite_file = settings.sqlite_file()
    if not create and sqlite_file is not None and not sqlite_file.exists():
        raise DatabaseError(
            f"no index at {sqlite_file}: this command does not create one. Point at the "
            "service's data folder with --data-dir or MPI_DATA_DIR (or the database with "
            "--database-url / MPI_DATABASE_URL), or create the index with `mpi db upgrade`.")
    try:
        return bootstrap(settings, migrate=True if create else None)
    except DatabaseNotReadyError as exc:
        raise DatabaseError(f"{exc.message}; or point at the right database with "
                            "--database-url / MPI_DATABASE_URL") from None
    except (AuthoritiesFileError, SettingsError) as exc:
        raise BadSettingsError(exc.message) from None


def emit(output_format: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
         *, document: Any = None, headers: Sequence[str] | None = None) -> None:
    """Print rows as a table with a header line (``table``), as JSON (``json``: the
    ``document`` when given, else the rows) or as CSV (``csv``)."""
    if output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return
    if output_format == "json":
        click.echo(json.dumps(rows if document is None else document, ensure_ascii=False,
                              indent=2, default=str))
        return
    titles = list(headers or [c.upper().replace("_", " ") for c in columns])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(t), *(len(r[i]) for r in cells)]) for i, t in enumerate(titles)]
    click.echo("  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def audit_cli(container: Container, action: AuditAction, subject: str,
              persons: Iterable[int | None]) -> None:
    """Trace a read of patient data made from the command line (actor: the OS user)."""
    container.audit.record(AuditEvent(
        occurred_at=container.clock.now(), channel="cli", action=action,
        actor=f"os:{getpass.getuser()}", subject=subject, outcome="success",
        source=socket.gethostname(), persons=tuple(sorted({p for p in persons if p is not None})),
    ))
