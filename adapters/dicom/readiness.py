"""pynetdicom's association sockets asked with poll(2) whether data is waiting, not select(2).

pynetdicom 3.0 checks each association socket with ``select.select``, which cannot watch a file
descriptor numbered 1024 or above (FD_SETSIZE): it raises ValueError, which pynetdicom takes
for a closed connection, and the association is aborted before it is negotiated. A server
that holds more than a thousand files and sockets open (MLLP connections, HTTP clients,
database connections, blobs being read: well within a busy ``mpi serve``) then aborted every
new DICOM association, plain or TLS ("Peer aborted Association" at the peer). poll has no
such limit. The answer is the same as pynetdicom's: data waiting, or the connection closed
(both end the wait), or data already decrypted and buffered by an SSL socket.

Applied once, when the DICOM adapter is imported (see :func:`use_poll`).
"""

from __future__ import annotations

import select
import ssl
from typing import Any

from pynetdicom.transport import AssociationSocket

__all__ = ["use_poll", "socket_ready"]

_WAITING = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


def socket_ready(self: Any) -> bool:
    """:attr:`AssociationSocket.ready` by poll: True when data can be read now (or the peer
    closed, which the next read reports), False otherwise; a socket that cannot be polled
    any more is the transport connection closed (Evt17), as in pynetdicom."""
    sock = self.socket
    if sock is None or self._is_connected is False:
        return False
    try:
        poller = select.poll()
        poller.register(sock, _WAITING)
        ready = bool(poller.poll(0))
    except (OSError, TimeoutError, ValueError):
        self.event_queue.put("Evt17")
        return False
    if isinstance(sock, ssl.SSLSocket):
        return ready or bool(sock.pending())
    return ready


def use_poll() -> None:
    """Make every pynetdicom association socket of this process use :func:`socket_ready`."""
    AssociationSocket.ready = property(socket_ready)  # type: ignore[method-assign,assignment]
