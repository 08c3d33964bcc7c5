"""`mpi serve`: the MLLP listener, the HTTP server, the DICOM service and the background
loops in one process, stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent

import uvicorn

from adapters.bootstrap import bootstrap, http_app
from adapters.container import Container
from adapters.dicom.scp import DicomServer
from adapters.hl7v2.listener import in_process_handler, mllp_server
from adapters.hl7v2.mllp import MLLPServer
from adapters.hl7v2.workers import WorkerGroup, serve_handed_connections
from adapters.settings import Settings

__all__ = ["serve", "run_services", "hl7_worker"]

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
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    with bootstrap(settings, migrate=False) as container:
        serve_handed_connections(_mllp_server(settings, container, 0), handoff, ready, stop)


async def run_services(container: Container, stop: asyncio.Event,
                       on_ready: Callable[[int, int], None] | None = None) -> None:
    """Run until ``stop`` is set. ``on_ready(mllp_port, http_port)`` is called once every
    listener is bound (ports given as 0 in the settings are chosen by the system; the DICOM
    port is ``container.dicom.bound_port``)."""
    settings = container.settings
    workers = settings.hl7_workers(container.engine.dialect.name)
    mllp: MLLPServer | None = None
    group: WorkerGroup | None = None
    if workers:
        group = WorkerGroup(hl7_worker, (settings.model_dump_json(),), settings.host,
                            settings.mllp_port, workers)
        await group.start()
        mllp_port = group.port
        log.info("HL7 messages answered by %d worker processes", workers)
    else:
        mllp = _mllp_server(settings, container, settings.mllp_port)
        await mllp.start()
        mllp_port = mllp.port
    config = uvicorn.Config(http_app(container), host=settings.host, port=settings.http_port,
                            log_level=settings.log_level.lower(), lifespan="off",
                            access_log=False)
    http = _Server(config)
    http_task = asyncio.create_task(http.serve())
    jobs_task = asyncio.create_task(container.jobs.run(stop))

    async def stop_mllp() -> None:
        if mllp is not None:
            await mllp.close()
        if group is not None:
            await asyncio.to_thread(group.stop)

    while not http.started and not http_task.done():
        await asyncio.sleep(0.02)
    if http_task.done():
        await stop_mllp()
        stop.set()
        await jobs_task
        http_task.result()
        raise RuntimeError("the HTTP server did not start")
    http_port = http.servers[0].sockets[0].getsockname()[1]
    dicom = DicomServer(container.dicom)
    try:
        dicom_port = dicom.start(settings.host, settings.dicom_port)
    except OSError:
        http.should_exit = True
        await stop_mllp()
        stop.set()
        await http_task
        await jobs_task
        raise
    log.info("MLLP on %s:%d, HTTP on %s:%d, DICOM %s on %s:%d, database %s", settings.host,
             mllp_port, settings.host, http_port, settings.dicom_ae_title, settings.host,
             dicom_port, container.engine.url.render_as_string())
    if on_ready is not None:
        on_ready(mllp_port, http_port)
    await stop.wait()
    log.info("stopping")
    await asyncio.to_thread(dicom.stop)
    http.should_exit = True
    await stop_mllp()
    await http_task
    await jobs_task


def serve(container: Container) -> None:
    """Run the service in the foreground until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_services(container, stop)

    with container:
        asyncio.run(main())
