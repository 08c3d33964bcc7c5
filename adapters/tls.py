"""TLS for the listeners (IHE ATNA secure node, DICOM PS3.15 secure transport, BCP 195): the
server contexts, who a client certificate speaks for, and how a refused peer is recorded.

One certificate and key for the service, one file of client certificate authorities. MLLP and
DICOM require a client certificate signed by one of those authorities; HTTPS asks for one but
does without (HTTP callers prove who they are with tokens). The certificate's subject common
name or one of its DNS subjectAltNames, looked up in the ``tls_client_names`` of the
authorities file, decides the establishment a connection speaks for.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.errors import AdapterError
from adapters.logs import log_event
from mpi.audit import AuditAction, AuditEvent
from mpi.authorities import AuthorityRegistry
from mpi.model import Authority
from mpi.ports import AuditTrail, Clock

__all__ = ["TlsError", "server_context", "certificate_names", "ClientIdentities",
           "TlsPeer", "TlsTrail", "is_loopback", "left_early", "BCP195_CIPHERS"]

log = logging.getLogger("mpi.tls")

# TLS 1.2 cipher suites BCP 195 (RFC 9325 §4.2) recommends: forward secrecy and AEAD only.
# TLS 1.3's suites are all acceptable and are not set by this string.
BCP195_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                  "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")


class TlsError(AdapterError):
    """A TLS file cannot be read or does not make a usable context (wrong key, not PEM)."""


def server_context(cert: Path, key: Path, client_ca: Path, *,
                   client_certificate: ssl.VerifyMode) -> ssl.SSLContext:
    """A server context: TLS 1.2 at least, BCP 195 cipher suites, no compression or
    renegotiation, client certificates checked against ``client_ca`` (required with
    ``ssl.CERT_REQUIRED``, asked for with ``ssl.CERT_OPTIONAL``). Raises TlsError naming the
    file that is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise TlsError(f"cannot read the TLS certificate or key: {exc.filename}: "
                       f"{exc.strerror}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"the TLS certificate {cert} and key {key} are not a PEM certificate "
                       f"and its private key: {exc}") from None
    try:
        context.load_verify_locations(cafile=client_ca)
    except FileNotFoundError as exc:
        raise TlsError(f"cannot read the client certificate authorities {client_ca}: "
                       f"{exc.strerror}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"the client certificate authorities {client_ca} are not PEM "
                       f"certificates: {exc}") from None
    context.verify_mode = client_certificate
    return context


def certificate_names(certificate: dict[str, Any] | None) -> tuple[str, ...]:
    """The names a verified peer certificate (``getpeercert()``) goes by: its subject common
    names, then its DNS subjectAltNames, lower case."""
    if not certificate:
        return ()
    names: list[str] = []
    for rdn in certificate.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName":
                names.append(str(value).strip().lower())
    for kind, value in certificate.get("subjectAltName", ()):
        if kind == "DNS":
            names.append(str(value).strip().lower())
    return tuple(dict.fromkeys(name for name in names if name))


@dataclass(frozen=True)
class TlsPeer:
    """Who a TLS connection speaks for: the certificate name that matched and its
    establishment."""

    name: str
    establishment: Authority


class ClientIdentities:
    """The ``tls_client_names`` of the authorities file, as a lookup."""

    def __init__(self, registry: AuthorityRegistry) -> None:
        self._by_name = {name: authority for authority in registry.all
                         for name in authority.tls_client_names}

    def identify(self, certificate: dict[str, Any] | None) -> TlsPeer | None:
        """The establishment the first declared name of the certificate speaks for."""
        for name in certificate_names(certificate):
            authority = self._by_name.get(name)
            if authority is not None:
                return TlsPeer(name, authority)
        return None

    def __bool__(self) -> bool:
        return bool(self._by_name)


class TlsTrail:
    """What the TLS listeners of one channel (mllp, dicom) tell the log and the access trail:
    one line and one security alert for a refused peer (a failed handshake, a certificate of no
    declared establishment, a sender or calling AE title its certificate does not speak for),
    one line and one authentication for a client admitted."""

    def __init__(self, audit: AuditTrail, clock: Clock, channel: str) -> None:
        self.audit = audit
        self.clock = clock
        self.channel = channel

    def accepted(self, address: str, peer: TlsPeer) -> None:
        """A client admitted: one line, and an authentication in the trail."""
        log_event(log, logging.INFO, f"{self.channel} TLS client", address=address,
                  certificate=peer.name, establishment=peer.establishment.code)
        try:
            self.audit.record(AuditEvent(
                occurred_at=self.clock.now(), channel=self.channel,
                action=AuditAction.AUTHENTICATE, actor=f"tls:{peer.name}",
                subject="TLS client certificate", outcome="success",
                authority=peer.establishment.code, source=address))
        except Exception:  # the connection stands; the trail's failure is its own problem
            log.exception("could not write an authentication to the access trail")

    def handshake_failed(self, address: str, exc: BaseException) -> None:
        reason = _reason(exc)
        log_event(log, logging.WARNING, f"refused {self.channel.upper()} TLS handshake: "
                  f"{_meaning(reason)}", address=address, reason=reason)
        self._record("tls:?", "TLS handshake refused", address, None, {"reason": reason})

    def undeclared(self, address: str, names: tuple[str, ...]) -> None:
        shown = ", ".join(names) or "(none)"
        log_event(log, logging.WARNING, f"refused {self.channel.upper()} TLS client: its "
                  "certificate names no declared establishment; add one of its names to the "
                  "tls_client_names of its establishment in the authorities file "
                  "(MPI_AUTHORITIES)", address=address, names=shown)
        self._record(f"tls:{next(iter(names), '?')}", "TLS client refused", address, None,
                     {"reason": "certificate of no declared establishment",
                      "certificate_names": shown})

    def record(self, actor: str, subject: str, address: str | None, authority: str | None,
               detail: dict[str, object]) -> None:
        """A refusal of another kind, already logged by the caller."""
        self._record(actor, subject, address, authority, detail)

    def _record(self, actor: str, subject: str, address: str | None, authority: str | None,
                detail: dict[str, object]) -> None:
        try:
            self.audit.record(AuditEvent(
                occurred_at=self.clock.now(), channel=self.channel, action=AuditAction.ALERT,
                actor=actor, subject=subject, outcome="refused", authority=authority,
                source=address, detail=dict(detail)))
        except Exception:  # the refusal stands; the trail's failure is its own problem
            log.exception("could not write a security alert to the access trail")


def left_early(exc: BaseException) -> bool:
    """Whether a failed handshake is a peer that closed before finishing it (a port probe, a
    peer giving up), which is logged but is no security alert."""
    return isinstance(exc, ssl.SSLEOFError | ConnectionError | EOFError | TimeoutError) or (
        isinstance(exc, ssl.SSLError) and exc.reason == "UNEXPECTED_EOF_WHILE_READING")


def _meaning(reason: str) -> str:
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNSUPPORTED_PROTOCOL",
                  "VERSION_TOO_LOW"):
        return "the peer does not speak TLS 1.2 or later (a plain client on the TLS port?)"
    if reason in ("NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE"):
        return "the peer offers none of the BCP 195 cipher suites"
    return ("no valid client certificate from a trusted authority (MPI_TLS_CLIENT_CA, "
            "certificate dates)")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback
                               for info in found)


