"""Operating the archive's legal lifecycle: retention, legal holds, destruction proposals with
their approvals and visa, tombstones (see docs/pages/lifecycle.md)."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from typing import Any

import click

from adapters.cli.common import CommandError, common_options, emit, open_container

__all__ = ["COMMANDS", "staff", "lifecycle_call"]


def staff(container: Any, user: str) -> Any:
    """The person a lifecycle command acts for (``--by``): a user account of the service
    (`mpi user add NAME --role archivist`), enabled, with the roles it holds. The core checks
    the role each act needs and the separation of duties."""
    from mpi.archive.lifecycle import Staff

    with container.uow_factory(read_only=True) as uow:
        account = uow.users.get(user)
    if account is None:
        raise CommandError(f"no user account {user!r}: create it with "
                           f"`mpi user add {user} --role ROLE`")
    if account.is_disabled:
        raise CommandError(f"the user account {user!r} is disabled")
    return Staff(account.name, frozenset(account.roles))


def lifecycle_call(work: Callable[[], Any]) -> Any:
    from mpi.errors import MPIError

    try:
        return work()
    except MPIError as exc:
        raise CommandError(exc.message) from None


def _emit(rows: list[dict[str, Any]], columns: tuple[str, ...], output: str) -> None:
    emit(output, rows, columns)


@click.group()
def lifecycle() -> None:
    """The archive's legal lifecycle: retention (R.1112-7), legal holds, destruction."""


_FORMAT = click.option("--format", "output", type=click.Choice(["table", "json", "csv"]),
                       default="table", show_default=True,
                       help="A table for people, JSON or CSV for scripts.")


@lifecycle.command("report")
@click.option("--establishment", help="Only this establishment's studies (code).")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]),
              help="Only studies whose retention ends on or before this date.")
@_FORMAT
@common_options
@click.pass_context
def lifecycle_report(ctx: click.Context, establishment: str | None, as_of: Any, output: str,
                     **options: Any) -> None:
    """Each study's end of retention and its basis, whether it is held, its size; then
    the totals by year of expiry."""
    import json

    from adapters.api.lifecycle import row_json, totals_by_year
    from mpi.archive.lifecycle import Staff

    with open_container(ctx, **options) as container:
        rows = container.lifecycle.report(establishment, as_of.date() if as_of else None,
                                          staff=Staff(f"os:{getpass.getuser()}"),
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
@click.pass_context
def lifecycle_hold(ctx: click.Context, person_id: int | None, study_uid: str | None, reason: str, reference: str,
                   user: str, **options: Any) -> None:
    """Place a legal hold on a person or a study: never proposed for destruction."""
    with open_container(ctx, **options) as container:
        hold = lifecycle_call(lambda: container.lifecycle.hold(
            staff(container, user), reason=reason, reference=reference, person_id=person_id,
            study_uid=study_uid, channel="cli", source=socket.gethostname()))
    click.echo(f"hold {hold.id} placed")


@lifecycle.command("holds")
@click.option("--all", "show_all", is_flag=True, help="Released holds too.")
@_FORMAT
@common_options
@click.pass_context
def lifecycle_holds(ctx: click.Context, show_all: bool, output: str, **options: Any) -> None:
    """The legal holds in force (or all of them)."""
    from adapters.api.lifecycle import hold_json

    with open_container(ctx, **options) as container:
        found = container.lifecycle.holds(not show_all)
    _emit([hold_json(h) for h in found], ("id", "person_id", "study_instance_uid", "reason",
                                          "reference", "placed_by", "placed_at", "active"),
          output)


@lifecycle.command("release")
@click.argument("hold_id", type=int)
@click.option("--reason", required=True)
@click.option("--by", "user", required=True, help="Who releases it (role archivist).")
@common_options
@click.pass_context
def lifecycle_release(ctx: click.Context, hold_id: int, reason: str, user: str, **options: Any) -> None:
    """Release a legal hold; the retention of what it covered is computed again."""
    with open_container(ctx, **options) as container:
        lifecycle_call(lambda: container.lifecycle.release(
            staff(container, user), hold_id, reason, channel="cli", source=socket.gethostname()))
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
@click.pass_context
def lifecycle_propose(ctx: click.Context, establishment: str, as_of: Any, user: str, **options: Any) -> None:
    """List every expired, unheld study of an establishment for destruction (the
    bordereau d'élimination)."""
    with open_container(ctx, **options) as container:
        day = as_of.date() if as_of else container.clock.now().date()
        proposal = lifecycle_call(lambda: container.lifecycle.propose(
            staff(container, user), establishment, day, channel="cli", source=socket.gethostname()))
    _print_proposal(proposal)


@lifecycle.command("proposals")
@click.option("--establishment")
@common_options
@click.pass_context
def lifecycle_proposals(ctx: click.Context, establishment: str | None, **options: Any) -> None:
    """Destruction proposals, newest first."""
    with open_container(ctx, **options) as container:
        for p in container.lifecycle.proposals(establishment):
            click.echo(f"{p.id:>6} {p.status.value:<11} {p.establishment:<6} as of {p.as_of} "
                       f"by {p.proposed_by} approvals "
                       f"{','.join(a.role for a in p.approvals) or '-'}")


@lifecycle.command("show")
@click.argument("proposal_id", type=int)
@click.option("--csv", "as_csv", is_flag=True, help="The elimination list as CSV.")
@common_options
@click.pass_context
def lifecycle_show(ctx: click.Context, proposal_id: int, as_csv: bool, **options: Any) -> None:
    """A proposal and its elimination list (printable, or CSV)."""
    from adapters.api.lifecycle import bordereau_csv

    with open_container(ctx, **options) as container:
        proposal = lifecycle_call(lambda: container.lifecycle.proposal(proposal_id))
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
@click.pass_context
def lifecycle_approve(ctx: click.Context, proposal_id: int, user: str, role: str | None, **options: Any) -> None:
    """Approve a proposal: two different people, neither the proposer."""
    with open_container(ctx, **options) as container:
        proposal = lifecycle_call(lambda: container.lifecycle.approve(
            staff(container, user), proposal_id, role, channel="cli", source=socket.gethostname()))
    click.echo(f"proposal {proposal_id}: {proposal.status.value}, approved by "
               + ", ".join(f"{a.approved_by} ({a.role})" for a in proposal.approvals))


@lifecycle.command("visa")
@click.argument("proposal_id", type=int)
@click.option("--reference", required=True, help="The departmental archives' visa.")
@click.option("--by", "user", required=True, help="Who records it (role archivist).")
@common_options
@click.pass_context
def lifecycle_visa(ctx: click.Context, proposal_id: int, reference: str, user: str, **options: Any) -> None:
    """Record the departmental archives' visa of an approved proposal."""
    with open_container(ctx, **options) as container:
        lifecycle_call(lambda: container.lifecycle.visa(
            staff(container, user), proposal_id, reference, channel="cli", source=socket.gethostname()))
    click.echo(f"proposal {proposal_id}: visa {reference} recorded")


@lifecycle.command("destroy")
@click.argument("proposal_id", type=int)
@click.option("--by", "user", required=True, help="Who destroys (role archivist).")
@common_options
@click.pass_context
def lifecycle_destroy(ctx: click.Context, proposal_id: int, user: str, **options: Any) -> None:
    """Destroy an approved, visaed proposal; each study is checked again first. Run it again
    after an interruption: it finishes."""
    with open_container(ctx, **options) as container:
        report = lifecycle_call(lambda: container.lifecycle.destroy(
            staff(container, user), proposal_id, channel="cli", source=socket.gethostname(),
            progress=lambda uid: click.echo(f"destroyed {uid}")))
    for uid, why in report.kept:
        click.echo(f"kept {uid}: {why}")
    click.echo(f"{len(report.destroyed)} studies destroyed, {len(report.kept)} kept, "
               f"{report.files_deleted} files deleted")


@lifecycle.command("tombstones")
@click.option("--establishment")
@_FORMAT
@common_options
@click.pass_context
def lifecycle_tombstones(ctx: click.Context, establishment: str | None, output: str, **options: Any) -> None:
    """What remains of destroyed studies."""
    import json

    from adapters.api.lifecycle import tombstone_json

    with open_container(ctx, **options) as container:
        found = [tombstone_json(t) for t in container.lifecycle.tombstones(establishment)]
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    _emit(found, ("study_instance_uid", "establishment", "study_date", "instances",
                  "size_bytes", "proposal_id", "destroyed_by", "destroyed_at"), output)


COMMANDS = (lifecycle,)
