"""Operating the service: `mpi serve`, `mpi config show`, `mpi db upgrade`, `mpi authorities`,
`mpi jobs`, and `mpi hl7 send` (an MLLP client for trials)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from adapters.authorities_file import AuthoritiesFileError, load_authorities
from adapters.cli.common import (
    BadSettingsError,
    CommandError,
    ListenFailure,
    common_options,
    emit,
    format_option,
    open_container,
    settings_of,
)
from adapters.settings import SECRET_KEYS, Settings, displayed_database_url

__all__ = ["COMMANDS"]


@click.command()
@click.option("--host", help="Address to listen on [MPI_HOST, 127.0.0.1]")
@click.option("--mllp-port", type=int, help="MLLP port [MPI_MLLP_PORT, 2575]")
@click.option("--http-port", type=int, help="HTTP port [MPI_HTTP_PORT, 8080]")
@click.option("--dicom-port", type=int, help="DICOM port, AE title VNA [MPI_DICOM_PORT, 11112]")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False),
              help="The service's TLS certificate (PEM); with --tls-key and --tls-client-ca, "
                   "starts the TLS listeners [MPI_TLS_CERT]")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False),
              help="Its private key (PEM) [MPI_TLS_KEY]")
@click.option("--tls-client-ca", type=click.Path(path_type=Path, dir_okay=False),
              help="Authorities of the accepted client certificates (PEM) [MPI_TLS_CLIENT_CA]")
@click.option("--tls-host", help="Address the TLS listeners listen on [MPI_TLS_HOST, --host]")
@click.option("--mllp-tls-port", type=int, help="MLLP over TLS port [MPI_MLLP_TLS_PORT, 2576]")
@click.option("--dicom-tls-port", type=int,
              help="DICOM over TLS port [MPI_DICOM_TLS_PORT, 2762]")
@click.option("--https-port", type=int, help="HTTPS port [MPI_HTTPS_PORT, 8443]")
@click.option("--viewer-port", type=int,
              help="Port of the OHIF viewer's origin, when installed [MPI_VIEWER_PORT, 8081]")
@click.option("--allow-plaintext", is_flag=True, default=None,
              help="Let the plain listeners listen on an address other than loopback "
                   "[MPI_ALLOW_PLAINTEXT]")
@common_options
@click.pass_context
def serve(ctx: click.Context, **options: Any) -> None:
    """Run the MLLP listener, the HTTP server, the DICOM service and the background jobs
    until SIGTERM/SIGINT, and their TLS listeners when a certificate is given. Creates and
    migrates an SQLite index on its first start."""
    from adapters.logs import configure_logging
    from adapters.serve import ListenError, PlaintextError, check_plaintext, tls_contexts
    from adapters.serve import serve as run
    from adapters.tls import TlsError

    settings, _ = settings_of(ctx, **options)
    configure_logging(settings.log_level, settings.log_format)
    try:  # refused before a database is opened or created
        check_plaintext(settings)
        tls_contexts(settings)
    except (PlaintextError, TlsError) as exc:
        raise BadSettingsError(exc.message) from None
    container = open_container(ctx, create=settings.sqlite_file() is not None, **options)
    announce_first_admin(container)
    try:
        run(container)  # closes the container when it stops
    except ListenError as exc:
        raise ListenFailure(exc.message) from None
    except (PlaintextError, TlsError) as exc:
        raise BadSettingsError(exc.message) from None


def announce_first_admin(container: Any) -> None:
    """On an index without any account, create ``admin`` and print its password once, on
    the console only (never in a log)."""
    password = container.auth.ensure_first_admin()
    if password is None:
        return
    click.echo("\n".join([
        "",
        "first start: created the user account 'admin' (role admin) with the password",
        f"    {password}",
        "shown this once. Log in at /console/login, then change it:",
        "    mpi user password admin",
        "and create the accounts of the staff with `mpi user add NAME --role ROLE`.",
        "",
    ]), err=True)


@click.group()
def config() -> None:
    """The settings in force."""


@config.command("show")
@format_option
@common_options
@click.pass_context
def config_show(ctx: click.Context, output_format: str, **options: Any) -> None:
    """Every setting in force, and where it came from (flag, environment variable,
    configuration file or default); secrets masked."""
    settings, provenance = settings_of(ctx, **options)
    rows = []
    for key, field in Settings.model_fields.items():
        value = getattr(settings, key)
        if key in SECRET_KEYS and value:
            value = "********"
        elif key == "database_url" and value:
            value = displayed_database_url(str(value))
        origin = provenance[key]
        rows.append({"setting": key, "value": "" if value is None else str(value),
                     "source": origin.source + (f" ({origin.origin})" if origin.origin else ""),
                     "description": field.description or ""})
    rows.append({"setting": "(database in use)",
                 "value": displayed_database_url(settings.resolved_database_url()),
                 "source": "derived", "description": "database_url, else data_dir/mpi.sqlite3"})
    emit(output_format, rows, ("setting", "value", "source", "description"))


@click.group()
def db() -> None:
    """The database schema."""


@db.command()
@common_options
@click.pass_context
def upgrade(ctx: click.Context, **options: Any) -> None:
    """Create the index or migrate it to the current schema."""
    from adapters.sql.migrate import current_revision

    with open_container(ctx, create=True, **options) as container:
        click.echo(f"database at revision {current_revision(container.engine)}")


@click.command()
@format_option
@common_options
@click.pass_context
def authorities(ctx: click.Context, output_format: str, **options: Any) -> None:
    """The identifier domains, who speaks for them (MSH-4, AE titles, TLS client certificate
    names), the ITI-10 consumers
    and the C-MOVE destinations."""
    settings, _ = settings_of(ctx, **options)
    try:
        registry = load_authorities(settings.authorities)
    except AuthoritiesFileError as exc:
        raise BadSettingsError(exc.message) from None
    rows = [{"code": a.code, "kind": a.kind.value, "oid": a.oid, "namespace": a.namespace,
             "speaks_for_it": [*(f"MSH-4 {f}" for f in a.sending_facilities),
                               *(f"AE {t}" for t in a.ae_titles),
                               *(f"TLS {n}" for n in a.tls_client_names)]}
            for a in registry.all]
    if output_format == "json":
        emit("json", rows, (), document={
            "authorities": rows,
            "consumers": [{"name": c.name, "host": c.host, "port": c.port,
                           "domains": list(c.domains)} for c in registry.consumers],
            "dicom_destinations": [{"ae_title": d.ae_title, "host": d.host, "port": d.port}
                                   for d in registry.destinations.values()]})
        return
    emit("table", rows, ("code", "kind", "oid", "namespace", "speaks_for_it"))
    click.echo("")
    for c in registry.consumers:
        click.echo(f"consumer {c.name}: {c.host}:{c.port} domains {', '.join(c.domains)}")
    for d in registry.destinations.values():
        click.echo(f"C-MOVE destination {d.ae_title}: {d.host}:{d.port}")


@click.group(invoke_without_command=True)
@format_option
@common_options
@click.pass_context
def jobs(ctx: click.Context, output_format: str, **options: Any) -> None:
    """The background jobs `mpi serve` runs: what each does and what waits for it (use
    `mpi jobs run NAME` to run one pass by hand)."""
    ctx.obj = options
    if ctx.invoked_subcommand is not None:
        return
    with open_container(ctx, **options) as container:
        snapshot = container.jobs.snapshot()
    rows = [{"name": j["name"], "every": f"{j['interval']:g}s", "backlog": j["backlog"],
             "what": j["description"]} for j in snapshot]
    emit(output_format, rows, ("name", "every", "backlog", "what"), document=snapshot)


@jobs.command("run")
@click.argument("name")
@click.pass_context
def jobs_run(ctx: click.Context, name: str) -> None:
    """Run one pass of a job now, and say what waits for it afterwards."""
    from adapters.jobs import UnknownJobError

    with open_container(ctx, **ctx.obj) as container:
        try:
            more = asyncio.run(container.jobs.run_once(name))
        except UnknownJobError as exc:
            raise CommandError(exc.message) from None
        except Exception as exc:  # the pass's own failure, reported to the operator
            raise CommandError(f"{name} failed: {exc}") from None
        backlog = container.jobs.backlog(name)
    click.echo(f"{name}: one pass done; backlog {'-' if backlog is None else backlog}"
               f"{' (more is waiting)' if more else ''}")


@click.group()
def hl7() -> None:
    """HL7 v2 tools for trials and integration."""


@hl7.command("send")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(path_type=Path, exists=True, dir_okay=False, allow_dash=True))
@click.option("--host", help="Where the MLLP listener is [the service's MPI_HOST]")
@click.option("--port", type=int, help="Its port [the service's MPI_MLLP_PORT, 2575; "
                                        "MPI_MLLP_TLS_PORT, 2576, over TLS]")
@click.option("--client-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Send over TLS with this client certificate (PEM)")
@click.option("--client-key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The client certificate's key (PEM)")
@click.option("--server-ca", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The authority of the service's certificate (PEM) [the system's]")
@click.option("--timeout", type=float, default=10.0, show_default=True)
@common_options
@click.pass_context
def hl7_send(ctx: click.Context, files: tuple[Path, ...], host: str | None, port: int | None,
             client_cert: Path | None, client_key: Path | None, server_ca: Path | None,
             timeout: float, **options: Any) -> None:
    """Send each message of FILES (ER7, one message per file or several separated by a
    blank line; `-` reads standard input) over MLLP and print each acknowledgement. Exits 1
    when one is not AA. Talks to the service the settings describe unless told otherwise;
    with --client-cert, over TLS to its MLLP TLS port."""
    import ssl

    from adapters.hl7v2.mllp import MLLPClient, MLLPError

    settings, _ = settings_of(ctx, **options)
    tls = None
    if client_cert is not None or client_key is not None:
        if client_cert is None or client_key is None:
            raise BadSettingsError("--client-cert and --client-key go together")
        tls = ssl.create_default_context(cafile=server_ca)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            tls.load_cert_chain(client_cert, client_key)
        except ssl.SSLError as exc:
            raise BadSettingsError(f"{client_cert} and {client_key} are not a PEM "
                                   f"certificate and its key: {exc}") from None
    host = host or (settings.resolved_tls_host() if tls else settings.host)
    if tls is not None and host in ("0.0.0.0", "::"):
        host = "localhost"
    port = port or (settings.mllp_tls_port if tls else settings.mllp_port)

    messages: list[bytes] = []
    for path in files:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        text = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        messages += [m.strip(b"\r") + b"\r" for m in text.split(b"\r\r") if m.strip(b"\r")]

    async def exchange() -> list[bytes]:
        client = await MLLPClient.connect(host, port, timeout, tls=tls)
        try:
            return [await client.request(message, timeout) for message in messages]
        finally:
            await client.close()

    try:
        replies = asyncio.run(exchange())
    except (MLLPError, OSError) as exc:
        refused = " (the service refused the TLS connection: see its log)" if tls else ""
        raise CommandError(f"cannot exchange with {host}:{port}: {exc}{refused}") from None
    failed = 0
    for reply in replies:
        text = reply.decode("utf-8", errors="replace").replace("\r", "\n").strip()
        click.echo(text + "\n")
        if "MSA|AA|" not in reply.decode("latin-1"):
            failed += 1
    if failed:
        raise CommandError(f"{failed} of {len(replies)} message(s) not accepted")


COMMANDS = (serve, config, db, authorities, jobs, hl7)
