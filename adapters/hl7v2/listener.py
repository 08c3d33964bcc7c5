"""The MLLP listener of the service: the framing server (``mllp.py``) wired to the HL7
application, in the process that runs it.

The application is synchronous (it waits on the database); each message is answered in a
thread so that the event loop keeps serving the other connections.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from adapters.hl7v2.application import Hl7Application
from adapters.hl7v2.charset import encode_reply
from adapters.hl7v2.er7 import ParseError, parse
from adapters.hl7v2.mllp import Frame, Handler, MLLPServer, PeerInfo
from adapters.hl7v2.replies import APPLICATION_INTERNAL_ERROR, Problem, ReplyHeader, ack

__all__ = ["in_process_handler", "fallback_reply", "mllp_server"]


def in_process_handler(application: Hl7Application) -> Handler:
    """An MLLP handler answering each message with the application, in a worker thread."""

    async def handle(frame: Frame, peer: PeerInfo) -> bytes:
        reply = await asyncio.to_thread(
            application.handle, frame.payload, frame.oversized, f"{peer.host}:{peer.port}"
        )
        return encode_reply(reply.text, reply.codec)

    return handle


def fallback_reply(frame: Frame, exc: BaseException) -> bytes:
    """The answer when even the journal could not be written (database down): an AE that
    asks for the message again, never silence."""
    try:
        header = ReplyHeader.of(parse(frame.payload.decode("latin-1")))
    except ParseError:
        header = ReplyHeader()
    problem = Problem("AE", APPLICATION_INTERNAL_ERROR,
                      "the message could not be journaled; send it again")
    return ack(header, datetime.now(UTC), problem).encode("latin-1", errors="replace")


def mllp_server(handler: Handler, *, host: str, port: int, max_message_bytes: int,
                idle_timeout: float) -> MLLPServer:
    """The MLLP server of the service around a handler (nothing bound until ``start``)."""
    return MLLPServer(
        handler, host=host, port=port, max_message_bytes=max_message_bytes,
        idle_timeout=idle_timeout, on_handler_error=fallback_reply,
    )
