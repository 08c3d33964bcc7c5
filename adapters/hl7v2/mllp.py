"""MLLP (Minimal Lower Layer Protocol) framing, with an asyncio server and client.

A block on the wire is ``<VT> payload <FS><CR>`` (0x0b ... 0x1c 0x0d). This module only
deals with those blocks: the payload bytes are handed over untouched, and decoding
and parsing them as HL7 is the caller's business.

The server may also speak TLS (:class:`TlsOptions`): each accepted connection does its
handshake first, and its certificate is shown to the caller's ``admit`` before a byte of
MLLP is read; a connection that fails the handshake or is not admitted is closed unread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self

from adapters.errors import AdapterError
from adapters.metrics import metrics

__all__ = [
    "CARRIAGE_RETURN",
    "END_BLOCK",
    "START_BLOCK",
    "Frame",
    "FrameDecoder",
    "Handler",
    "HandlerErrorReply",
    "MLLPClient",
    "MLLPError",
    "MLLPServer",
    "PeerInfo",
    "TlsOptions",
    "frame",
]

logger = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"

_START_BYTE = START_BLOCK[0]
_END_BYTE = END_BLOCK[0]
_CR_BYTE = CARRIAGE_RETURN[0]

_READ_CHUNK_BYTES = 65_536

# Original-mode senders wait for each acknowledgement, so a backlog larger than this
# means the peer is streaming without waiting; reading stops until the backlog shrinks
# so a misbehaving peer cannot make the server hold an unbounded number of messages.
_MAX_PENDING_FRAMES = 16


def frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in an MLLP block (start block, payload, end block, CR)."""
    return START_BLOCK + payload + END_BLOCK + CARRIAGE_RETURN


@dataclass(frozen=True)
class Frame:
    """One complete MLLP block.

    When ``oversized`` is True the message exceeded the decoder's limit and ``payload``
    holds only its first bytes, which is enough to read the MSH segment and build a
    rejection.
    """

    payload: bytes
    oversized: bool


class FrameDecoder:
    """Incremental MLLP decoder: feed it bytes as they arrive, get complete frames back.

    Rules applied to the byte stream:

    * Bytes outside a frame (before a start block) are discarded, which absorbs the
      stray CR/LF some senders put between frames.
    * ``0x1c 0x0d`` ends a frame. ``0x1c`` directly followed by a new ``0x0b`` also ends
      it, since some senders omit the CR. A ``0x1c`` that is the last byte of a read is
      held until the next read shows what follows it.
    * ``0x1c`` followed by any other byte is kept as payload data: ending the frame
      there would hand a possibly truncated message (missing segments) to the
      application, whereas keeping it leaves the message to be rejected whole.
    * A start block inside an unfinished frame means the earlier frame was lost (the
      sender restarted mid-message, e.g. after a timeout on its side). Its partial
      data is discarded, counted in ``frames_lost``, and a new frame starts. Emitting
      it instead would hand over a message known to be incomplete.
    * A message longer than ``max_message_bytes`` is not accumulated: only its first
      ``keep_prefix_bytes`` are kept, the rest is skipped up to its end block, and it is
      emitted as ``Frame(prefix, oversized=True)``.
    """

    def __init__(self, max_message_bytes: int, keep_prefix_bytes: int = 4096) -> None:
        """Create a decoder.

        Raises:
            ValueError: if ``max_message_bytes`` is not positive or
                ``keep_prefix_bytes`` is negative.
        """
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be positive, got {max_message_bytes}")
        if keep_prefix_bytes < 0:
            raise ValueError(f"keep_prefix_bytes must not be negative, got {keep_prefix_bytes}")
        self._max_message_bytes = max_message_bytes
        self._keep_prefix_bytes = keep_prefix_bytes
        self._buffer = bytearray()
        self._in_frame = False
        self._frame_length = 0
        self._oversized = False
        self._end_block_pending = False
        self.frames_lost = 0
        self.bytes_discarded = 0

    @property
    def has_partial_frame(self) -> bool:
        """True while a frame has started and not yet ended."""
        return self._in_frame

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data`` and return the frames it completes, in stream order.

        Never raises on malformed input: anomalies are absorbed as described in the
        class documentation.
        """
        frames: list[Frame] = []
        view = memoryview(data)
        position = 0
        length = len(data)
        # The position of the next start block is cached because searching afresh on
        # every iteration would make a read full of lone 0x1c bytes quadratic.
        next_start = -2
        while position < length:
            if next_start != -1 and next_start < position:
                next_start = data.find(START_BLOCK, position)
            if self._end_block_pending:
                self._end_block_pending = False
                next_byte = data[position]
                if next_byte == _CR_BYTE:
                    frames.append(self._finish_frame())
                    position += 1
                elif next_byte == _START_BYTE:
                    # Left unconsumed so the start block opens the next frame below.
                    frames.append(self._finish_frame())
                else:
                    self._append(END_BLOCK)
                continue

            if not self._in_frame:
                if next_start == -1:
                    self.bytes_discarded += length - position
                    break
                self.bytes_discarded += next_start - position
                self._start_frame()
                position = next_start + 1
                continue

            end = data.find(END_BLOCK, position)
            if next_start != -1 and (end == -1 or next_start < end):
                self.frames_lost += 1
                self.bytes_discarded += self._frame_length + (next_start - position)
                self._start_frame()
                position = next_start + 1
                continue
            if end == -1:
                self._append(view[position:])
                break
            self._append(view[position:end])
            position = end + 1
            self._end_block_pending = True
        return frames

    def _start_frame(self) -> None:
        self._buffer = bytearray()
        self._in_frame = True
        self._frame_length = 0
        self._oversized = False

    def _append(self, chunk: bytes | memoryview) -> None:
        self._frame_length += len(chunk)
        if self._frame_length > self._max_message_bytes:
            self._oversized = True
        limit = self._keep_prefix_bytes if self._oversized else self._max_message_bytes
        room = limit - len(self._buffer)
        if room > 0:
            self._buffer += chunk[:room]
        elif room < 0:
            del self._buffer[limit:]

    def _finish_frame(self) -> Frame:
        completed = Frame(payload=bytes(self._buffer), oversized=self._oversized)
        self._buffer = bytearray()
        self._in_frame = False
        self._frame_length = 0
        self._oversized = False
        return completed


@dataclass(frozen=True)
class PeerInfo:
    """Address of the remote end of a connection; on TLS, the establishment its certificate
    speaks for and the certificate name that says so."""

    host: str
    port: int
    establishment: str | None = None
    certificate: str | None = None

    def with_certificate(self, establishment: str, certificate: str) -> PeerInfo:
        return replace(self, establishment=establishment, certificate=certificate)


@dataclass(frozen=True)
class TlsOptions:
    """TLS on a server: the context (it decides whether a client certificate is required),
    ``admit(peer, certificate)`` returning the peer as its messages will be handled (with its
    establishment) or None to close the connection, ``handshake_failed(peer, error)`` told of
    every handshake that fails (including a peer that leaves before finishing it). Neither
    callable may raise."""

    context: ssl.SSLContext
    admit: Callable[[PeerInfo, dict[str, Any] | None], PeerInfo | None]
    handshake_failed: Callable[[PeerInfo, BaseException], None]
    handshake_timeout: float = 30.0


Handler = Callable[[Frame, PeerInfo], Awaitable[bytes]]
"""Receives one frame and returns the reply payload (unframed)."""

HandlerErrorReply = Callable[[Frame, BaseException], bytes]
"""Builds the reply payload for a frame whose handler raised."""


class MLLPError(AdapterError):
    """An MLLP exchange failed: connection refused or lost, timeout, or no reply."""


def _peer_info(transport: asyncio.BaseTransport) -> PeerInfo:
    peername = transport.get_extra_info("peername")
    if isinstance(peername, tuple) and len(peername) >= 2:
        return PeerInfo(host=str(peername[0]), port=int(peername[1]))
    return PeerInfo(host=str(peername) if peername else "unknown", port=0)


class MLLPServer:
    """Asyncio MLLP server.

    Each connection is served in original acknowledgement mode: its messages are
    handled strictly in order, one at a time, each answered before the next is handed
    to the handler. Connections are independent of each other.

    With ``max_connections``, a connection beyond that many open ones is closed at once,
    before a byte is read, with a log line: the sender sees its connection refused and
    tries again later, as it does when the server restarts. (An ACK would first need the
    message read and decoded, the very work a full server is spared.)

    Counters for observability: ``connections_open``, ``connections_accepted``,
    ``connections_refused``, ``messages_handled`` (messages answered), ``handler_errors``
    and ``oversized_messages``.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int,
        max_message_bytes: int = 1_048_576,
        idle_timeout: float = 300.0,
        on_handler_error: HandlerErrorReply,
        shutdown_grace_period: float = 10.0,
        tls: TlsOptions | None = None,
        max_connections: int | None = None,
    ) -> None:
        """Configure the server; nothing is bound until ``start``.

        ``on_handler_error`` must not raise: it is the last resort for answering a
        message, and a connection whose message cannot be answered is dropped.

        Raises:
            ValueError: if a size or duration is not positive.
        """
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be positive, got {max_message_bytes}")
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        if shutdown_grace_period < 0:
            raise ValueError(
                f"shutdown_grace_period must not be negative, got {shutdown_grace_period}"
            )
        self._handler = handler
        self._host = host
        self._requested_port = port
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self._on_handler_error = on_handler_error
        self._shutdown_grace_period = shutdown_grace_period
        self._server: asyncio.Server | None = None
        self._accepting = False
        self._connections: set[_ServerConnection] = set()
        self.tls = tls
        self._handshakes: set[asyncio.Task[None]] = set()
        self.connections_open = 0
        self.connections_accepted = 0
        self.messages_handled = 0
        self.handler_errors = 0
        self.oversized_messages = 0
        self.max_connections = max_connections
        self.connections_refused = 0

    @property
    def port(self) -> int:
        """The bound TCP port (useful when the server was created with port 0).

        Raises:
            RuntimeError: if the server is not started.
        """
        if self._server is None or not self._server.sockets:
            raise RuntimeError("MLLP server is not started")
        sockname = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def start(self, listen: bool = True) -> None:
        """Bind the listening socket and start accepting connections. With ``listen`` False,
        the server only serves connections accepted elsewhere and handed to ``adopt``.

        Raises:
            RuntimeError: if the server is already started.
            OSError: if the address cannot be bound.
        """
        if self._accepting:
            raise RuntimeError("MLLP server is already started")
        self._accepting = True
        if not listen:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host=self._host, port=self._requested_port
        )
        logger.info("MLLP server listening on %s:%d%s", self._host, self.port,
                    " (TLS)" if self.tls else "")

    def _protocol(self) -> asyncio.Protocol:
        return _TlsGate(self) if self.tls is not None else _ServerConnection(self)

    async def adopt(self, sock: socket.socket) -> None:
        """Serve a connection accepted by another process or listener. A server that is not
        accepting (not started, or closing) closes the socket."""
        if not self._accepting:
            sock.close()
            return
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(self._protocol, sock)

    async def close(self) -> None:
        """Stop accepting, let in-flight messages finish, then close every connection.

        Messages already received completely are answered if that happens within the
        shutdown grace period; connections still busy after it are aborted. Calling
        ``close`` on a server that is not started does nothing. Never raises.
        """
        if not self._accepting:
            return
        self._accepting = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for handshake in list(self._handshakes):
            handshake.cancel()
        connections = list(self._connections)
        for connection in connections:
            connection.begin_shutdown()
        workers = [connection.worker for connection in connections]
        if workers:
            _, still_running = await asyncio.wait(workers, timeout=self._shutdown_grace_period)
            for connection in connections:
                if connection.worker in still_running:
                    logger.warning(
                        "MLLP connection from %s:%d still busy after the shutdown grace "
                        "period; aborting it",
                        connection.peer.host,
                        connection.peer.port,
                    )
                    connection.abort()
            if still_running:
                await asyncio.wait(still_running)
        if server is not None:
            await server.wait_closed()
        logger.info("MLLP server stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _register(self, connection: _ServerConnection) -> None:
        self._connections.add(connection)
        self.connections_open += 1
        self.connections_accepted += 1
        if not self._accepting:
            # Accepted in the instant between close() starting and the listener closing.
            connection.begin_shutdown()

    def _refuses(self, peer: PeerInfo) -> bool:
        """Whether a new connection is one too many (then counted and logged)."""
        if self.max_connections is None or self.connections_open < self.max_connections:
            return False
        self.connections_refused += 1
        metrics().mllp_refused.inc()
        logger.warning("refused MLLP connection from %s:%d: %d connections are open, the "
                       "most this server takes (MPI_MLLP_MAX_CONNECTIONS); closed at once",
                       peer.host, peer.port, self.connections_open)
        return True

    def _unregister(self, connection: _ServerConnection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self.connections_open -= 1

    async def _reply_for(self, message: Frame, peer: PeerInfo) -> bytes:
        if message.oversized:
            self.oversized_messages += 1
            logger.warning(
                "MLLP message from %s:%d exceeds %d bytes; only its prefix is passed on",
                peer.host,
                peer.port,
                self.max_message_bytes,
            )
        try:
            return await self._handler(message, peer)
        except Exception as exc:
            self.handler_errors += 1
            # The payload is patient data, so only the peer and size are logged.
            logger.exception(
                "MLLP handler failed for a %d-byte message from %s:%d",
                len(message.payload),
                peer.host,
                peer.port,
            )
            return self._on_handler_error(message, exc)


class _ServerConnection(asyncio.Protocol):
    """One accepted connection.

    Bytes are decoded in ``data_received`` and complete frames queued, so that every
    message received before the connection is closed is seen by the worker task,
    which answers the queue in order.
    """

    def __init__(self, server: MLLPServer, peer: PeerInfo | None = None) -> None:
        self._server = server
        self._given_peer = peer
        self._decoder = FrameDecoder(server.max_message_bytes)
        self._pending: deque[Frame] = deque()
        self._wakeup = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._busy = False
        self._peer_finished = False
        self._shutting_down = False
        self._lost = False
        self._refused = False
        self._last_activity = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self.peer = PeerInfo(host="", port=0)
        self.worker: asyncio.Task[None]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        loop = asyncio.get_running_loop()
        self._transport = transport
        self.peer = self._given_peer or _peer_info(transport)
        if self._server._refuses(self.peer):
            self._refused = True
            transport.close()
            return
        self._last_activity = loop.time()
        self._idle_timer = loop.call_later(self._server.idle_timeout, self._check_idle)
        self.worker = loop.create_task(self._answer_messages())
        logger.debug("MLLP connection from %s:%d", self.peer.host, self.peer.port)
        self._server._register(self)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._last_activity = asyncio.get_running_loop().time()
        frames = self._decoder.feed(data)
        if not frames:
            return
        self._pending.extend(frames)
        if len(self._pending) >= _MAX_PENDING_FRAMES and not self._reading_paused:
            self._pause_reading()
        self._wakeup.set()

    def eof_received(self) -> bool:
        if self._refused:
            return False
        self._peer_finished = True
        if self._decoder.has_partial_frame:
            logger.info(
                "MLLP peer %s:%d closed the connection in the middle of a message",
                self.peer.host,
                self.peer.port,
            )
        self._wakeup.set()
        # Keeping the transport open lets messages received before the half-close
        # still be answered; the worker closes it once the queue is empty.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if exc is not None:
            logger.info("MLLP connection from %s:%d lost: %s", self.peer.host, self.peer.port, exc)
        # Unblocks a worker waiting for write buffer space that will never come.
        self._writable.set()
        self._wakeup.set()
        self._server._unregister(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def begin_shutdown(self) -> None:
        """Stop reading; the worker closes the connection after answering its queue."""
        self._shutting_down = True
        self._pause_reading()
        self._wakeup.set()

    def abort(self) -> None:
        """Drop the connection at once, abandoning any message being handled."""
        self.worker.cancel()
        if self._transport is not None:
            self._transport.abort()

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._reading_paused and not self._lost:
            self._transport.pause_reading()
            self._reading_paused = True

    def _resume_reading_if_drained(self) -> None:
        if (
            self._reading_paused
            and not self._shutting_down
            and not self._lost
            and len(self._pending) < _MAX_PENDING_FRAMES // 2
            and self._transport is not None
        ):
            self._transport.resume_reading()
            self._reading_paused = False

    def _check_idle(self) -> None:
        if self._lost or self._transport is None:
            return
        loop = asyncio.get_running_loop()
        idle_for = loop.time() - self._last_activity
        if self._busy or self._pending or idle_for < self._server.idle_timeout:
            remaining = max(self._server.idle_timeout - idle_for, 0.0)
            self._idle_timer = loop.call_later(
                remaining or self._server.idle_timeout, self._check_idle
            )
            return
        logger.info(
            "MLLP connection from %s:%d idle for %.1f s; closing it",
            self.peer.host,
            self.peer.port,
            idle_for,
        )
        self._transport.close()

    async def _answer_messages(self) -> None:
        try:
            await self._answer_until_closed()
        except Exception:
            # Reached only if on_handler_error itself failed: without a reply to send,
            # the connection cannot stay in step with the sender.
            logger.exception(
                "MLLP connection from %s:%d dropped: no reply could be built",
                self.peer.host,
                self.peer.port,
            )
            if self._transport is not None:
                self._transport.abort()

    async def _answer_until_closed(self) -> None:
        transport = self._transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        while True:
            while self._pending and not self._lost:
                message = self._pending.popleft()
                self._resume_reading_if_drained()
                self._busy = True
                try:
                    reply = await self._server._reply_for(message, self.peer)
                    if self._lost:
                        logger.warning(
                            "MLLP connection from %s:%d closed before its reply was sent",
                            self.peer.host,
                            self.peer.port,
                        )
                        return
                    self._server.messages_handled += 1
                    transport.write(frame(reply))
                    await self._writable.wait()
                finally:
                    self._busy = False
                    self._last_activity = loop.time()
            if self._lost:
                return
            if self._peer_finished or self._shutting_down:
                transport.close()
                return
            # No await between the checks above and this wait, so no wake-up is missed.
            self._wakeup.clear()
            await self._wakeup.wait()


class _TlsGate(asyncio.Protocol):
    """An accepted connection before it speaks MLLP: the TLS handshake, then ``admit``; the
    MLLP connection is made only when both pass. Bytes that arrive meanwhile are held and
    handed over in order."""

    def __init__(self, server: MLLPServer) -> None:
        self._server = server
        self._target: _ServerConnection | None = None
        self._held: list[bytes] = []
        self._eof = False
        self._lost: tuple[Exception | None] | None = None

    # -- the plain transport, until start_tls takes it over ---------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the handshake reads first
        task = asyncio.get_running_loop().create_task(self._handshake(transport))
        self._server._handshakes.add(task)
        task.add_done_callback(self._server._handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport) -> None:
        tls = self._server.tls
        assert tls is not None
        peer = _peer_info(transport)
        loop = asyncio.get_running_loop()
        try:
            secured = await loop.start_tls(transport, self, tls.context, server_side=True,
                                           ssl_handshake_timeout=tls.handshake_timeout)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (OSError, TimeoutError, EOFError) as exc:
            transport.abort()
            tls.handshake_failed(peer, exc)
            return
        if secured is None:  # the loop closed it meanwhile
            return
        admitted = tls.admit(peer, secured.get_extra_info("peercert"))
        if admitted is None or not self._server._accepting or self._lost is not None:
            secured.close()
            return
        self._target = _ServerConnection(self._server, admitted)
        self._target.connection_made(secured)
        for data in self._held:
            self._target.data_received(data)
        self._held.clear()
        if self._eof and not self._target.eof_received():
            secured.close()

    # -- the TLS transport, forwarded once admitted ----------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._target is not None:
            self._target.data_received(data)
        else:
            self._held.append(data)

    def eof_received(self) -> bool:
        if self._target is not None:
            return bool(self._target.eof_received())
        self._eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._target is not None:
            self._target.connection_lost(exc)
        else:
            self._lost = (exc,)

    def pause_writing(self) -> None:
        if self._target is not None:
            self._target.pause_writing()

    def resume_writing(self) -> None:
        if self._target is not None:
            self._target.resume_writing()


class MLLPClient:
    """Asyncio MLLP client sending one message at a time and awaiting its reply.

    After a timeout or a connection failure the client is closed: a late reply would
    otherwise be taken as the reply to the next request.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        """Wrap an open stream pair; use ``MLLPClient.connect`` to open one."""
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(max_message_bytes)
        self._received: deque[Frame] = deque()
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def connect(
        cls, host: str, port: int, timeout: float, *, max_message_bytes: int = 1_048_576,
        tls: ssl.SSLContext | None = None,
    ) -> MLLPClient:
        """Open a connection to an MLLP server, over TLS with a ``tls`` client context (the
        server's name checked against ``host``).

        Raises:
            MLLPError: if the connection cannot be established within ``timeout``
                seconds.
        """
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=tls), timeout=timeout
            )
        except TimeoutError as exc:
            raise MLLPError(f"timed out after {timeout} s connecting to {host}:{port}") from exc
        except OSError as exc:
            raise MLLPError(f"cannot connect to {host}:{port}: {exc}") from exc
        return cls(reader, writer, max_message_bytes=max_message_bytes)

    async def request(self, payload: bytes, timeout: float) -> bytes:
        """Send ``payload`` as one MLLP block and return the payload of the next block.

        Concurrent calls are serialised, since replies carry no framing-level
        correlation.

        Raises:
            MLLPError: if the client is closed, the connection fails, the peer closes it
                before a complete reply, the reply exceeds ``max_message_bytes``, or no
                reply arrives within ``timeout`` seconds.
        """
        async with self._lock:
            if self._closed:
                raise MLLPError("MLLP client is closed")
            try:
                async with asyncio.timeout(timeout):
                    self._writer.write(frame(payload))
                    await self._writer.drain()
                    reply = await self._next_frame()
            except TimeoutError as exc:
                await self.close()
                raise MLLPError(f"no MLLP reply within {timeout} s") from exc
            except OSError as exc:
                await self.close()
                raise MLLPError(f"MLLP connection failed: {exc}") from exc
            except MLLPError:
                await self.close()
                raise
        if reply.oversized:
            raise MLLPError("MLLP reply exceeds the maximum message size")
        return reply.payload

    async def close(self) -> None:
        """Close the connection. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            # The connection is being discarded; a reset while closing changes nothing.
            pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _next_frame(self) -> Frame:
        while not self._received:
            data = await self._reader.read(_READ_CHUNK_BYTES)
            if not data:
                raise MLLPError("MLLP peer closed the connection before replying")
            self._received.extend(self._decoder.feed(data))
        return self._received.popleft()
