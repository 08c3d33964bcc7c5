"""The MLLP listener of the service: the framing server (``mllp.py``) wired to the HL7
application, in the process that runs it.

The application is synchronous (it waits on the database); each message is answered in a
thread so that the event loop keeps serving the other connections. On the TLS listener the
client certificate decides the establishment each connection speaks for (see ``adapters/tls.py``);
the application then refuses a message whose MSH-4 is not one of its sending facilities.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import UTC, datetime
from typing import Any

from adapters.hl7v2.application import Hl7Application
from adapters.hl7v2.charset import encode_reply
from adapters.hl7v2.er7 import ParseError, parse
from adapters.hl7v2.mllp import Frame, Handler, MLLPServer, PeerInfo, TlsOptions
from adapters.hl7v2.replies import APPLICATION_INTERNAL_ERROR, Problem, ReplyHeader, ack
from adapters.tls import ClientIdentities, TlsTrail, certificate_names, left_early

__all__ = ["in_process_handler", "fallback_reply", "mllp_server", "mllp_tls"]

log = logging.getLogger("mpi.tls")


def in_process_handler(application: Hl7Application) -> Handler:
    """An MLLP handler answering each message with the application, in a worker thread."""

    async def handle(frame: Frame, peer: PeerInfo) -> bytes:
        reply = await asyncio.to_thread(
            application.handle, frame.payload, frame.oversized, f"{peer.host}:{peer.port}",
            peer.establishment, peer.certificate,
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
                idle_timeout: float, tls: TlsOptions | None = None,
                max_connections: int | None = None) -> MLLPServer:
    """The MLLP server of the service around a handler (nothing bound until ``start``);
    with ``tls``, MLLP over TLS; beyond ``max_connections`` open ones, a connection is
    closed at once."""
    return MLLPServer(
        handler, host=host, port=port, max_message_bytes=max_message_bytes,
        idle_timeout=idle_timeout, on_handler_error=fallback_reply, tls=tls,
        max_connections=max_connections,
    )


def mllp_tls(context: ssl.SSLContext, identities: ClientIdentities,
             trail: TlsTrail) -> TlsOptions:
    """TLS for the MLLP listener: a connection is admitted when its certificate names a
    declared establishment, which its messages then speak for."""

    def admit(peer: PeerInfo, certificate: dict[str, Any] | None) -> PeerInfo | None:
        address = f"{peer.host}:{peer.port}"
        who = identities.identify(certificate)
        if who is None:
            trail.undeclared(address, certificate_names(certificate))
            return None
        trail.accepted(address, who)
        return peer.with_certificate(who.establishment.code, who.name)

    def handshake_failed(peer: PeerInfo, exc: BaseException) -> None:
        if left_early(exc):
            log.info("MLLP TLS peer %s:%d left during the handshake: %s", peer.host,
                     peer.port, exc)
        else:
            trail.handshake_failed(f"{peer.host}:{peer.port}", exc)

    return TlsOptions(context, admit, handshake_failed)
