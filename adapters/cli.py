"""The `mpi` command."""

from __future__ import annotations

import asyncio
import getpass
import logging
import socket
import sys
from collections.abc import Callable, Iterable
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

import click

from adapters.authorities_file import AuthoritiesFileError, load_authorities
from adapters.container import Container
from adapters.settings import Settings
from mpi.audit import AuditAction, AuditEvent
from mpi.model import JournalStatus

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _container(settings: Settings, migrate: bool | None = None) -> Container:
    """The service's parts for one command; use it as a context manager."""
    from adapters.bootstrap import DatabaseNotReadyError, bootstrap

    try:
        return bootstrap(settings, migrate=migrate)
    except (AuthoritiesFileError, DatabaseNotReadyError) as exc:
        raise click.ClickException(str(exc)) from exc


def _audit_cli(container: Container, action: AuditAction, subject: str,
               persons: Iterable[int | None]) -> None:
    """Trace a read of patient data made from the command line (actor: the OS user)."""
    container.audit.record(AuditEvent(
        occurred_at=container.clock.now(), channel="cli", action=action,
        actor=f"os:{getpass.getuser()}", subject=subject, outcome="success",
        source=socket.gethostname(), persons=tuple(sorted({p for p in persons if p is not None})),
    ))


_common = [
    click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder [MPI_DATA_DIR, ./var]"),
    click.option("--database-url", help="SQLAlchemy URL [MPI_DATABASE_URL, SQLite in the data folder]"),
    click.option("--authorities", type=click.Path(path_type=Path, exists=True, dir_okay=False),
                 help="Authorities file [MPI_AUTHORITIES, the four Nancy establishments]"),
]


def common_options(function: F) -> F:
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
@click.option("--dicom-port", type=int, help="DICOM port, AE title VNA [MPI_DICOM_PORT, 11112]")
@common_options
def serve(**options: Any) -> None:
    """Run the MLLP listener, the HTTP server and the DICOM service until SIGTERM/SIGINT."""
    from adapters.serve import serve as run

    settings = _settings(**options)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(_container(settings))  # serve closes the container when it stops


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
    from adapters.sql.migrate import current_revision

    with _container(_settings(**options), migrate=True) as container:
        click.echo(f"database at revision {current_revision(container.engine)}")


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
    statuses = None if show_all else [JournalStatus.ERROR, JournalStatus.REJECTED]
    with _container(_settings(**options)) as container:
        with container.uow_factory(read_only=True) as uow:
            entries = uow.journal.list(statuses, limit)
    for e in entries:
        code = f"{e.ack_code or ''} {e.error_code or ''}".strip()
        click.echo(f"{e.id:>8} {e.received_at:%Y-%m-%d %H:%M:%S} {e.status.value:<9} {code:<7} "
                   f"{e.sender or '-':<8} {e.control_id or '-':<22} {e.message_type or '-':<18} "
                   f"{e.error_text or ''}")


@journal.command("show")
@click.argument("entry_id", type=int)
@click.pass_context
def journal_show(ctx: click.Context, entry_id: int) -> None:
    """Print one journaled message and the reply it got."""
    with _container(_settings(**ctx.obj)) as container:
        with container.uow_factory(read_only=True) as uow:
            entry = uow.journal.get(entry_id)
        if entry is None:
            raise click.ClickException(f"no journal entry {entry_id}")
        # The raw message carries the patient's identity: the read is traced (its persons
        # are the ones the message named, found by the journal entry, not resolved here).
        _audit_cli(container, AuditAction.READ, f"journal show {entry_id}", ())
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
    with _container(_settings(**ctx.obj)) as container:
        try:
            entry = container.hl7.replay(entry_id)
        except KeyError:
            raise click.ClickException(f"no journal entry {entry_id}") from None
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if entry.status is JournalStatus.REPLAYED:
        click.echo(f"entry {entry_id} applied")
    else:
        click.echo(f"entry {entry_id} still fails: {entry.error_text}", err=True)
        sys.exit(1)


@main.group()
def review() -> None:
    """The review queue of potential duplicates (identity vigilance)."""


@review.command("list")
@click.option("--all", "show_all", is_flag=True, help="Decided tasks too.")
@click.option("--limit", default=50, show_default=True)
@common_options
def review_list(show_all: bool, limit: int, **options: Any) -> None:
    """Open review tasks, oldest first."""
    from mpi.matching.vetoes import VETOES
    from mpi.model import ReviewStatus

    with _container(_settings(**options)) as container:
        with container.uow_factory(read_only=True) as uow:
            tasks, total = uow.reviews.list(None if show_all else ReviewStatus.OPEN, 0, limit)
        _audit_cli(container, AuditAction.SEARCH, "review list",
                   (t.person_id for t in tasks))
    click.echo(f"{total} task(s)")
    for t in tasks:
        # Why the task was not linked automatically: the vetoes flagged in its evidence.
        flags = [veto.name for veto in VETOES if t.evidence.get(veto.name)]
        click.echo(f"{t.id:>7} {t.status.value:<8} record {t.record_id:<8} person "
                   f"{t.person_id:<8} p={t.score:.4f} {' '.join(flags)} "
                   f"{(t.decision.value + ' by ' + (t.decided_by or '')) if t.decision else ''}")


@review.command("show")
@click.argument("task_id", type=int)
@common_options
def review_show(task_id: int, **options: Any) -> None:
    """One task: the record and the candidate side by side, with the evidence per field."""
    from mpi.errors import UnknownIdentifierError
    from mpi.matching.vetoes import VETOES
    from mpi.review import show_review

    with _container(_settings(**options)) as container:
        try:
            with container.uow_factory(read_only=True) as uow:
                view = show_review(uow, container.identity, task_id)
        except UnknownIdentifierError as exc:
            raise click.ClickException(exc.message) from None
        _audit_cli(container, AuditAction.READ, f"review show {task_id}",
                   (p.person.id for p in (view.record_person, view.candidate) if p))
    task = view.task
    click.echo(f"task {task.id} ({task.status.value}), probability {task.score:.6f}")
    other = view.candidate_record
    left, right = view.record.demographics.as_dict(), other.demographics.as_dict() if other else {}
    click.echo(f"{'':<18}{str(view.record.identifier):<34}"
               f"{str(other.identifier) if other else '(candidate person)':<34}")
    for name in left:
        if left[name] or right.get(name):
            click.echo(f"{name:<18}{str(left[name] or ''):<34}{str(right.get(name) or ''):<34}")
    for field, detail in task.evidence.get("fields", {}).items():
        click.echo(f"  {field:<14} {detail['level']:<8} {detail['weight']:+.2f} bits")
    for veto in VETOES:
        if task.evidence.get(veto.name):
            click.echo(f"  warning: {veto.explanation}")
    if view.candidate:
        click.echo("candidate person holds: " + ", ".join(str(i) for i in view.candidate.identifiers))
    if task.decision:
        click.echo(f"decided {task.decision.value} by {task.decided_by} at {task.decided_at}: "
                   f"{task.reason}")


@review.command("decide")
@click.argument("task_id", type=int)
@click.option("--decision", required=True,
              type=click.Choice(["link", "keep-apart", "merge-persons", "unlink"]))
@click.option("--by", "user", required=True, help="Who decides (kept with the decision).")
@click.option("--reason", required=True, help="Why (kept with the decision).")
@common_options
def review_decide(task_id: int, decision: str, user: str, reason: str, **options: Any) -> None:
    """Decide a task; the decision is audited (who, when, why) and sticky."""
    from mpi.errors import MPIError
    from mpi.identity import Actor
    from mpi.model import ReviewDecision, ReviewTask
    from mpi.retry import retry_on_conflict
    from mpi.review import decide_review

    actor = Actor(f"user:{user}", None)
    with _container(_settings(**options)) as container:

        def decide() -> ReviewTask:
            with container.uow_factory() as uow:
                decided = decide_review(uow, container.identity, task_id,
                                        ReviewDecision(decision), actor, reason)
                uow.commit()
                return decided

        try:
            task = retry_on_conflict(decide)
        except MPIError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"task {task.id}: {task.decision.value if task.decision else ''} "
               f"by {task.decided_by}")


@main.command("audit")
@click.option("--person", "person_id", type=int, help="Only accesses to this person (id).")
@click.option("--actor", help="Only accesses by this actor (as recorded, e.g. user:jdupont).")
@click.option("--limit", default=100, show_default=True)
@common_options
def audit_trail(person_id: int | None, actor: str | None, limit: int, **options: Any) -> None:
    """The access trail, newest first: who read or changed which person's data, when, how."""
    with _container(_settings(**options)) as container:
        events = container.audit.search(person_id=person_id, actor=actor, limit=limit)
        # Reading the trail is itself an access to patient data: it says who saw whom.
        _audit_cli(container, AuditAction.SEARCH,
                   f"audit --person {person_id or '-'} --actor {actor or '-'}",
                   (p for e in events for p in e.persons))
    for e in events:
        persons = ",".join(str(p) for p in e.persons) or "-"
        click.echo(f"{e.occurred_at:%Y-%m-%dT%H:%M:%S}Z {e.channel:<8} {e.action.value:<8} "
                   f"{e.actor:<24} {e.source or '-':<15} persons {persons:<12} {e.outcome:<8} "
                   f"{e.subject}")


@main.command("import")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--authority", help="Establishment (code) of every row; without it, a column "
                                  "must name each row's establishment.")
@click.option("--format", "file_format", type=click.Choice(["csv", "ndjson"]),
              help="Default: from the file name (.csv/.tsv/.txt, .ndjson/.jsonl).")
@click.option("--mapping", "mapping_file", type=click.Path(path_type=Path, exists=True,
                                                           dir_okay=False),
              help='TOML file with a [columns] table: target = "column name".')
@click.option("--map", "pairs", multiple=True, metavar="TARGET=COLUMN",
              help="Map one column (repeatable; overrides --mapping).")
@click.option("--delimiter", help="CSV delimiter (default: sniffed among , ; tab |).")
@click.option("--encoding", default="utf-8", show_default=True)
@click.option("--date-format", "date_formats", multiple=True,
              help="strptime format of the dates (repeatable) [%Y-%m-%d, %Y%m%d, %d/%m/%Y].")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--restart", is_flag=True, help="Ignore the state of an earlier run.")
@click.option("--by", "user", default=None, help="Who runs the import (kept in the history).")
@common_options
def import_records(file: Path, authority: str | None, file_format: str | None,
                   mapping_file: Path | None, pairs: tuple[str, ...], delimiter: str | None,
                   encoding: str, date_formats: tuple[str, ...], batch_size: int, restart: bool,
                   user: str | None, **options: Any) -> None:
    """Load a patient table (CSV or NDJSON extract of an HIS) through the same rules and
    matching as the ADT feed, in batches, with a progress bar. Resumable: run the same command
    again after an interruption. Targets: id, authority, birth_family_name, used_family_name,
    given_names, used_given_name, birth_date, sex, birthplace, street, city, postcode, country,
    phone, death_date, ins, reliability."""
    import getpass

    from adapters.bulk_import import (
        DEFAULT_DATE_FORMATS,
        ImportOptions,
        UnusableFileError,
        import_file,
        load_mapping,
    )
    from mpi.errors import UnknownAuthorityError

    mapping: dict[str, str] = load_mapping(mapping_file) if mapping_file else {}
    for pair in pairs:
        target, sep, column = pair.partition("=")
        if not sep or not target.strip() or not column.strip():
            raise click.BadParameter(f"{pair!r} is not TARGET=COLUMN", param_hint="--map")
        mapping[target.strip()] = column.strip()
    import_options = ImportOptions(
        authority=authority, format=file_format, mapping=mapping, delimiter=delimiter,
        encoding=encoding, date_formats=date_formats or DEFAULT_DATE_FORMATS,
        batch_size=batch_size, restart=restart,
        actor=f"import:{user or getpass.getuser()}",
    )
    with _container(_settings(**options)) as container, click.progressbar(
            length=file.stat().st_size, label=f"importing {file.name}", file=sys.stderr,
            show_eta=True) as bar:
        try:
            position = [0]

            def progress(read: int, total: int, report: Any) -> None:
                bar.update(max(0, min(read, total) - position[0]))
                position[0] = min(read, total)

            report = import_file(file, registry=container.registry, identity=container.identity,
                                 uow_factory=container.uow_factory, options=import_options,
                                 progress=progress)
        except (UnusableFileError, UnknownAuthorityError) as exc:
            raise click.ClickException(str(exc)) from None
    if report.skipped:
        click.echo(f"{report.skipped} rows were done by an earlier run")
    click.echo(f"{report.rows} rows in {report.seconds:.1f} s ({report.rate:.0f} rows/s): "
               f"{report.imported} imported, {report.rejected} rejected")
    if report.rejected:
        click.echo(f"rejected rows and reasons: {file.with_name(file.name + '.rejects.csv')}")


@main.command()
@click.option("--sample", default=200_000, show_default=True,
              help="Records read from the database to learn from.")
@click.option("--activate/--no-activate", default=False, show_default=True,
              help="Put the new model in force (check it with `mpi model` first).")
@common_options
def train(sample: int, activate: bool, **options: Any) -> None:
    """Re-estimate the matching model (u from random pairs, m by EM) from the live database and
    store it as a new version; with --activate, put it in force (restart `mpi serve`). A
    degenerate estimate is refused."""
    from datetime import datetime

    from mpi.matching.training import retrain

    with _container(_settings(**options)) as container, container.uow_factory() as uow:
        try:
            trained = retrain(uow, sample=sample, now=datetime.now(UTC),
                              activate=activate)
        except ValueError as exc:
            raise click.ClickException(f"cannot train: {exc}") from None
        uow.commit()
    model = trained.model
    click.echo(f"model {model.version} from {trained.records} records, match share among "
               f"candidate pairs {model.prior:.4f}{' (in force)' if activate else ''}")
    _print_model(model)


@main.command()
@common_options
def model(**options: Any) -> None:
    """The matching model in force (m, u and weight per field and level) and its versions."""
    from mpi.matching.training import model_in_force

    with _container(_settings(**options)) as container, \
            container.uow_factory(read_only=True) as uow:
        current = model_in_force(uow)
        versions = uow.models.versions()
    click.echo(f"in force: {current.version}")
    _print_model(current)
    for version, created, active in versions:
        click.echo(f"  {version:<32} {created:%Y-%m-%d %H:%M} {'in force' if active else ''}")


def _print_model(model: Any) -> None:
    from mpi.matching.comparisons import comparison_of

    def meaning(name: str, level: str) -> str:
        # A stored model may weigh a field or level the code no longer declares.
        try:
            return comparison_of(name).level(level).description
        except KeyError:
            return "(not declared)"

    click.echo(f"{'field':<14}{'level':<8}{'m':>10}{'u':>10}{'weight':>9}  meaning")
    for name, levels in model.m.items():
        for level, m in levels.items():
            click.echo(f"{name:<14}{level:<8}{m:>10.4f}{model.u[name][level]:>10.5f}"
                       f"{model.level_weight(name, level):>9.2f}  {meaning(name, level)}")
    click.echo(f"auto link at p >= {model.auto_link_probability}, review at p >= "
               f"{model.review_probability}, ambiguity margin {model.ambiguity_margin_bits} bits")


@main.command()
@click.option("--persons", default=10_000, show_default=True)
@click.option("--seed", default=2026, show_default=True)
@click.option("--database-url", help="An EMPTY database to replay into (default: a temporary "
                                      "SQLite file).")
def evaluate(persons: int, seed: int, database_url: str | None) -> None:
    """Replay the synthetic population through the feed and measure the links against the
    ground truth: precision, recall, F1, false merges, review queue."""
    from adapters.evaluation import evaluate as run

    def progress(done: int, total: int) -> None:
        click.echo(f"\r  {done}/{total} records", nl=False, err=True)

    report = run(persons, seed, database_url, progress)
    click.echo("", err=True)
    for line in report.lines():
        click.echo(line)


@main.group()
def archive() -> None:
    """The imaging archive: bulk import of existing archives, export of coerced copies."""


@archive.command("import")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--authority", help="Domain of objects without an IssuerOfPatientID (e.g. CHRU).")
@click.option("--jobs", default=4, show_default=True, help="Files read and stored in parallel.")
@common_options
def archive_import(folder: Path, authority: str | None, jobs: int, **options: Any) -> None:
    """Import every DICOM file under FOLDER (recursively). Resumable: files already stored
    byte for byte are skipped. A file that is refused is reported and the import goes on."""
    from adapters.dicom.transfer import dicom_files, import_folder
    from mpi.errors import MPIError

    with _container(_settings(**options)) as container, click.progressbar(
            length=len(dicom_files(folder)), label="importing", file=sys.stderr) as bar:
        try:
            summary = import_folder(container.dicom, folder, authority, jobs, bar.update)
        except MPIError as exc:
            raise click.ClickException(exc.message) from None
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
def archive_export(person_id: int, domain: str | None, folder: Path, **options: Any) -> None:
    """Write coerced copies of every study of a person to FOLDER/study/series/sop.dcm (for
    media or transfer). Traced in the access trail."""
    from adapters.dicom.transfer import export_person
    from mpi.errors import MPIError

    with _container(_settings(**options)) as container:
        try:
            asker = container.dicom.asker(domain)
        except MPIError as exc:
            raise click.ClickException(exc.message) from None
        written = export_person(container.dicom, person_id, asker, folder,
                                actor=f"os:{getpass.getuser()}", source=socket.gethostname())
    if not written:
        raise click.ClickException(f"no stored object for person {person_id}")
    click.echo(f"{written} object(s) written to {folder}")


@main.group(invoke_without_command=True)
@common_options
@click.pass_context
def jobs(ctx: click.Context, **options: Any) -> None:
    """The background jobs `mpi serve` runs: what each does and what waits for it (use
    `mpi jobs run NAME` to run one pass by hand)."""
    ctx.obj = options
    if ctx.invoked_subcommand is not None:
        return
    with _container(_settings(**options)) as container:
        snapshot = container.jobs.snapshot()
    click.echo(f"{'NAME':<24}{'EVERY':>8}{'BACKLOG':>9}  WHAT")
    for job in snapshot:
        backlog = "-" if job["backlog"] is None else str(job["backlog"])
        click.echo(f"{job['name']:<24}{job['interval']:>7g}s{backlog:>9}  {job['description']}")


@jobs.command("run")
@click.argument("name")
@click.pass_context
def jobs_run(ctx: click.Context, name: str) -> None:
    """Run one pass of a job now, and say what waits for it afterwards."""
    from adapters.jobs import UnknownJobError

    with _container(_settings(**ctx.obj)) as container:
        try:
            more = asyncio.run(container.jobs.run_once(name))
        except UnknownJobError as exc:
            raise click.ClickException(exc.message) from None
        except Exception as exc:  # the pass's own failure, reported to the operator
            raise click.ClickException(f"{name} failed: {exc}") from None
        backlog = container.jobs.backlog(name)
    click.echo(f"{name}: one pass done; backlog {'-' if backlog is None else backlog}"
               f"{' (more is waiting)' if more else ''}")


# -- the archive's legal lifecycle -------------------------------------------------------------


def _staff(user: str) -> Any:
    """The actor of a lifecycle command. Roles: None until authentication provides them
    (the core then applies the name-based rules)."""
    from mpi.archive.lifecycle import Staff

    return Staff(user, None)


def _lifecycle_call(work: Callable[[], Any]) -> Any:
    from mpi.errors import MPIError

    try:
        return work()
    except MPIError as exc:
        raise click.ClickException(exc.message) from None


def _emit(rows: list[dict[str, Any]], columns: tuple[str, ...], output: str) -> None:
    import csv
    import json

    if output == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
        click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
        for row in rows:
            click.echo("  ".join(str(row.get(c, "") if row.get(c) is not None else "-")
                                 .ljust(widths[c]) for c in columns))


@main.group()
def lifecycle() -> None:
    """The archive's legal lifecycle: retention (R.1112-7), legal holds, destruction."""


_FORMAT = click.option("--format", "output", type=click.Choice(["table", "json", "csv"]),
                       default="table", show_default=True)


@lifecycle.command("report")
@click.option("--establishment", help="Only this establishment's studies (code).")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]),
              help="Only studies whose retention ends on or before this date.")
@_FORMAT
@common_options
def lifecycle_report(establishment: str | None, as_of: Any, output: str,
                     **options: Any) -> None:
    """Each study's end of retention and its basis, whether it is held, its size; then
    the totals by year of expiry."""
    import json

    from adapters.api.lifecycle import row_json, totals_by_year

    with _container(_settings(**options)) as container:
        rows = container.lifecycle.report(establishment, as_of.date() if as_of else None,
                                          staff=_staff(f"os:{getpass.getuser()}"),
                                          channel="cli", source=socket.gethostname())
    studies, totals = [row_json(r) for r in rows], totals_by_year(rows)
    if output == "json":
        click.echo(json.dumps({"studies": studies, "totals": totals}, indent=2))
        return
    _emit(studies, ("study_instance_uid", "establishment", "patient", "expires_on", "basis",
                    "last_visit", "held", "size_bytes"), output)
    if output == "table":
        click.echo("")
        _emit(totals, ("year", "studies", "size_bytes", "held"), output)


@lifecycle.command("hold")
@click.option("--person", "person_id", type=int, help="Master person id: every study of theirs.")
@click.option("--study", "study_uid", help="One study (Study Instance UID).")
@click.option("--reason", required=True)
@click.option("--reference", required=True, help="The claim's reference (court, CNIL...).")
@click.option("--by", "user", required=True, help="Who places the hold (role archivist).")
@common_options
def lifecycle_hold(person_id: int | None, study_uid: str | None, reason: str, reference: str,
                   user: str, **options: Any) -> None:
    """Place a legal hold on a person or a study: never proposed for destruction."""
    with _container(_settings(**options)) as container:
        hold = _lifecycle_call(lambda: container.lifecycle.hold(
            _staff(user), reason=reason, reference=reference, person_id=person_id,
            study_uid=study_uid, channel="cli", source=socket.gethostname()))
    click.echo(f"hold {hold.id} placed")


@lifecycle.command("holds")
@click.option("--all", "show_all", is_flag=True, help="Released holds too.")
@_FORMAT
@common_options
def lifecycle_holds(show_all: bool, output: str, **options: Any) -> None:
    """The legal holds in force (or all of them)."""
    from adapters.api.lifecycle import hold_json

    with _container(_settings(**options)) as container:
        found = container.lifecycle.holds(not show_all)
    _emit([hold_json(h) for h in found], ("id", "person_id", "study_instance_uid", "reason",
                                          "reference", "placed_by", "placed_at", "active"),
          output)


@lifecycle.command("release")
@click.argument("hold_id", type=int)
@click.option("--reason", required=True)
@click.option("--by", "user", required=True, help="Who releases it (role archivist).")
@common_options
def lifecycle_release(hold_id: int, reason: str, user: str, **options: Any) -> None:
    """Release a legal hold; the retention of what it covered is computed again."""
    with _container(_settings(**options)) as container:
        _lifecycle_call(lambda: container.lifecycle.release(
            _staff(user), hold_id, reason, channel="cli", source=socket.gethostname()))
    click.echo(f"hold {hold_id} released")


def _print_proposal(proposal: Any) -> None:
    from mpi.archive.lifecycle import BORDEREAU_COLUMNS, bordereau_rows

    click.echo(f"destruction proposal {proposal.id} ({proposal.status.value}): "
               f"{proposal.establishment}, retention ended by {proposal.as_of}, proposed by "
               f"{proposal.proposed_by} on {proposal.proposed_at:%Y-%m-%d %H:%M}")
    for approval in proposal.approvals:
        click.echo(f"  {approval.role}: {approval.approved_by} on "
                   f"{approval.approved_at:%Y-%m-%d %H:%M}"
                   f"{'' if approval.roles_verified else ' (role not verified)'}")
    if proposal.visa_reference:
        click.echo(f"  visa of the departmental archives: {proposal.visa_reference} "
                   f"({proposal.visa_by})")
    rows = bordereau_rows(proposal)
    click.echo(f"  {len(rows)} studies, {sum(i.size_bytes for i in proposal.items)} bytes")
    _emit(rows, BORDEREAU_COLUMNS[:8], "table")


@lifecycle.command("propose")
@click.option("--establishment", required=True)
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Default: today.")
@click.option("--by", "user", required=True, help="Who proposes (role archivist).")
@common_options
def lifecycle_propose(establishment: str, as_of: Any, user: str, **options: Any) -> None:
    """List every expired, unheld study of an establishment for destruction (the
    bordereau d'élimination)."""
    with _container(_settings(**options)) as container:
        day = as_of.date() if as_of else container.clock.now().date()
        proposal = _lifecycle_call(lambda: container.lifecycle.propose(
            _staff(user), establishment, day, channel="cli", source=socket.gethostname()))
    _print_proposal(proposal)


@lifecycle.command("proposals")
@click.option("--establishment")
@common_options
def lifecycle_proposals(establishment: str | None, **options: Any) -> None:
    """Destruction proposals, newest first."""
    with _container(_settings(**options)) as container:
        for p in container.lifecycle.proposals(establishment):
            click.echo(f"{p.id:>6} {p.status.value:<11} {p.establishment:<6} as of {p.as_of} "
                       f"by {p.proposed_by} approvals "
                       f"{','.join(a.role for a in p.approvals) or '-'}")


@lifecycle.command("show")
@click.argument("proposal_id", type=int)
@click.option("--csv", "as_csv", is_flag=True, help="The elimination list as CSV.")
@common_options
def lifecycle_show(proposal_id: int, as_csv: bool, **options: Any) -> None:
    """A proposal and its elimination list (printable, or CSV)."""
    from adapters.api.lifecycle import bordereau_csv

    with _container(_settings(**options)) as container:
        proposal = _lifecycle_call(lambda: container.lifecycle.proposal(proposal_id))
    if as_csv:
        click.echo(bordereau_csv(proposal), nl=False)
    else:
        _print_proposal(proposal)


@lifecycle.command("approve")
@click.argument("proposal_id", type=int)
@click.option("--by", "user", required=True, help="Who approves (dim, then director).")
@click.option("--as", "role", type=click.Choice(["dim", "director"]),
              help="Which approval this is [the next one: the DIM's opinion, then the "
                   "director's decision].")
@common_options
def lifecycle_approve(proposal_id: int, user: str, role: str | None, **options: Any) -> None:
    """Approve a proposal: two different people, neither the proposer."""
    with _container(_settings(**options)) as container:
        proposal = _lifecycle_call(lambda: container.lifecycle.approve(
            _staff(user), proposal_id, role, channel="cli", source=socket.gethostname()))
    click.echo(f"proposal {proposal_id}: {proposal.status.value}, approved by "
               + ", ".join(f"{a.approved_by} ({a.role})" for a in proposal.approvals))


@lifecycle.command("visa")
@click.argument("proposal_id", type=int)
@click.option("--reference", required=True, help="The departmental archives' visa.")
@click.option("--by", "user", required=True, help="Who records it (role archivist).")
@common_options
def lifecycle_visa(proposal_id: int, reference: str, user: str, **options: Any) -> None:
    """Record the departmental archives' visa of an approved proposal."""
    with _container(_settings(**options)) as container:
        _lifecycle_call(lambda: container.lifecycle.visa(
            _staff(user), proposal_id, reference, channel="cli", source=socket.gethostname()))
    click.echo(f"proposal {proposal_id}: visa {reference} recorded")


@lifecycle.command("destroy")
@click.argument("proposal_id", type=int)
@click.option("--by", "user", required=True, help="Who destroys (role archivist).")
@common_options
def lifecycle_destroy(proposal_id: int, user: str, **options: Any) -> None:
    """Destroy an approved, visaed proposal; each study is checked again first. Run it again
    after an interruption: it finishes."""
    with _container(_settings(**options)) as container:
        report = _lifecycle_call(lambda: container.lifecycle.destroy(
            _staff(user), proposal_id, channel="cli", source=socket.gethostname(),
            progress=lambda uid: click.echo(f"destroyed {uid}")))
    for uid, why in report.kept:
        click.echo(f"kept {uid}: {why}")
    click.echo(f"{len(report.destroyed)} studies destroyed, {len(report.kept)} kept, "
               f"{report.files_deleted} files deleted")


@lifecycle.command("tombstones")
@click.option("--establishment")
@_FORMAT
@common_options
def lifecycle_tombstones(establishment: str | None, output: str, **options: Any) -> None:
    """What remains of destroyed studies."""
    import json

    from adapters.api.lifecycle import tombstone_json

    with _container(_settings(**options)) as container:
        found = [tombstone_json(t) for t in container.lifecycle.tombstones(establishment)]
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    _emit(found, ("study_instance_uid", "establishment", "study_date", "instances",
                  "size_bytes", "proposal_id", "destroyed_by", "destroyed_at"), output)


@archive.command("compress")
@click.option("--min-age-days", type=float, help="Override the configured age.")
@click.option("--limit", default=1000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Encode and verify, write nothing.")
@common_options
def archive_compress(min_age_days: float | None, limit: int, dry_run: bool,
                     **options: Any) -> None:
    """Compress uncompressed instances losslessly, verified bit for bit (the original goes
    only once the copy is in the index). Progress bar; the ratio achieved at the end."""
    with _container(_settings(**options)) as container:
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
def archive_verify(sample: int, check_all: bool, **options: Any) -> None:
    """Re-read stored files against their SHA-256; a mismatch flags the instance (shown on
    /health, logged, audited)."""
    from adapters.dicom.preservation import check_fixity

    with _container(_settings(**options)) as container:
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
def archive_reassign(study_uid: str, target: str, user: str, reason: str,
                     **options: Any) -> None:
    """File a study under the right patient record (IOCM incorrect worklist entry): no file
    rewritten, kept in the study's history, undone by reassigning back."""
    from mpi.model import Identifier

    try:
        identifier = Identifier.parse(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to") from None
    with _container(_settings(**options)) as container:
        moved = _lifecycle_call(lambda: container.lifecycle.reassign(
            _staff(user), study_uid, identifier, reason, channel="cli",
            source=socket.gethostname()))
    click.echo(f"study {study_uid}: {moved.from_patient} -> {moved.to_patient}")
