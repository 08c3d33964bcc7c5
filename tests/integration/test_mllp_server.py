"""MLLP server and client over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import hl7.client  # type: ignore[import-untyped]
import pytest

from adapters.hl7v2.mllp import (
    Frame,
    FrameDecoder,
    MLLPClient,
    MLLPError,
    MLLPServer,
    PeerInfo,
    frame,
)

HOST = "127.0.0.1"
SOCKET_TIMEOUT = 3.0

T = TypeVar("T")


def message(control_id: str, filler: str = "") -> bytes:
    return f"MSH|^~\\&|LAB|NANCY|MPI|NANCY|20240101||ADT^A01|{control_id}|P|2.5\rPID|1{filler}".encode()


class RecordingHandler:
    """Replies "ACK|" + the first 20 payload bytes; raises on messages starting "BOOM"."""

    def __init__(self, delay: float = 0.0) -> None:
        self.frames: list[Frame] = []
        self.delay = delay

    async def __call__(self, received: Frame, peer: PeerInfo) -> bytes:
        self.frames.append(received)
        assert peer.host == HOST
        if self.delay:
            await asyncio.sleep(self.delay)
        if received.payload.startswith(b"BOOM"):
            raise RuntimeError("handler failure")
        tag = b"REJ|" if received.oversized else b"ACK|"
        return tag + received.payload[:20]


def error_reply(received: Frame, exc: BaseException) -> bytes:
    return b"ERR|" + type(exc).__name__.encode() + b"|" + received.payload[:20]


def ack(payload: bytes) -> bytes:
    return b"ACK|" + payload[:20]


class ServerThread:
    """Runs an MLLPServer on its own event loop in a background thread."""

    def __init__(self, server: MLLPServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self._thread.start()
        self.run(self.server.start())

    def stop(self) -> None:
        try:
            self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


@contextlib.contextmanager
def running_server(
    handler: RecordingHandler | None = None, **options: Any
) -> Iterator[ServerThread]:
    server = MLLPServer(
        handler or RecordingHandler(),
        host=HOST,
        port=0,
        on_handler_error=error_reply,
        **options,
    )
    thread = ServerThread(server)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT)
    sock.settimeout(SOCKET_TIMEOUT)
    return sock


def receive_frames(sock: socket.socket, count: int) -> list[bytes]:
    decoder = FrameDecoder(max_message_bytes=1_000_000)
    frames: list[Frame] = []
    while len(frames) < count:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed after {len(frames)} of {count} replies")
        frames.extend(decoder.feed(data))
    assert len(frames) == count
    return [received.payload for received in frames]


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_many_messages_on_one_connection_with_hl7_client() -> None:
    with running_server() as running:
        with hl7.client.MLLPClient(HOST, running.server.port) as client:
            for number in range(20):
                payload = message(f"MSG{number:03d}")
                reply = client.send_message(payload)
                raw = reply if isinstance(reply, bytes) else reply.encode()
                assert raw == frame(ack(payload))
        wait_until(lambda: running.server.connections_open == 0)
        assert running.server.messages_handled == 20
        assert running.server.connections_accepted == 1


def test_message_sent_one_byte_at_a_time() -> None:
    with running_server() as running, connect(running.server.port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire = frame(message("SLOW"))
        for index in range(len(wire)):
            sock.sendall(wire[index : index + 1])
        assert receive_frames(sock, 1) == [ack(message("SLOW"))]


def test_three_messages_in_one_send_are_answered_in_order() -> None:
    handler = RecordingHandler(delay=0.02)
    with running_server(handler) as running, connect(running.server.port) as sock:
        payloads = [message(f"M{number}") for number in (3, 1, 2)]
        sock.sendall(b"".join(frame(payload) for payload in payloads))
        assert receive_frames(sock, 3) == [ack(payload) for payload in payloads]
        assert [received.payload for received in handler.frames] == payloads


def test_oversized_message_is_flagged_and_connection_keeps_working() -> None:
    handler = RecordingHandler()
    with running_server(handler, max_message_bytes=1000) as running:
        with connect(running.server.port) as sock:
            big = message("BIG", filler="|" + "x" * 20_000)
            sock.sendall(frame(big))
            assert receive_frames(sock, 1) == [b"REJ|" + big[:20]]
            sock.sendall(frame(message("NORMAL")))
            assert receive_frames(sock, 1) == [ack(message("NORMAL"))]
        assert handler.frames[0].oversized
        assert handler.frames[0].payload == big[:4096]
        assert handler.frames[1] == Frame(message("NORMAL"), oversized=False)
        assert running.server.oversized_messages == 1


def test_handler_error_is_answered_and_connection_stays_usable() -> None:
    with running_server() as running, connect(running.server.port) as sock:
        sock.sendall(frame(b"BOOM|first"))
        assert receive_frames(sock, 1) == [b"ERR|RuntimeError|BOOM|first"]
        sock.sendall(frame(message("AFTER")))
        assert receive_frames(sock, 1) == [ack(message("AFTER"))]
        assert running.server.handler_errors == 1
        assert running.server.messages_handled == 2


def test_idle_connection_is_closed() -> None:
    with running_server(idle_timeout=0.3) as running, connect(running.server.port) as sock:
        sock.sendall(frame(message("ONE")))
        assert receive_frames(sock, 1) == [ack(message("ONE"))]
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert 0.2 < time.monotonic() - started < 2.0
        wait_until(lambda: running.server.connections_open == 0)


def test_peer_closing_mid_frame_just_closes() -> None:
    handler = RecordingHandler()
    with running_server(handler) as running:
        with connect(running.server.port) as sock:
            sock.sendall(b"\x0bMSH|^~\\&|unfinished")
            wait_until(lambda: running.server.connections_open == 1)
        wait_until(lambda: running.server.connections_open == 0)
        assert handler.frames == []


def test_message_before_half_close_is_still_answered() -> None:
    with running_server() as running, connect(running.server.port) as sock:
        sock.sendall(frame(message("LAST")))
        sock.shutdown(socket.SHUT_WR)
        assert receive_frames(sock, 1) == [ack(message("LAST"))]
        assert sock.recv(1024) == b""


def test_close_with_connected_client() -> None:
    with running_server() as running:
        port = running.server.port
        with connect(port) as sock:
            sock.sendall(frame(message("BEFORE")))
            assert receive_frames(sock, 1) == [ack(message("BEFORE"))]
            running.run(running.server.close())
            assert sock.recv(1024) == b""
        assert running.server.connections_open == 0
        with pytest.raises(OSError):
            connect(port).close()


def test_close_waits_for_the_message_in_flight() -> None:
    handler = RecordingHandler(delay=0.3)
    with running_server(handler) as running, connect(running.server.port) as sock:
        sock.sendall(frame(message("INFLIGHT")))
        wait_until(lambda: len(handler.frames) == 1)
        running.run(running.server.close())
        assert receive_frames(sock, 1) == [ack(message("INFLIGHT"))]
        assert sock.recv(1024) == b""


def test_close_aborts_connections_busy_beyond_the_grace_period() -> None:
    handler = RecordingHandler(delay=5.0)
    with (
        running_server(handler, shutdown_grace_period=0.2) as running,
        connect(running.server.port) as sock,
    ):
        sock.sendall(frame(message("STUCK")))
        wait_until(lambda: len(handler.frames) == 1)
        started = time.monotonic()
        running.run(running.server.close())
        assert time.monotonic() - started < 2.0
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""


async def with_server(
    handler: RecordingHandler,
    scenario: Callable[[MLLPServer], Coroutine[Any, Any, None]],
    **options: Any,
) -> None:
    async with MLLPServer(
        handler, host=HOST, port=0, on_handler_error=error_reply, **options
    ) as server:
        await scenario(server)


def test_async_client_round_trips() -> None:
    async def scenario(server: MLLPServer) -> None:
        async with await MLLPClient.connect(HOST, server.port, timeout=2.0) as client:
            for number in range(5):
                payload = message(f"ASYNC{number}")
                assert await client.request(payload, timeout=2.0) == ack(payload)
            assert await client.request(b"BOOM|x", timeout=2.0) == b"ERR|RuntimeError|BOOM|x"

    asyncio.run(with_server(RecordingHandler(), scenario))


def test_async_client_times_out_and_closes() -> None:
    async def scenario(server: MLLPServer) -> None:
        client = await MLLPClient.connect(HOST, server.port, timeout=2.0)
        with pytest.raises(MLLPError, match="no MLLP reply"):
            await client.request(message("SLOWREPLY"), timeout=0.1)
        with pytest.raises(MLLPError, match="closed"):
            await client.request(message("AGAIN"), timeout=1.0)

    asyncio.run(with_server(RecordingHandler(delay=1.0), scenario, shutdown_grace_period=0.0))


def test_async_client_reports_peer_closing_before_reply() -> None:
    async def scenario(server: MLLPServer) -> None:
        client = await MLLPClient.connect(HOST, server.port, timeout=2.0)
        await asyncio.sleep(0.4)
        with pytest.raises(MLLPError):
            await client.request(message("LATE"), timeout=2.0)
        await client.close()

    asyncio.run(with_server(RecordingHandler(), scenario, idle_timeout=0.2))


def test_async_client_connection_refused() -> None:
    with socket.socket() as placeholder:
        placeholder.bind((HOST, 0))
        unused_port = placeholder.getsockname()[1]

    async def scenario() -> None:
        with pytest.raises(MLLPError, match="cannot connect"):
            await MLLPClient.connect(HOST, unused_port, timeout=2.0)

    asyncio.run(scenario())
