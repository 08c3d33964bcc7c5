"""Several processes answering HTTP.

One uvicorn process answers at the pace of one core (the interpreter lock): the database's
round trips overlap, the Python work of routing, validating, mapping and serializing does not.
With PostgreSQL, `mpi serve` binds the HTTP (and HTTPS) sockets itself and starts worker
processes that all accept on them: the kernel gives each new connection to one worker waiting
in accept(), so that a busy worker takes no more until it waits again. Each worker builds its
own service parts (its own engine and connection pool) and serves the whole HTTP application;
the main process keeps the MLLP and DICOM listeners and the background jobs.

Each worker holds one end of a pipe to the main process, and nothing else shared: over it the
worker says it is ready, the main process sends what only it knows and the workers show (the
state of its background jobs, on ``/health``), and asks it to stop. A worker never outlives the
main process: killed (even by SIGKILL), the main process's end of the pipe closes, and the
worker stops, or exits at once if stopping takes longer than a few seconds, so that no orphan
keeps the port and database connections. A worker that dies is replaced.

This module knows the processes, not what a worker serves: the process runner passes the
worker's entry point down (:class:`HttpWorkerGroup`), and the entry point talks to the main
process through :class:`MainProcess`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import socket
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["HttpWorkerGroup", "HttpWorkerEntry", "MainProcess"]

log = logging.getLogger(__name__)

# A worker process's entry point: called as entry(*entry_args, sockets, main) in the new
# process, with the listening sockets in the order given to the group and ``main`` the
# :class:`MainProcess` to talk to. It must be a module-level function (the spawn start method
# imports it).
HttpWorkerEntry = Callable[..., None]

_READY, _STOP, _SHARED = "ready", "stop", "shared"


class MainProcess:
    """In a worker process: its link to the main process. ``stopping`` is set when the main
    process asks the worker to stop or is gone; ``shared`` is the last value it published."""

    def __init__(self, connection: Connection, parent: int, grace: float = 10.0) -> None:
        self._connection = connection
        self._parent = parent
        self._grace = grace
        self.stopping = threading.Event()
        self.shared: Any = None
        self._listener: threading.Thread | None = None

    def __reduce__(self) -> tuple[type[MainProcess], tuple[Connection, int, float]]:
        # handed to the new process as what it is made of; its threads start there
        return MainProcess, (self._connection, self._parent, self._grace)

    def listen(self) -> None:
        """Start listening to the main process (call first in the worker)."""
        self._listener = threading.Thread(target=self._listen, name="main-process",
                                          daemon=True)
        self._listener.start()

    def ready(self) -> None:
        """Tell the main process this worker accepts."""
        with contextlib.suppress(OSError):
            self._connection.send((_READY, None))

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                if os.getppid() != self._parent:
                    raise EOFError
                if not self._connection.poll(0.2):
                    continue
                kind, value = self._connection.recv()
            except (EOFError, OSError):
                self._gone()
                return
            if kind == _SHARED:
                self.shared = value
            elif kind == _STOP:
                self.stopping.set()

    def _gone(self) -> None:
        log.error("the main process is gone: this HTTP worker stops")
        self.stopping.set()
        # Stopping cleanly may hang on what the dead process held: exit regardless.
        timer = threading.Timer(self._grace, os._exit, (1,))
        timer.daemon = True
        timer.start()


class _Worker:
    def __init__(self, context: multiprocessing.context.SpawnContext, entry: HttpWorkerEntry,
                 args: Sequence[object]) -> None:
        self.connection, child_end = context.Pipe(duplex=True)
        self.process = context.Process(
            target=entry, args=(*args, MainProcess(child_end, os.getpid())),
            name="mpi-http-worker", daemon=True)
        self.process.start()
        child_end.close()
        self.lock = threading.Lock()  # one sender at a time on the pipe

    def send(self, kind: str, value: object) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.connection.send((kind, value))

    def wait_ready(self, timeout: float) -> bool:
        try:
            if self.connection.poll(timeout):
                return bool(self.connection.recv()[0] == _READY)
        except (EOFError, OSError):
            pass
        return False


class HttpWorkerGroup:
    """Worker processes started from ``entry`` (see :data:`HttpWorkerEntry`), each accepting
    on every one of ``sockets`` (bound and listening; the group closes them when it stops)."""

    def __init__(self, entry: HttpWorkerEntry, entry_args: Sequence[object],
                 sockets: Sequence[socket.socket], workers: int,
                 publish: Callable[[], object] | None = None,
                 publish_interval: float = 0.5) -> None:
        """``publish``, called in the main process every ``publish_interval`` seconds, gives
        the value the workers read as ``MainProcess.shared`` (small and picklable)."""
        self._context = multiprocessing.get_context("spawn")
        self._entry = entry
        self._sockets = list(sockets)
        self._args = (*entry_args, self._sockets)
        self.size = workers
        self._publish = publish
        self._publish_interval = publish_interval
        self._workers: list[_Worker] = []
        self._supervising: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def start(self, timeout: float = 60.0) -> None:
        """Start the workers and wait until each accepts. Raises RuntimeError when a worker
        does not start (its own log says why: database unreachable, schema...)."""
        self._workers = [_Worker(self._context, self._entry, self._args)
                         for _ in range(self.size)]
        for worker in self._workers:
            await self._wait_ready(worker, timeout)
        await asyncio.to_thread(self._share)
        self._supervising = asyncio.create_task(self._supervise())

    def _share(self) -> None:
        if self._publish is None:
            return
        try:
            value = self._publish()
        except Exception:  # the workers keep showing the previous value
            log.exception("could not take the state the HTTP workers show")
            return
        for worker in self._workers:
            worker.send(_SHARED, value)

    async def _wait_ready(self, worker: _Worker, timeout: float) -> None:
        if not await asyncio.to_thread(worker.wait_ready, timeout):
            self.stop()
            raise RuntimeError(f"HTTP worker {worker.process.pid} did not start")

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self._publish_interval)
            await asyncio.to_thread(self._share)
            for index, worker in enumerate(self._workers):
                if worker.process.is_alive() or self._stopped:
                    continue
                log.error("HTTP worker %s exited with %s; starting another",
                          worker.process.pid, worker.process.exitcode)
                worker.connection.close()
                replacement = _Worker(self._context, self._entry, self._args)
                self._workers[index] = replacement
                try:
                    await self._wait_ready(replacement, 60.0)
                except RuntimeError:
                    log.exception("the HTTP workers are stopped")
                    return

    async def close(self, timeout: float = 30.0) -> None:
        """Stop replacing workers, then stop them (see stop())."""
        if self._supervising is not None:
            self._supervising.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervising
        await asyncio.to_thread(self.stop, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Every worker finishes the requests it has and exits (or is killed); the sockets
        are closed."""
        self._stopped = True
        for worker in self._workers:
            worker.send(_STOP, None)
        for worker in self._workers:
            worker.process.join(timeout)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
