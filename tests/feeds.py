"""Reading the HL7 fixture feeds (one segment per line, messages separated by an empty line,
'#' comment lines) and talking to the service the way a HIS does."""

from __future__ import annotations

import socket
from pathlib import Path

import hl7.client

from adapters.hl7v2.charset import message_charset, python_codec
from adapters.hl7v2.mllp import frame

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"


def load_feed(path: Path) -> list[str]:
    """The messages of a feed file, segments joined by CR."""
    messages: list[str] = []
    current: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                messages.append("\r".join(current) + "\r")
                current = []
            continue
        current.append(line.rstrip("\n"))
    if current:
        messages.append("\r".join(current) + "\r")
    return messages


def encode(message: str) -> bytes:
    """A message in the character set its MSH-18 declares."""
    charset = message_charset(message.encode("utf-8"))
    return message.encode(python_codec(charset, "utf-8"))


def reply_text(raw: bytes | str) -> str:
    """The reply of hl7.client.MLLPClient.send_message, without its MLLP framing."""
    data = raw if isinstance(raw, bytes) else raw.encode("latin-1")
    data = data.strip(b"\x0b\x1c\r")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def segments(reply: str) -> dict[str, list[list[str]]]:
    """Reply segments by name, each split on '|'."""
    found: dict[str, list[list[str]]] = {}
    for line in reply.replace("\n", "\r").split("\r"):
        if line:
            found.setdefault(line[:3], []).append(line.split("|"))
    return found


class Peer:
    """A HIS: the hl7 package's MLLP client, reading whole replies even when they arrive in
    several pieces (its own send_message reads a single recv)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.client = hl7.client.MLLPClient(host, port)
        self.client.socket.settimeout(30)

    def send(self, message: str | bytes) -> str:
        data = message if isinstance(message, bytes) else encode(message)
        raw = self.client.send_message(data)
        while not raw.endswith(b"\x1c\r"):
            more = self.client.socket.recv(65536)
            if not more:
                break
            raw += more
        return reply_text(raw)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


__all__ = ["FEEDS", "load_feed", "encode", "reply_text", "segments", "Peer", "raw_socket", "frame"]
