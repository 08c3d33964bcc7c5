"""Operating the identity index: the journal of inbound messages, the review queue, the access
trail, initial loads, the matching model and its evaluation."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from adapters.cli.common import (
    CommandError,
    audit_cli,
    common_options,
    emit,
    format_option,
    open_container,
)
from mpi.audit import AuditAction
from mpi.errors import MPIError, UnknownAuthorityError, UnknownIdentifierError
from mpi.matching.model import MatchModel
from mpi.model import JournalStatus, ReviewStatus

__all__ = ["COMMANDS"]


# -- the journal ---------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Every message, not only failures.")
@click.option("--limit", default=50, show_default=True)
@format_option
@common_options
@click.pass_context
def journal(ctx: click.Context, show_all: bool, limit: int, output_format: str,
            **options: Any) -> None:
    """The inbound message journal, newest first: the failures (AE/AR), or --all (use a
    subcommand to show or replay one)."""
    ctx.obj = options
    if ctx.invoked_subcommand is not None:
        return
    statuses = None if show_all else [JournalStatus.ERROR, JournalStatus.REJECTED]
    with open_container(ctx, **options) as container:
        with container.uow_factory(read_only=True) as uow:
            entries = uow.journal.list(statuses, limit)
    rows = [{"id": e.id, "received": f"{e.received_at:%Y-%m-%d %H:%M:%S}",
             "status": e.status.value,
             "reply": f"{e.ack_code or ''} {e.error_code or ''}".strip(),
             "sender": e.sender, "control_id": e.control_id, "type": e.message_type,
             "reason": e.error_text} for e in entries]
    emit(output_format, rows,
         ("id", "received", "status", "reply", "sender", "control_id", "type", "reason"))


@journal.command("show")
@click.argument("entry_id", type=int)
@click.pass_context
def journal_show(ctx: click.Context, entry_id: int) -> None:
    """Print one journaled message and the reply it got."""
    with open_container(ctx, **ctx.obj) as container:
        with container.uow_factory(read_only=True) as uow:
            entry = uow.journal.get(entry_id)
        if entry is None:
            raise CommandError(f"no journal entry {entry_id}")
        # The raw message carries the patient's identity: the read is traced.
        audit_cli(container, AuditAction.READ, f"journal show {entry_id}", ())
    click.echo(f"entry {entry.id}: {entry.status.value}, {entry.ack_code} "
               f"{entry.error_code or ''} {entry.error_text or ''}")
    click.echo(entry.raw.replace("\r", "\n"))
    click.echo("--- reply")
    click.echo((entry.reply or "").replace("\r", "\n"))


@journal.command("replay")
@click.argument("entry_id", type=int)
@click.pass_context
def journal_replay(ctx: click.Context, entry_id: int) -> None:
    """Apply a failed message again, after the cause was fixed."""
    with open_container(ctx, **ctx.obj) as container:
        try:
            entry = container.hl7.replay(entry_id)
        except KeyError:
            raise CommandError(f"no journal entry {entry_id}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    if entry.status is JournalStatus.REPLAYED:
        click.echo(f"entry {entry_id} applied")
    else:
        click.echo(f"entry {entry_id} still fails: {entry.error_text}", err=True)
        sys.exit(1)


# -- the review queue ----------------------------------------------------------------------


@click.group()
def review() -> None:
    """The review queue of potential duplicates (identity vigilance)."""


@review.command("list")
@click.option("--all", "show_all", is_flag=True, help="Decided tasks too.")
@click.option("--limit", default=50, show_default=True)
@format_option
@common_options
@click.pass_context
def review_list(ctx: click.Context, show_all: bool, limit: int, output_format: str,
                **options: Any) -> None:
    """Review tasks, oldest first: the open ones, or --all."""
    from mpi.matching.vetoes import VETOES

    with open_container(ctx, **options) as container:
        with container.uow_factory(read_only=True) as uow:
            tasks, total = uow.reviews.list(None if show_all else ReviewStatus.OPEN, 0, limit)
        audit_cli(container, AuditAction.SEARCH, "review list", (t.person_id for t in tasks))
    rows = [{"task": t.id, "kind": t.kind.value, "status": t.status.value, "record": t.record_id,
             "person": t.person_id, "probability": t.score,
             # Why the task was not linked automatically: the vetoes flagged in its evidence.
             "why_not_linked": [v.name for v in VETOES if t.evidence.get(v.name)],
             "decision": f"{t.decision.value} by {t.decided_by}" if t.decision else None}
            for t in tasks]
    if output_format == "table":
        click.echo(f"{total} task(s)")
    emit(output_format, rows,
         ("task", "kind", "status", "record", "person", "probability", "why_not_linked",
          "decision"),
         document={"total": total, "tasks": rows})


def _text(value: object) -> str:
    """A demographic value as a person reads it (given names joined, dates ISO)."""
    if value is None or value == ():
        return ""
    if isinstance(value, tuple | list):
        return " ".join(str(v) for v in value)
    return str(value)


@review.command("show")
@click.argument("task_id", type=int)
@common_options
@click.pass_context
def review_show(ctx: click.Context, task_id: int, **options: Any) -> None:
    """One task: the record and the candidate side by side, with the evidence per field."""
    from mpi.matching.vetoes import VETOES
    from mpi.review import show_review

    with open_container(ctx, **options) as container:
        try:
            with container.uow_factory(read_only=True) as uow:
                view = show_review(uow, container.identity, task_id)
        except UnknownIdentifierError as exc:
            raise CommandError(exc.message) from None
        audit_cli(container, AuditAction.READ, f"review show {task_id}",
                  (p.person.id for p in (view.record_person, view.candidate) if p))
    task = view.task
    evidence = task.evidence
    click.echo(f"task {task.id} ({task.kind.value}, {task.status.value}), "
               f"probability {task.score:.6f}")
    if evidence.get("reason"):
        click.echo(f"why: {evidence['reason']}")
    other = view.candidate_record
    left = view.record.demographics.as_dict()
    if "held" in evidence:  # a held update: the record as it is beside the version held
        right = dict(evidence["held"].get("demographics", {}))
        header = f"held update (from {evidence['held'].get('sent_by', '?')})"
        left["ins"], right["ins"] = evidence["current"].get("ins"), evidence["held"].get("ins")
    else:
        right = other.demographics.as_dict() if other else {}
        header = str(other.identifier) if other else "(candidate person)"
    click.echo(f"{'':<18}{str(view.record.identifier):<34}{header:<34}")
    for name in left:
        if left[name] or right.get(name):
            click.echo(f"{name:<18}{_text(left[name]):<34}{_text(right.get(name)):<34}")
    if evidence.get("fields"):
        click.echo(f"  {'FIELD':<14} {'LEVEL':<8} WEIGHT")
        for field, detail in evidence["fields"].items():
            click.echo(f"  {field:<14} {detail['level']:<8} {detail['weight']:+.2f} bits")
        click.echo(f"  total {evidence.get('weight', 0.0):+.2f} bits, probability "
                   f"{evidence.get('probability', task.score):.6f}")
    if evidence.get("blocking_keys"):
        click.echo("found by blocking keys: " + ", ".join(evidence["blocking_keys"]))
    if evidence.get("runner_up"):
        runner = evidence["runner_up"]
        click.echo(f"runner-up: person {runner['person']} at {runner['weight']:+.2f} bits"
                   + (" (too close: ambiguous)" if evidence.get("ambiguous") else ""))
    model = evidence.get("model")
    if model:
        click.echo(f"model {model['version']}: auto link at p >= "
                   f"{model['auto_link_probability']}, review at p >= "
                   f"{model['review_probability']}, ambiguity margin "
                   f"{model['ambiguity_margin_bits']} bits")
    for veto in VETOES:
        if evidence.get(veto.name):
            click.echo(f"  warning: {veto.explanation}")
    if view.candidate:
        click.echo("candidate person holds: "
                   + ", ".join(str(i) for i in view.candidate.identifiers))
    if task.decision:
        click.echo(f"decided {task.decision.value} by {task.decided_by} at "
                   f"{task.decided_at:%Y-%m-%d %H:%M}: {task.reason}" if task.decided_at else
                   f"decided {task.decision.value} by {task.decided_by}: {task.reason}")


@review.command("decide")
@click.argument("task_id", type=int)
@click.option("--decision", required=True,
              type=click.Choice(["link", "keep-apart", "merge-persons", "unlink",
                                 "apply-update", "discard-update"]),
              help="apply-update and discard-update decide a held update (collision).")
@click.option("--by", "user", required=True, help="Who decides (kept with the decision).")
@click.option("--reason", required=True, help="Why (kept with the decision).")
@common_options
@click.pass_context
def review_decide(ctx: click.Context, task_id: int, decision: str, user: str, reason: str,
                  **options: Any) -> None:
    """Decide a task; the decision is audited (who, when, why) and sticky."""
    from mpi.identity import Actor
    from mpi.model import ReviewDecision, ReviewTask
    from mpi.retry import retry_on_conflict
    from mpi.review import decide_review

    actor = Actor(f"user:{user}", None)
    with open_container(ctx, **options) as container:

        def decide() -> ReviewTask:
            with container.uow_factory() as uow:
                decided = decide_review(uow, container.identity, task_id,
                                        ReviewDecision(decision), actor, reason)
                uow.commit()
                return decided

        try:
            task = retry_on_conflict(decide)
        except MPIError as exc:
            raise CommandError(exc.message) from None
    click.echo(f"task {task.id}: {task.decision.value if task.decision else ''} "
               f"by {task.decided_by}")


# -- the access trail ----------------------------------------------------------------------


@click.command("audit")
@click.option("--person", "person_id", type=int, help="Only accesses to this person (id).")
@click.option("--actor", help="Only accesses by this actor: as recorded (user:jdupont, "
                              "hl7:CHRU, dicom:CHRU, os:root) or the bare name (jdupont).")
@click.option("--limit", default=100, show_default=True)
@format_option
@common_options
@click.pass_context
def audit_trail(ctx: click.Context, person_id: int | None, actor: str | None, limit: int,
                output_format: str, **options: Any) -> None:
    """The access trail, newest first: who read or changed which person's data, when, how.
    Actors are recorded as KIND:NAME: user (a person, over HTTP or a decision), client (a
    system over HTTP), hl7 (a sending facility), dicom (a calling AE title), os (the operating
    system user of a command), import (the user of `mpi import`)."""
    with open_container(ctx, **options) as container:
        events = container.audit.search(person_id=person_id, actor=actor, limit=limit)
        # Reading the trail is itself an access to patient data: it says who saw whom.
        audit_cli(container, AuditAction.SEARCH,
                  f"audit --person {person_id or '-'} --actor {actor or '-'}",
                  (p for e in events for p in e.persons))
    rows = [{"when": f"{e.occurred_at:%Y-%m-%dT%H:%M:%S}Z", "channel": e.channel,
             "action": e.action.value, "actor": e.actor, "from": e.source,
             "persons": list(e.persons), "outcome": e.outcome, "what": e.subject}
            for e in events]
    emit(output_format, rows,
         ("when", "channel", "action", "actor", "from", "persons", "outcome", "what"))


# -- initial loads -------------------------------------------------------------------------


@click.command("import")
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
@click.pass_context
def import_records(ctx: click.Context, file: Path, authority: str | None,
                   file_format: str | None, mapping_file: Path | None,
                   pairs: tuple[str, ...], delimiter: str | None, encoding: str,
                   date_formats: tuple[str, ...], batch_size: int, restart: bool,
                   user: str | None, **options: Any) -> None:
    """Load a patient table (CSV or NDJSON extract of an HIS) through the same rules and
    matching as the ADT feed, in batches, with a progress bar. Resumable: run the same command
    again after an interruption. Targets: id, authority, birth_family_name, used_family_name,
    given_names, used_given_name, birth_date, sex, birthplace, street, city, postcode, country,
    phone, death_date, ins, reliability."""
    from adapters.bulk_import import (
        DEFAULT_DATE_FORMATS,
        ImportOptions,
        UnusableFileError,
        import_file,
        load_mapping,
    )

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
    with open_container(ctx, **options) as container, click.progressbar(
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
            raise CommandError(str(exc)) from None
    if report.skipped:
        click.echo(f"{report.skipped} rows were done by an earlier run")
    click.echo(f"{report.rows} rows in {report.seconds:.1f} s ({report.rate:.0f} rows/s): "
               f"{report.imported} imported, {report.rejected} rejected")
    if report.rejected:
        click.echo(f"rejected rows and reasons: {file.with_name(file.name + '.rejects.csv')}")


# -- the matching model --------------------------------------------------------------------


@click.command()
@click.option("--sample", default=200_000, show_default=True,
              help="Records read from the database to learn from.")
@click.option("--activate/--no-activate", default=False, show_default=True,
              help="Put the new model in force (check it with `mpi model` first).")
@common_options
@click.pass_context
def train(ctx: click.Context, sample: int, activate: bool, **options: Any) -> None:
    """Re-estimate the matching model (u from random pairs, m by EM) from the live database and
    store it as a new version; with --activate, put it in force (restart `mpi serve`). A
    degenerate estimate is refused."""
    from mpi.matching.training import retrain

    with open_container(ctx, **options) as container, container.uow_factory() as uow:
        try:
            trained = retrain(uow, sample=sample, now=datetime.now(UTC), activate=activate)
        except ValueError as exc:
            raise CommandError(f"cannot train: {exc}") from None
        uow.commit()
    model = trained.model
    click.echo(f"model {model.version} from {trained.records} records, match share among "
               f"candidate pairs {model.prior:.4f}{' (in force)' if activate else ''}")
    _print_model(model, "table")


@click.command()
@format_option
@common_options
@click.pass_context
def model(ctx: click.Context, output_format: str, **options: Any) -> None:
    """The matching model in force (m, u and weight per field and level) and its versions."""
    from mpi.matching.training import model_in_force

    with open_container(ctx, **options) as container, \
            container.uow_factory(read_only=True) as uow:
        current = model_in_force(uow)
        versions = uow.models.versions()
    if output_format == "json":
        emit("json", [], (), document={
            "in_force": current.version, "model": current.to_json(),
            "versions": [{"version": v, "created": c.isoformat(), "in_force": a}
                         for v, c, a in versions]})
        return
    click.echo(f"in force: {current.version}")
    _print_model(current, "table")
    emit("table", [{"version": v, "created": f"{c:%Y-%m-%d %H:%M}",
                    "in_force": "yes" if a else ""} for v, c, a in versions],
         ("version", "created", "in_force"))


def _print_model(model: MatchModel, output_format: str) -> None:
    from mpi.matching.comparisons import comparison_of

    def meaning(name: str, level: str) -> str:
        # A stored model may weigh a field or level the code no longer declares.
        try:
            return comparison_of(name).level(level).description
        except KeyError:
            return "(not declared)"

    rows = [{"field": name, "level": level, "m": f"{m:.4f}",
             "u": f"{model.u[name][level]:.5f}",
             "weight": f"{model.level_weight(name, level):.2f}",
             "meaning": meaning(name, level)}
            for name, levels in model.m.items() for level, m in levels.items()]
    emit(output_format, rows, ("field", "level", "m", "u", "weight", "meaning"))
    click.echo(f"auto link at p >= {model.auto_link_probability}, review at p >= "
               f"{model.review_probability}, ambiguity margin {model.ambiguity_margin_bits} bits")


@click.command()
@click.option("--persons", default=10_000, show_default=True)
@click.option("--seed", default=2026, show_default=True)
@click.option("--database-url", help="An EMPTY database to replay into (default: a temporary "
                                      "SQLite file).")
@click.option("--error-factor", default=1.0, show_default=True,
              type=click.FloatRange(min=0.0),
              help="Multiply every data-entry error rate of the population (2: twice as many).")
def evaluate(persons: int, seed: int, database_url: str | None, error_factor: float) -> None:
    """Replay the synthetic population through the feed and measure the links against the
    ground truth: precision, recall, F1, false merges, review queue, missed pairs by cause."""
    from adapters.evaluation import evaluate as run

    with click.progressbar(length=1, label="replaying", file=sys.stderr,
                           show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        report = run(persons, seed, database_url, progress, error_factor)
    for line in report.lines():
        click.echo(line)


COMMANDS = (journal, review, audit_trail, import_records, train, model, evaluate)
