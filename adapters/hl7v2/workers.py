"""Handling HL7 messages in worker processes.

One Python process applies messages at the pace of one core (the interpreter lock); the
database's round trips overlap, the Python work does not. With PostgreSQL, `mpi serve` hands
each message to a pool of worker processes, each with its own engine and connection pool, so
the feed uses every core. The MLLP server stays in the main process and keeps each
connection's messages strictly in order (it sends the next one only after the reply).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from adapters.hl7v2.charset import encode_reply

__all__ = ["WorkerPool"]

_application: Any = None  # the worker process's Hl7Application, set by _start_worker


def _start_worker(settings_json: str) -> None:
    """Build the worker's own service parts (in the worker process, once)."""
    global _application
    from adapters.bootstrap import bootstrap
    from adapters.settings import Settings

    container = bootstrap(Settings.model_validate_json(settings_json), migrate=False)
    _application = container.hl7


def _handle(payload: bytes, oversized: bool, peer: str) -> bytes:
    reply = _application.handle(payload, oversized, peer)
    return encode_reply(reply.text, reply.codec)


def _ready() -> bool:
    return _application is not None


class WorkerPool:
    """A pool of worker processes answering HL7 payloads."""

    def __init__(self, settings_json: str, workers: int) -> None:
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(settings_json,),
        )

    async def start(self) -> None:
        """Start every worker now rather than on the first messages. Raises what a worker's
        start raised (e.g. a database that cannot be reached)."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, _ready) for _ in range(self.workers))
        )

    async def handle(self, payload: bytes, oversized: bool, peer: str) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _handle, payload, oversized, peer)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
