"""TLS for trials: `mpi tls dev-ca` writes a certificate authority, a server certificate and
client certificates. Production uses the certificates of the hospital's PKI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from adapters.authorities_file import AuthoritiesFileError, load_authorities
from adapters.cli.common import BadSettingsError, common_options, settings_of
from mpi.model import AuthorityKind

__all__ = ["COMMANDS"]


@click.group()
def tls() -> None:
    """TLS certificates for the TLS listeners (MLLP, DICOM, HTTPS)."""


@tls.command("dev-ca")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--establishment", "establishments", multiple=True, metavar="CODE",
              help="An establishment to write a client certificate for (repeatable) [every "
                   "establishment of the authorities file]")
@click.option("--server-name", "server_names", multiple=True, metavar="NAME",
              help="A name or address of the server certificate (repeatable) [localhost, "
                   "127.0.0.1, ::1 and this host's names]")
@common_options
@click.pass_context
def dev_ca(ctx: click.Context, directory: Path, establishments: tuple[str, ...],
           server_names: tuple[str, ...], **options: Any) -> None:
    """Write into DIRECTORY a test certificate authority (ca.pem), a server certificate
    (server.pem, server-key.pem) and a client certificate per establishment
    (client-CODE.pem, client-CODE-key.pem), keys readable by their owner only. For trials and
    tests: in production the hospital's PKI issues the certificates."""
    from adapters.dev_ca import client_name, write_dev_ca

    settings, _ = settings_of(ctx, **options)
    try:
        registry = load_authorities(settings.authorities)
    except AuthoritiesFileError as exc:
        raise BadSettingsError(exc.message) from None
    declared = {a.code.upper(): a for a in registry.all
                if a.kind is AuthorityKind.ESTABLISHMENT}
    codes = [code.upper() for code in establishments] or list(declared)
    unknown = [code for code in codes if code not in declared]
    if unknown:
        raise BadSettingsError(f"not an establishment of {settings.authorities}: "
                               f"{', '.join(unknown)} (see `mpi authorities`)")
    # An establishment that declares names gets a certificate of its first one.
    names = {code: (declared[code].tls_client_names or (client_name(code),))[0]
             for code in codes}
    written = write_dev_ca(directory, codes, names=names, server_names=server_names or None)
    click.echo(f"CA certificate      {written.ca_cert}  (give it as --tls-client-ca, and to "
               "the peers as the authority to trust)")
    click.echo(f"CA key              {written.ca_key}")
    click.echo(f"server certificate  {written.server_cert}  (--tls-cert; names "
               f"{', '.join(written.server_names)})")
    click.echo(f"server key          {written.server_key}  (--tls-key)")
    missing = []
    for client in written.clients:
        click.echo(f"client {client.establishment:<12} {client.cert}, {client.key}  "
                   f"(name {client.name})")
        if client.name not in declared[client.establishment].tls_client_names:
            missing.append(client)
    if missing:
        click.echo("")
        click.echo(f"declare these names in {settings.authorities}:")
        for client in missing:
            click.echo(f"  [[authority]] code = \"{client.establishment}\": "
                       f"tls_client_names = [\"{client.name}\"]")
    click.echo("")
    click.echo(f"mpi serve --tls-cert {written.server_cert} --tls-key {written.server_key} "
               f"--tls-client-ca {written.ca_cert}")


COMMANDS = (tls,)
