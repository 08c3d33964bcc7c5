"""Several processes answering the MLLP port.

One Python process applies messages at the pace of one core (the interpreter lock): the
database's round trips overlap, the Python work does not. With PostgreSQL, `mpi serve` starts
worker processes, each with its own engine. The main process accepts every MLLP connection and
hands it (its file descriptor) to the worker that was handed the fewest, so that a few
long-lived HIS connections spread evenly (SO_REUSEPORT would leave that to a hash); from then
on the connection's bytes never cross a process boundary, and its messages are answered
strictly in order by that worker. A worker that dies is replaced.

MLLP over TLS works the same way: the main process also accepts on the TLS port, and hands
the connection over before its handshake, saying which port it came from; the worker does the
handshake (each worker holds the TLS context), so a slow or failed handshake holds up that
connection only.

This module knows the hand-off, not what a worker is made of: the process runner passes the
worker's entry point down (:class:`WorkerGroup`), and the entry point serves its handed
connections with :func:`serve_handed_connections`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
from multiprocessing.synchronize import Event as ProcessEvent

from adapters.hl7v2.mllp import MLLPServer

__all__ = ["WorkerGroup", "WorkerEntry", "serve_handed_connections"]

log = logging.getLogger(__name__)

# A worker process's entry point: called as entry(*entry_args, handoff, ready, stop) in the
# new process. It must be a module-level function (the spawn start method imports it).
WorkerEntry = Callable[..., None]


_PLAIN, _TLS = b"p", b"t"  # which listener a handed connection came from


def serve_handed_connections(server: MLLPServer, handoff: Connection, ready: ProcessEvent,
                             stop: ProcessEvent, tls_server: MLLPServer | None = None) -> None:
    """In a worker process: serve every connection handed over ``handoff`` with ``server``,
    or ``tls_server`` for those of the TLS listener (both started without listening), until
    ``stop`` is set, then close the servers."""
    servers = {_PLAIN: server, _TLS: tls_server or server}

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await server.start(listen=False)
        if tls_server is not None:
            await tls_server.start(listen=False)

        async def adopt(kind: bytes, fd: int) -> None:
            connection = socket.socket(fileno=fd)
            if kind == _TLS and tls_server is None:
                connection.close()  # TLS is not configured here: never served in plain
                return
            await servers[kind].adopt(connection)

        parent = os.getppid()

        def receive() -> None:
            # A worker never outlives the main process: killed (even by SIGKILL), it closes
            # its end of the pipe and the worker is reparented; either way the worker stops,
            # closing its connections, so that senders reconnect to the new server instead
            # of talking to an orphan holding database connections.
            while not stop.is_set():
                if os.getppid() != parent:
                    log.error("the main process is gone: this HL7 worker stops")
                    stop.set()
                    return
                try:
                    if not handoff.poll(0.2):
                        continue
                    kind = handoff.recv_bytes(8)
                    fd = recv_handle(handoff)
                except EOFError:  # the main process's end of the pipe is closed
                    if not stop.is_set():
                        log.error("the main process is gone: this HL7 worker stops")
                        stop.set()
                    return
                except OSError:
                    log.exception("could not receive a connection from the main process")
                    continue
                asyncio.run_coroutine_threadsafe(adopt(kind, fd), loop)

        receiver = threading.Thread(target=receive, name="mllp-handoff", daemon=True)
        receiver.start()
        ready.set()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await loop.run_in_executor(None, stop.wait)
        await server.close()
        if tls_server is not None:
            await tls_server.close()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    asyncio.run(serve())


class _Worker:
    def __init__(self, context: multiprocessing.context.SpawnContext, entry: WorkerEntry,
                 entry_args: Sequence[object], stop: ProcessEvent) -> None:
        self.handoff, child_end = context.Pipe(duplex=True)
        self.ready = context.Event()
        self.process = context.Process(
            target=entry, args=(*entry_args, child_end, self.ready, stop),
            name="mpi-hl7-worker", daemon=True,
        )
        self.process.start()
        child_end.close()
        self.handed = 0  # connections handed over; an even spread is what matters


class WorkerGroup:
    """Accepts MLLP connections and spreads them over worker processes started from
    ``entry`` (see :data:`WorkerEntry`)."""

    def __init__(self, entry: WorkerEntry, entry_args: Sequence[object], host: str, port: int,
                 workers: int, tls_address: tuple[str, int] | None = None) -> None:
        """Bind the listener (and the TLS one at ``tls_address``). Raises OSError."""
        self._context = multiprocessing.get_context("spawn")
        self._entry = entry
        self._entry_args = tuple(entry_args)
        self.size = workers
        self._stop = self._context.Event()
        self._workers: list[_Worker] = []
        self._listener = socket.create_server((host, port), reuse_port=False, backlog=128)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._tls_listener: socket.socket | None = None
        self.tls_port: int | None = None
        if tls_address is not None:
            try:
                self._tls_listener = socket.create_server(tls_address, backlog=128)
            except OSError:
                self._listener.close()
                raise
            self._tls_listener.setblocking(False)
            self.tls_port = int(self._tls_listener.getsockname()[1])
        self._accepting: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 60.0) -> None:
        """Start the workers, wait until each is ready, then accept. Raises RuntimeError when
        a worker does not start (its own log says why: database unreachable, schema...)."""
        self._workers = [self._spawn() for _ in range(self.size)]
        for worker in self._workers:
            await self._wait_ready(worker, timeout)
        self._accepting = [asyncio.create_task(self._accept(self._listener, _PLAIN))]
        if self._tls_listener is not None:
            self._accepting.append(asyncio.create_task(self._accept(self._tls_listener, _TLS)))

    def _spawn(self) -> _Worker:
        return _Worker(self._context, self._entry, self._entry_args, self._stop)

    async def _wait_ready(self, worker: _Worker, timeout: float) -> None:
        await asyncio.to_thread(worker.ready.wait, timeout)
        if not worker.ready.is_set():
            self.stop()
            raise RuntimeError(f"HL7 worker {worker.process.pid} did not start")

    async def _accept(self, listener: socket.socket, kind: bytes) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, _ = await loop.sock_accept(listener)
            try:
                worker = await self._choose()
                assert worker.process.pid is not None
                worker.handoff.send_bytes(kind)
                send_handle(worker.handoff, sock.fileno(), worker.process.pid)
                worker.handed += 1
            except (OSError, RuntimeError):
                log.exception("could not hand an MLLP connection to a worker")
            finally:
                sock.close()  # the worker has its own descriptor now

    async def _choose(self) -> _Worker:
        for index, worker in enumerate(self._workers):
            if not worker.process.is_alive() and not self._stop.is_set():
                log.error("HL7 worker %s exited with %s; starting another",
                          worker.process.pid, worker.process.exitcode)
                replacement = self._spawn()
                self._workers[index] = replacement
                await self._wait_ready(replacement, 60.0)
        return min(self._workers, key=lambda w: w.handed)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting; every worker finishes its messages and exits (or is killed)."""
        for accepting in self._accepting:
            accepting.cancel()
        self._listener.close()
        if self._tls_listener is not None:
            self._tls_listener.close()
        self._stop.set()
        for worker in self._workers:
            worker.process.join(timeout)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
