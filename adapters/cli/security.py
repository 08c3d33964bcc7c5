"""Who may call the service: systems (`mpi client`), people (`mpi user`) and the service's
signing keys (`mpi keys`). See docs/pages/security.md.

Secrets are printed once, when they are made, and never again: the index keeps only slow
hashes. Every change is in the access trail (actor: the operating-system user).
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from pathlib import Path
from typing import Any

import click

from adapters.cli.common import CommandError, common_options, emit, format_option, open_container

__all__ = ["COMMANDS", "read_password"]


def _trace(container: Any, action: Any, subject: str, detail: dict[str, Any]) -> None:
    from mpi.audit import AuditEvent

    container.audit.record(AuditEvent(
        occurred_at=container.clock.now(), channel="cli", action=action,
        actor=f"os:{getpass.getuser()}", subject=subject, outcome="success",
        source=socket.gethostname(), detail=detail))


def _refused(work: Any) -> Any:
    from mpi.errors import MPIError

    try:
        return work()
    except MPIError as exc:
        raise CommandError(exc.message) from None


# -- systems ---------------------------------------------------------------------------------

@click.group()
def client() -> None:
    """Systems that call the HTTP API (OAuth 2.0 client credentials)."""


@client.command("add")
@click.argument("name")
@click.option("--establishment", help="The establishment it speaks for (code); without it "
                                      "a regional system, which reads and never writes.")
@click.option("--scope", "scopes", required=True,
              help='SMART v2 scopes, space-separated: "system/Patient.rs '
                   'system/ImagingStudy.rs" (also system/Patient.cud, '
                   'system/ImagingStudy.c, system/AuditEvent.rs, system/*.rs).')
@click.option("--jwks-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Its public keys (a JWK set): it signs client assertions, no secret.")
@click.option("--jwks-url", help="Where its public keys are published (a JWK set).")
@common_options
@click.pass_context
def client_add(ctx: click.Context, name: str, establishment: str | None, scopes: str,
               jwks_file: Path | None, jwks_url: str | None, **options: Any) -> None:
    """Register a system; prints one JSON object with its client_id, and its client_secret
    when it has no key set (shown this once: keep it in the system's configuration)."""
    from mpi.audit import AuditAction

    if jwks_file and jwks_url:
        raise click.UsageError("give --jwks-file or --jwks-url, not both")
    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.loads(jwks_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"{jwks_file}: not a JWK set ({exc})") from None
        if not isinstance(jwks, dict):
            raise CommandError(f"{jwks_file}: not a JWK set")
    if jwks_url is not None and not jwks_url.startswith(("https://", "http://127.0.0.1",
                                                         "http://localhost")):
        raise CommandError("--jwks-url must be an https:// address (or on loopback)")
    with open_container(ctx, **options) as container:
        made = _refused(lambda: container.auth.add_client(name, scopes, establishment, jwks,
                                                          jwks_url))
        _trace(container, AuditAction.CREATE, f"client {made.client.client_id}",
               {"name": name, "scope": " ".join(str(s) for s in made.client.scopes),
                "establishment": made.client.establishment})
    body: dict[str, Any] = {
        "client_id": made.client.client_id, "name": name,
        "establishment": made.client.establishment,
        "scope": " ".join(str(s) for s in made.client.scopes),
    }
    if made.secret is not None:
        body["client_secret"] = made.secret
    click.echo(json.dumps(body, indent=2))


def _client_row(c: Any) -> dict[str, Any]:
    return {"client_id": c.client_id, "name": c.name, "establishment": c.establishment,
            "scope": " ".join(str(s) for s in c.scopes),
            "authentication": ("private_key_jwt" if (c.jwks or c.jwks_url)
                               else "client_secret_basic"),
            "created_at": c.created_at.isoformat() if c.created_at else None,
            "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None}


@client.command("list")
@format_option
@common_options
@click.pass_context
def client_list(ctx: click.Context, output_format: str, **options: Any) -> None:
    """The registered systems (never their secrets)."""
    with open_container(ctx, **options) as container:
        rows = [_client_row(c) for c in container.auth.clients()]
    emit(output_format, rows, ("client_id", "name", "establishment", "scope",
                               "authentication", "revoked_at"))


@client.command("revoke")
@click.argument("name")
@common_options
@click.pass_context
def client_revoke(ctx: click.Context, name: str, **options: Any) -> None:
    """Revoke a system (by name or client_id): its tokens stop working at once."""
    from mpi.audit import AuditAction

    with open_container(ctx, **options) as container:
        revoked = _refused(lambda: container.auth.revoke_client(name))
        _trace(container, AuditAction.UPDATE, f"client {revoked.client_id}",
               {"revoked": True})
    click.echo(f"client {revoked.name} ({revoked.client_id}) revoked")


# -- people ----------------------------------------------------------------------------------

def read_password(from_stdin: bool, confirm: bool = True) -> str:
    """A password from standard input (its first line) or from a prompt that does not
    echo."""
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    password: str = click.prompt("password", hide_input=True,
                                 confirmation_prompt=confirm, err=True)
    return password


@click.group()
def user() -> None:
    """People who use the console and the APIs, and their roles."""


@user.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True,
              help="clinician, identity-vigilance, archivist, dim, director, auditor, admin "
                   "(repeat for several).")
@click.option("--establishment", help="The establishment the person works for (code).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input instead of a prompt.")
@common_options
@click.pass_context
def user_add(ctx: click.Context, name: str, roles: tuple[str, ...], establishment: str | None,
             password_stdin: bool, **options: Any) -> None:
    """Create a person's account (password of at least 12 characters, kept as an argon2id
    hash)."""
    from mpi.audit import AuditAction

    password = read_password(password_stdin)
    with open_container(ctx, **options) as container:
        account = _refused(lambda: container.auth.add_user(name, password, roles,
                                                           establishment))
        _trace(container, AuditAction.CREATE, f"user {name}",
               {"roles": sorted(account.roles), "establishment": account.establishment})
    click.echo(f"user {name} added ({', '.join(sorted(account.roles))})")


@user.command("list")
@format_option
@common_options
@click.pass_context
def user_list(ctx: click.Context, output_format: str, **options: Any) -> None:
    """The accounts and their roles."""
    with open_container(ctx, **options) as container:
        rows = [{"name": u.name, "roles": sorted(u.roles), "establishment": u.establishment,
                 "created_at": u.created_at.isoformat() if u.created_at else None,
                 "disabled_at": u.disabled_at.isoformat() if u.disabled_at else None}
                for u in container.auth.users()]
    emit(output_format, rows, ("name", "roles", "establishment", "created_at", "disabled_at"))


@user.command("disable")
@click.argument("name")
@common_options
@click.pass_context
def user_disable(ctx: click.Context, name: str, **options: Any) -> None:
    """Disable an account: its sessions end at once, it cannot log in again."""
    from mpi.audit import AuditAction

    with open_container(ctx, **options) as container:
        _refused(lambda: container.auth.disable_user(name))
        _trace(container, AuditAction.UPDATE, f"user {name}", {"disabled": True})
    click.echo(f"user {name} disabled")


@user.command("enable")
@click.argument("name")
@common_options
@click.pass_context
def user_enable(ctx: click.Context, name: str, **options: Any) -> None:
    """Enable a disabled account again: it logs in with its password, roles and
    establishment as they were."""
    from mpi.audit import AuditAction

    with open_container(ctx, **options) as container:
        _refused(lambda: container.auth.enable_user(name))
        _trace(container, AuditAction.UPDATE, f"user {name}", {"disabled": False})
    click.echo(f"user {name} enabled")


@user.command("roles")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True,
              help="The roles it holds from now on, in place of its own: clinician, "
                   "identity-vigilance, archivist, dim, director, auditor, admin (repeat for "
                   "several).")
@click.option("--establishment", help="The establishment the person works for from now on "
                                      "(code); without it or --no-establishment, unchanged.")
@click.option("--no-establishment", is_flag=True,
              help="The person works for no establishment from now on (regional staff).")
@common_options
@click.pass_context
def user_roles(ctx: click.Context, name: str, roles: tuple[str, ...],
               establishment: str | None, no_establishment: bool, **options: Any) -> None:
    """Set a person's roles, and their establishment (their open sessions end)."""
    from adapters.auth.service import UNCHANGED
    from mpi.audit import AuditAction

    if establishment is not None and no_establishment:
        raise click.UsageError("give --establishment or --no-establishment, not both")
    code = None if no_establishment else (
        UNCHANGED if establishment is None else establishment)
    with open_container(ctx, **options) as container:
        account = _refused(lambda: container.auth.set_roles(name, roles, code))
        _trace(container, AuditAction.UPDATE, f"user {name}",
               {"roles": sorted(account.roles), "establishment": account.establishment})
    click.echo(f"roles of {name}: {', '.join(sorted(account.roles))}; establishment: "
               f"{account.establishment or 'none'}")


@user.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True,
              help="Read the new password from standard input instead of a prompt.")
@common_options
@click.pass_context
def user_password(ctx: click.Context, name: str, password_stdin: bool, **options: Any) -> None:
    """Set a person's password (their open sessions end)."""
    from mpi.audit import AuditAction

    password = read_password(password_stdin)
    with open_container(ctx, **options) as container:
        _refused(lambda: container.auth.set_password(name, password))
        _trace(container, AuditAction.UPDATE, f"user {name}", {"password": "changed"})
    click.echo(f"password of {name} changed")


# -- keys ------------------------------------------------------------------------------------

@click.group()
def keys() -> None:
    """The keys the service signs its tokens with (in the data folder's keys/)."""


@keys.command("list")
@format_option
@common_options
@click.pass_context
def keys_list(ctx: click.Context, output_format: str, **options: Any) -> None:
    """The published keys, newest (the one that signs) last."""
    with open_container(ctx, **options) as container:
        published = container.auth.tokens.keys.jwks()["keys"]
    rows = [{"kid": k["kid"], "algorithm": k["alg"], "signs": i == len(published) - 1}
            for i, k in enumerate(published)]
    emit(output_format, rows, ("kid", "algorithm", "signs"))


@keys.command("rotate")
@click.option("--retire", "keep", type=click.IntRange(min=1), default=None,
              help="Then delete all but the KEEP newest keys (tokens signed by the others "
                   "stop working; wait a token lifetime after a rotation).")
@common_options
@click.pass_context
def keys_rotate(ctx: click.Context, keep: int | None, **options: Any) -> None:
    """Add a new signing key: it signs from now on, the older ones still verify."""
    from mpi.audit import AuditAction

    with open_container(ctx, **options) as container:
        signing = container.auth.tokens.keys
        kid = signing.rotate()
        retired = signing.retire(keep) if keep is not None else 0
        _trace(container, AuditAction.UPDATE, "signing keys", {"new_kid": kid,
                                                                "retired": retired})
    click.echo(f"new signing key {kid}" + (f"; {retired} retired" if retired else ""))


COMMANDS = (client, user, keys)
