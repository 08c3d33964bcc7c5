"""`mpi serve`: the MLLP listener, the HTTP server, the DICOM service and the background
loops in one process, stopped cleanly by SIGTERM or SIGINT.

With a TLS certificate, key and client authorities, TLS listeners start beside the plain ones
(MLLP and DICOM with a client certificate required, HTTPS with one optional; see
``adapters/tls.py``). The plain listeners listen on loopback only, unless allow_plaintext says
otherwise: the network is served over TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent

import uvicorn
from fastapi import FastAPI

from adapters.bootstrap import bootstrap, http_app, viewer_http_app
from adapters.container import Container
from adapters.dicom.scp import DicomServer
from adapters.errors import AdapterError
from adapters.hl7v2.listener import in_process_handler, mllp_server, mllp_tls
from adapters.hl7v2.mllp import MLLPServer
from adapters.hl7v2.workers import WorkerGroup, serve_handed_connections
from adapters.http.workers import HttpWorkerGroup, MainProcess
from adapters.logs import configure_logging, log_event
from adapters.metrics import leave_metrics_directory, use_metrics_directory
from adapters.settings import Settings, displayed_database_url
from adapters.tls import ClientIdentities, TlsTrail, is_loopback, server_context
from adapters.viewer import installed
from adapters.viewer.routes import VIEWER_PORT_STATE

__all__ = ["serve", "run_services", "hl7_worker", "http_worker", "ListenError", "PlaintextError",
           "check_plaintext", "TlsContexts", "tls_contexts"]

log = logging.getLogger("mpi.serve")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process stops all its servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PlaintextError(AdapterError):
    """The plain listeners would listen on an address other than loopback."""


def check_plaintext(settings: Settings) -> None:
    """Raises PlaintextError when the plain MLLP, DICOM and HTTP listeners would be reachable
    from the network and allow_plaintext does not say so."""
    if settings.allow_plaintext or is_loopback(settings.host):
        return
    raise PlaintextError(
        f"refusing to listen in plain text on {settings.host}: MLLP, DICOM and HTTP without "
        "TLS would let anyone on the network write and read patient data; keep MPI_HOST on "
        "127.0.0.1 and serve the network over TLS (--tls-cert, --tls-key, --tls-client-ca, "
        "--tls-host), or give --allow-plaintext (MPI_ALLOW_PLAINTEXT) on a network that is "
        "protected otherwise")


@dataclass(frozen=True)
class TlsContexts:
    """The server contexts of the TLS listeners: client certificate required (MLLP, DICOM),
    optional (HTTPS)."""

    required: ssl.SSLContext
    optional: ssl.SSLContext


def tls_contexts(settings: Settings) -> TlsContexts | None:
    """The TLS contexts when the settings turn TLS on, else None. Raises TlsError."""
    if not settings.tls_enabled():
        return None
    assert settings.tls_cert and settings.tls_key and settings.tls_client_ca
    files = (settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    return TlsContexts(server_context(*files, client_certificate=ssl.CERT_REQUIRED),
                       server_context(*files, client_certificate=ssl.CERT_OPTIONAL))


def _mllp_server(settings: Settings, container: Container, port: int,
                 context: ssl.SSLContext | None = None) -> MLLPServer:
    tls = None
    if context is not None:
        tls = mllp_tls(context, ClientIdentities(container.registry),
                       TlsTrail(container.audit, container.clock, "mllp"))
    return mllp_server(in_process_handler(container.hl7),
                       host=settings.resolved_tls_host() if tls else settings.host, port=port,
                       max_message_bytes=settings.mllp_max_message_bytes,
                       idle_timeout=settings.mllp_idle_timeout, tls=tls,
                       max_connections=_mllp_share(settings, container))


def _mllp_share(settings: Settings, container: Container) -> int:
    """The MLLP connections one server takes: the maximum, spread over the worker processes
    that share the port."""
    workers = max(settings.hl7_workers(container.engine.dialect.name), 1)
    return -(-settings.mllp_max_connections // workers)


def hl7_worker(settings_json: str, handoff: Connection, ready: ProcessEvent,
               stop: ProcessEvent) -> None:
    """The entry point of an HL7 worker process: its own service parts, serving the MLLP
    connections the main process hands it (those of the TLS port over TLS)."""
    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings.log_level, settings.log_format, process="worker")
    contexts = tls_contexts(settings)
    with bootstrap(settings, migrate=False) as container:
        tls_server = (_mllp_server(settings, container, 0, contexts.required)
                      if contexts is not None else None)
        serve_handed_connections(_mllp_server(settings, container, 0), handoff, ready, stop,
                                 tls_server)


class ListenError(AdapterError):
    """A server could not listen on its address (port in use, no permission)."""


def _listen_error(what: str, host: str, port: int, variable: str,
                  exc: OSError) -> ListenError:
    reason = ("the port is in use (another `mpi serve`, or another program)"
              if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
    return ListenError(f"cannot listen for {what} on {host}:{port}: {reason}; choose another "
                       f"port with {variable} (or its flag), or stop what uses it")


async def run_services(container: Container, stop: asyncio.Event,
                       on_ready: Callable[[int, int], None] | None = None,
                       ports: dict[str, int] | None = None) -> None:
    """Run until ``stop`` is set. ``on_ready(mllp_port, http_port)`` is called once every
    listener is bound (ports given as 0 in the settings are chosen by the system; the DICOM
    port is ``container.dicom.bound_port``); before it, ``ports`` is given every bound port
    by listener name (mllp, http, dicom, viewer when OHIF is installed, and mllp_tls,
    dicom_tls, https with TLS). Raises
    PlaintextError for plain listeners off loopback, TlsError for unusable TLS files,
    ListenError when a server cannot listen, after stopping whatever had started."""
    settings = container.settings
    check_plaintext(settings)
    contexts = tls_contexts(settings)
    host, tls_host = settings.host, settings.resolved_tls_host()
    bound: dict[str, int] = {}
    async with contextlib.AsyncExitStack() as started:
        # Before any helper process starts: each inherits the folder of the metrics.
        use_metrics_directory(settings.data_dir / "metrics")
        started.callback(leave_metrics_directory)
        bound["mllp"], tls_port = await _start_mllp(container, started, contexts)
        # DICOM before HTTP: once HTTP answers (its worker processes answer /health as soon
        # as they start), every other listener is up, so "ready" means ready.
        dicom = DicomServer(container.dicom, settings.dicom_max_associations)
        started.callback(dicom.stop)
        try:
            bound["dicom"] = dicom.start(host, settings.dicom_port)
        except OSError as exc:
            raise _listen_error(f"DICOM (AE title {settings.dicom_ae_title})", host,
                                settings.dicom_port, "MPI_DICOM_PORT", exc) from None
        if contexts is not None:
            assert tls_port is not None
            bound["mllp_tls"] = tls_port
            try:
                bound["dicom_tls"] = dicom.start_tls(tls_host, settings.dicom_tls_port,
                                                     contexts.required)
            except OSError as exc:
                raise _listen_error("DICOM over TLS", tls_host, settings.dicom_tls_port,
                                    "MPI_DICOM_TLS_PORT", exc) from None
        app = http_app(container)
        viewer = await _start_viewer(app, container, started)
        if viewer is not None:
            bound["viewer"] = viewer
        http_ports = await _start_http_workers(container, started, contexts, viewer)
        if http_ports is not None:
            bound["http"] = http_ports[0]
        else:
            bound["http"] = await _start_http(app, container, started, host,
                                              settings.http_port, "MPI_HTTP_PORT")
        if contexts is not None:
            if http_ports is not None:
                assert http_ports[1] is not None
                bound["https"] = http_ports[1]
            else:
                bound["https"] = await _start_http(app, container, started, tls_host,
                                                   settings.https_port, "MPI_HTTPS_PORT",
                                                   contexts.optional)
        jobs = asyncio.create_task(container.jobs.run(stop))

        async def stop_jobs() -> None:
            stop.set()
            await jobs

        started.push_async_callback(stop_jobs)
        log_event(log, logging.INFO, "listening", mllp=f"{host}:{bound['mllp']}",
                  http=f"{host}:{bound['http']}",
                  dicom=f"{settings.dicom_ae_title}@{host}:{bound['dicom']}",
                  mllp_tls=f"{tls_host}:{bound['mllp_tls']}" if contexts else None,
                  https=f"{tls_host}:{bound['https']}" if contexts else None,
                  viewer=f"{host}:{bound['viewer']}" if viewer is not None else None,
                  dicom_tls=(f"{settings.dicom_ae_title}@{tls_host}:{bound['dicom_tls']}"
                             if contexts else None),
                  database=displayed_database_url(settings.resolved_database_url()))
        if ports is not None:
            ports.update(bound)
        if on_ready is not None:
            on_ready(bound["mllp"], bound["http"])
        await stop.wait()
        log.info("stopping")


async def _start_viewer(app: FastAPI, container: Container,
                        started: contextlib.AsyncExitStack) -> int | None:
    """The viewer's origin when OHIF is installed (its port, also told to the main
    application for the console's links); else a log line saying how to add it."""
    settings = container.settings
    dist = installed(settings.resolved_viewer_dir())
    if dist is None:
        log_event(log, logging.INFO, "no viewer installed: `mpi viewer install` adds OHIF "
                  "(served on the viewer port)", viewer_dir=str(settings.resolved_viewer_dir()))
        return None
    port = await _start_http(viewer_http_app(container, dist), container, started,
                             settings.host, settings.viewer_port, "MPI_VIEWER_PORT")
    setattr(app.state, VIEWER_PORT_STATE, port)
    return port


async def _start_mllp(container: Container, started: contextlib.AsyncExitStack,
                      contexts: TlsContexts | None) -> tuple[int, int | None]:
    """The MLLP listener, and the MLLP over TLS one: worker processes on PostgreSQL, this
    process's threads on SQLite. Returns their ports."""
    settings = container.settings
    workers = settings.hl7_workers(container.engine.dialect.name)
    tls_host = settings.resolved_tls_host()
    if workers:
        try:
            group = WorkerGroup(hl7_worker, (settings.model_dump_json(),), settings.host,
                                settings.mllp_port, workers,
                                (tls_host, settings.mllp_tls_port) if contexts else None)
        except OSError as exc:
            raise _listen_error("HL7 v2 (MLLP, plain or TLS)", f"{settings.host}/{tls_host}",
                                settings.mllp_port, "MPI_MLLP_PORT / MPI_MLLP_TLS_PORT",
                                exc) from None
        started.push_async_callback(asyncio.to_thread, group.stop)
        await group.start()
        log_event(log, logging.INFO, "HL7 messages answered by worker processes",
                  workers=workers)
        return group.port, group.tls_port
    mllp = _mllp_server(settings, container, settings.mllp_port)
    try:
        await mllp.start()
    except OSError as exc:
        raise _listen_error("HL7 v2 (MLLP)", settings.host, settings.mllp_port,
                            "MPI_MLLP_PORT", exc) from None
    started.push_async_callback(mllp.close)
    if contexts is None:
        return mllp.port, None
    secured = _mllp_server(settings, container, settings.mllp_tls_port, contexts.required)
    try:
        await secured.start()
    except OSError as exc:
        raise _listen_error("HL7 v2 (MLLP over TLS)", tls_host, settings.mllp_tls_port,
                            "MPI_MLLP_TLS_PORT", exc) from None
    started.push_async_callback(secured.close)
    return mllp.port, secured.port


def _http_socket(host: str, port: int, variable: str, tls: bool) -> socket.socket:
    """A listening socket bound here, so that a port in use is one clear error."""
    try:
        return socket.create_server((host, port), backlog=2048)
    except OSError as exc:
        raise _listen_error("HTTPS" if tls else "HTTP", host, port, variable, exc) from None


def _http_server(app: FastAPI, settings: Settings,
                 context: ssl.SSLContext | None) -> _Server:
    config = uvicorn.Config(app, log_level=settings.log_level,
                            lifespan="off", access_log=False, log_config=None)
    if context is not None:
        config.load()
        config.ssl = context  # ours (TLS 1.2+, BCP 195) rather than one uvicorn builds
    return _Server(config)


async def _serve_on(http: _Server, sock: socket.socket) -> Callable[[], Awaitable[None]]:
    """Start ``http`` on ``sock``; returns what stops it."""
    task = asyncio.create_task(http.serve(sockets=[sock]))

    async def stop_http() -> None:
        http.should_exit = True
        await task

    while not http.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
        raise RuntimeError("the HTTP server did not start")
    return stop_http


async def _start_http(app: FastAPI, container: Container, started: contextlib.AsyncExitStack,
                      host: str, port: int, variable: str,
                      context: ssl.SSLContext | None = None) -> int:
    """An HTTP server (HTTPS with ``context``) in this process."""
    sock = _http_socket(host, port, variable, context is not None)
    started.callback(sock.close)
    started.push_async_callback(await _serve_on(_http_server(app, container.settings, context),
                                                sock))
    return int(sock.getsockname()[1])


async def _start_http_workers(container: Container, started: contextlib.AsyncExitStack,
                              contexts: TlsContexts | None,
                              viewer: int | None) -> tuple[int, int | None] | None:
    """HTTP (and HTTPS) served by worker processes, on PostgreSQL: their ports; None when
    this process answers HTTP itself (SQLite, or MPI_HTTP_WORKERS=0). The workers learn the
    port the viewer was bound to (``viewer``), for the console's links."""
    settings = container.settings
    workers = settings.http_worker_count(container.engine.dialect.name)
    if not workers:
        return None
    sockets = [_http_socket(settings.host, settings.http_port, "MPI_HTTP_PORT", False)]
    try:
        if contexts is not None:
            sockets.append(_http_socket(settings.resolved_tls_host(), settings.https_port,
                                        "MPI_HTTPS_PORT", True))
    except ListenError:
        sockets[0].close()
        raise
    ports = [int(sock.getsockname()[1]) for sock in sockets]
    handed = settings if viewer is None else settings.model_copy(update={"viewer_port": viewer})
    group = HttpWorkerGroup(http_worker, (handed.model_dump_json(), viewer is not None),
                            sockets, workers,
                            publish=lambda: dict(container.jobs.states))
    started.push_async_callback(group.close)
    await group.start()
    log_event(log, logging.INFO, "HTTP requests answered by worker processes", workers=workers)
    return ports[0], ports[1] if len(ports) > 1 else None


def http_worker(settings_json: str, viewer_served: bool, sockets: list[socket.socket],
                main: MainProcess) -> None:
    """The entry point of an HTTP worker process: its own service parts, serving the whole
    HTTP application on the sockets of the main process (the second one over TLS). The state
    of the background jobs it shows is the main process's, as ``main`` last shared it; the
    viewer, when the main process serves it, is on ``settings.viewer_port``."""
    main.listen()
    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings.log_level, settings.log_format, process="http-worker")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    contexts = tls_contexts(settings)
    with bootstrap(settings, migrate=False) as container:
        app = http_app(container)
        if viewer_served:
            setattr(app.state, VIEWER_PORT_STATE, settings.viewer_port)

        async def serve_until_stopped() -> None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.stopping.set)
            stopping = [await _serve_on(_http_server(app, settings, None), sockets[0])]
            if len(sockets) > 1 and contexts is not None:
                stopping.append(await _serve_on(_http_server(app, settings, contexts.optional),
                                                sockets[1]))
            main.ready()
            while not main.stopping.is_set():
                if main.shared:
                    container.jobs.states.update(main.shared)
                await asyncio.sleep(0.2)
            for stop_http in stopping:
                await stop_http()

        asyncio.run(serve_until_stopped())


def serve(container: Container) -> None:
    """Run the service in the foreground until SIGTERM or SIGINT. Raises ListenError."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_services(container, stop)

    with container:
        asyncio.run(main())
