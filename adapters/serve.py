"""`mpi serve`: the MLLP listener, the HTTP server, the DICOM service and the background
loops in one process, stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent

import uvicorn

from adapters.bootstrap import bootstrap, http_app
from adapters.container import Container
from adapters.dicom.scp import DicomServer
from adapters.errors import AdapterError
from adapters.hl7v2.listener import in_process_handler, mllp_server
from adapters.hl7v2.mllp import MLLPServer
from adapters.hl7v2.workers import WorkerGroup, serve_handed_connections
from adapters.logs import configure_logging, log_event
from adapters.settings import Settings, displayed_database_url

__all__ = ["serve", "run_services", "hl7_worker", "ListenError"]

log = logging.getLogger("mpi.serve")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process stops all its servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _mllp_server(settings: Settings, container: Container, port: int) -> MLLPServer:
    return mllp_server(in_process_handler(container.hl7), host=settings.host, port=port,
                       max_message_bytes=settings.mllp_max_message_bytes,
                       idle_timeout=settings.mllp_idle_timeout)


def hl7_worker(settings_json: str, handoff: Connection, ready: ProcessEvent,
               stop: ProcessEvent) -> None:
    """The entry point of an HL7 worker process: its own service parts, serving the MLLP
    connections the main process hands it."""
    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings.log_level, settings.log_format, process="worker")
    with bootstrap(settings, migrate=False) as container:
        serve_handed_connections(_mllp_server(settings, container, 0), handoff, ready, stop)


class ListenError(AdapterError):
    """A server could not listen on its address (port in use, no permission)."""


def _listen_error(what: str, host: str, port: int, variable: str,
                  exc: OSError) -> ListenError:
    reason = ("the port is in use (another `mpi serve`, or another program)"
              if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
    return ListenError(f"cannot listen for {what} on {host}:{port}: {reason}; choose another "
                       f"port with {variable} (or its flag), or stop what uses it")


async def run_services(container: Container, stop: asyncio.Event,
                       on_ready: Callable[[int, int], None] | None = None) -> None:
    """Run until ``stop`` is set. ``on_ready(mllp_port, http_port)`` is called once every
    listener is bound (ports given as 0 in the settings are chosen by the system; the DICOM
    port is ``container.dicom.bound_port``). Raises ListenError when a server cannot listen,
    after stopping whatever had started."""
    settings = container.settings
    host = settings.host
    async with contextlib.AsyncExitStack() as started:
        mllp_port = await _start_mllp(container, started)
        http_port = await _start_http(container, started)
        dicom = DicomServer(container.dicom)
        try:
            dicom_port = dicom.start(host, settings.dicom_port)
        except OSError as exc:
            raise _listen_error(f"DICOM (AE title {settings.dicom_ae_title})", host,
                                settings.dicom_port, "MPI_DICOM_PORT", exc) from None
        started.callback(dicom.stop)
        jobs = asyncio.create_task(container.jobs.run(stop))

        async def stop_jobs() -> None:
            stop.set()
            await jobs

        started.push_async_callback(stop_jobs)
        log_event(log, logging.INFO, "listening", mllp=f"{host}:{mllp_port}",
                  http=f"{host}:{http_port}",
                  dicom=f"{settings.dicom_ae_title}@{host}:{dicom_port}",
                  database=displayed_database_url(settings.resolved_database_url()))
        if on_ready is not None:
            on_ready(mllp_port, http_port)
        await stop.wait()
        log.info("stopping")


async def _start_mllp(container: Container, started: contextlib.AsyncExitStack) -> int:
    """The MLLP listener: worker processes on PostgreSQL, this process's threads on SQLite."""
    settings = container.settings
    workers = settings.hl7_workers(container.engine.dialect.name)
    try:
        if workers:
            group = WorkerGroup(hl7_worker, (settings.model_dump_json(),), settings.host,
                                settings.mllp_port, workers)
        else:
            mllp = _mllp_server(settings, container, settings.mllp_port)
            await mllp.start()
    except OSError as exc:
        raise _listen_error("HL7 v2 (MLLP)", settings.host, settings.mllp_port,
                            "MPI_MLLP_PORT", exc) from None
    if workers:
        started.push_async_callback(asyncio.to_thread, group.stop)
        await group.start()
        log_event(log, logging.INFO, "HL7 messages answered by worker processes",
                  workers=workers)
        return group.port
    started.push_async_callback(mllp.close)
    return mllp.port


async def _start_http(container: Container, started: contextlib.AsyncExitStack) -> int:
    """The HTTP server on a socket bound here, so that a port in use is one clear error."""
    settings = container.settings
    try:
        sock = socket.create_server((settings.host, settings.http_port), backlog=2048)
    except OSError as exc:
        raise _listen_error("HTTP", settings.host, settings.http_port, "MPI_HTTP_PORT",
                            exc) from None
    config = uvicorn.Config(http_app(container), log_level=settings.log_level,
                            lifespan="off", access_log=False, log_config=None)
    http = _Server(config)
    task = asyncio.create_task(http.serve(sockets=[sock]))

    async def stop_http() -> None:
        http.should_exit = True
        await task
        sock.close()

    started.push_async_callback(stop_http)
    while not http.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()
        raise RuntimeError("the HTTP server did not start")
    return int(sock.getsockname()[1])


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
