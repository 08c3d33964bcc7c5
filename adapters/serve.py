"""`mpi serve`: the MLLP listener, the HTTP server and the notification loops in one process,
stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import datetime, timezone
from typing import Callable, Iterator

import uvicorn

from adapters.api.app import create_app
from adapters.bootstrap import Container
from adapters.dicom.scp import DicomServer, load_destinations
from adapters.settings import Settings
from adapters.hl7v2.application import Hl7Application
from adapters.hl7v2.charset import encode_reply
from adapters.hl7v2.er7 import ParseError, parse
from adapters.hl7v2.mllp import Frame, Handler, MLLPServer, PeerInfo
from adapters.hl7v2.workers import WorkerGroup
from adapters.hl7v2.replies import APPLICATION_INTERNAL_ERROR, Problem, ReplyHeader, ack

__all__ = ["serve", "run_services"]

log = logging.getLogger("mpi.serve")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process stops all its servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def in_process_handler(application: Hl7Application) -> Handler:
    async def handle(frame: Frame, peer: PeerInfo) -> bytes:
        reply = await asyncio.to_thread(
            application.handle, frame.payload, frame.oversized, f"{peer.host}:{peer.port}"
        )
        return encode_reply(reply.text, reply.codec)

    return handle


def fallback_reply(frame: Frame, exc: BaseException) -> bytes:
    """The answer when even the journal could not be written (database down)."""
    try:
        header = ReplyHeader.of(parse(frame.payload.decode("latin-1")))
    except ParseError:
        header = ReplyHeader()
    problem = Problem("AE", APPLICATION_INTERNAL_ERROR,
                      "the message could not be journaled; send it again")
    return ack(header, datetime.now(timezone.utc), problem).encode("latin-1", errors="replace")


def mllp_server(settings: Settings, handler: Handler, port: int) -> MLLPServer:
    return MLLPServer(
        handler, host=settings.host, port=port,
        max_message_bytes=settings.mllp_max_message_bytes,
        idle_timeout=settings.mllp_idle_timeout, on_handler_error=fallback_reply,
    )


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
        group = WorkerGroup(settings.model_dump_json(), settings.host, settings.mllp_port,
                            workers)
        await group.start()
        mllp_port = group.port
        log.info("HL7 messages answered by %d worker processes", workers)
    else:
        mllp = mllp_server(settings, in_process_handler(container.hl7), settings.mllp_port)
        await mllp.start()
        mllp_port = mllp.port
    config = uvicorn.Config(create_app(container), host=settings.host, port=settings.http_port,
                            log_level=settings.log_level.lower(), lifespan="off",
                            access_log=False)
    http = _Server(config)
    http_task = asyncio.create_task(http.serve())
    notifier_task = asyncio.create_task(container.notifier().run(stop))

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
        await notifier_task
        http_task.result()
        raise RuntimeError("the HTTP server did not start")
    http_port = http.servers[0].sockets[0].getsockname()[1]
    dicom = DicomServer(container.dicom, load_destinations(settings.authorities))
    try:
        dicom_port = dicom.start(settings.host, settings.dicom_port)
    except OSError:
        http.should_exit = True
        await stop_mllp()
        stop.set()
        await http_task
        await notifier_task
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
    await notifier_task


def serve(container: Container) -> None:
    """Run the service in the foreground until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_services(container, stop)

    try:
        asyncio.run(main())
    finally:
        container.close()
