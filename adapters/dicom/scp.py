"""The DIMSE service (pynetdicom): C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE as AE `VNA`.

Calling AE titles are mapped to establishments by the authorities file. An object from an
undeclared calling AE title is refused (0x0124), like every query or retrieve from one. A
refused object gets the status of ``adapters/dicom/status.py``'s table, and the association
goes on.

DICOM over TLS (PS3.15 secure transport) runs as a second server of the same AE: the TLS
handshake requires a client certificate from a trusted authority, done in the connection's own
thread; a certificate that names no declared establishment is refused before the association
is read; an association whose calling AE title is not one of the certificate's establishment's
is rejected (A-ASSOCIATE-RJ, calling AE title not recognised). Each refusal is logged in one line
and written in the access trail as a security alert.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from adapters.dicom.header import dicom_date, meta_end, part10_bytes
from adapters.dicom.readiness import use_poll
from adapters.dicom.service import DicomArchive, StoreTrail, match_dataset
from adapters.dicom.spool import SpooledBody
from adapters.dicom.status import INVALID_OBJECT, NOT_AUTHORIZED, OUT_OF_RESOURCES, store_failure
from adapters.errors import AdapterError
from adapters.logs import bind_request_id, log_event, new_request_id, request_id
from adapters.metrics import metrics
from adapters.tls import ClientIdentities, TlsPeer, TlsTrail, certificate_names, left_early
from mpi.archive import LEVELS, ArchiveQuery, Sender
from mpi.audit import AuditAction
from mpi.errors import MPIError, UnknownAuthorityError

__all__ = ["DicomServer", "query_of", "TRANSFER_SYNTAXES"]

log = logging.getLogger("mpi.dicom")

# Association sockets checked with poll, whatever their file descriptor (see readiness.py).
use_poll()

# Accepted as offered and stored as received (compression comes later, in the background).
# In the order we accept them when a peer proposes several in one presentation context (the
# acceptor's order decides): the lossless compressed ones first, so that a peer that says it
# takes them gets objects stored that way without a decode, then the uncompressed ones,
# then the lossy ones (accepted as received, never chosen over an uncompressed one). On the
# way out, a peer that accepted none of an object's stored syntax but an uncompressed one
# gets it decoded (the pixels equal the original); the stored bytes otherwise.
TRANSFER_SYNTAXES = [
    JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1, JPEGLossless, RLELossless,
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian, JPEGLSNearLossless, JPEG2000, JPEGBaseline8Bit, JPEGExtended12Bit,
]
_QUERY_MODELS = {
    PatientRootQueryRetrieveInformationModelFind: "PATIENT",
    PatientRootQueryRetrieveInformationModelGet: "PATIENT",
    PatientRootQueryRetrieveInformationModelMove: "PATIENT",
    StudyRootQueryRetrieveInformationModelFind: "STUDY",
    StudyRootQueryRetrieveInformationModelGet: "STUDY",
    StudyRootQueryRetrieveInformationModelMove: "STUDY",
}


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds


def _values(identifier: Dataset, keyword: str) -> tuple[str, ...]:
    value = identifier.get(keyword)
    if value is None or value == "":
        return ()
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    return tuple(str(v).strip() for v in items if str(v).strip() and str(v).strip() != "*")


def _single(identifier: Dataset, keyword: str) -> str | None:
    value = str(identifier.get(keyword) or "").strip()
    return None if value in ("", "*") else value


def query_of(identifier: Dataset, level: str) -> ArchiveQuery:
    """The matching keys of a C-FIND / C-GET / C-MOVE identifier."""
    issuer_oid = None
    qualifiers = identifier.get("IssuerOfPatientIDQualifiersSequence")
    if qualifiers:
        issuer_oid = _single(qualifiers[0], "UniversalEntityID")
    date_from = date_to = None
    study_date = _single(identifier, "StudyDate")
    if study_date:
        first, dash, last = study_date.partition("-")
        date_from = dicom_date(first)
        date_to = dicom_date(last) if dash else date_from
    name = _single(identifier, "PatientName")
    return ArchiveQuery(
        level=level, patient_id=_single(identifier, "PatientID"),
        issuer=_single(identifier, "IssuerOfPatientID"), issuer_oid=issuer_oid,
        patient_name=name.rstrip("^") if name else None,
        study_uids=_values(identifier, "StudyInstanceUID"),
        accession_number=_single(identifier, "AccessionNumber"),
        date_from=date_from, date_to=date_to,
        modality=_single(identifier, "Modality") or _single(identifier, "ModalitiesInStudy"),
        series_uids=_values(identifier, "SeriesInstanceUID"),
        sop_uids=_values(identifier, "SOPInstanceUID"),
    )


def _answer(requested: Dataset, full: Dataset) -> Dataset:
    """The requested keys, valued where we know them (others returned empty)."""
    out = Dataset()
    for element in requested:
        keyword = element.keyword
        if keyword in full:
            out[keyword] = full[keyword]
        else:
            out.add(element)
    out.QueryRetrieveLevel = full.QueryRetrieveLevel
    out.SpecificCharacterSet = "ISO_IR 192"
    return out


class _TlsAssociationServer(ThreadedAssociationServer):
    """pynetdicom's server with the TLS handshake moved from the accepting thread (where one
    silent peer would hold up every other) to the connection's thread, where a failure can be
    logged and audited, and the certificate checked before the association is read."""

    dicom: DicomServer

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None and self.ssl_context is not None
        client, address = self.socket.accept()
        try:
            return self.ssl_context.wrap_socket(client, server_side=True,
                                                do_handshake_on_connect=False), address
        except OSError as exc:  # socketserver drops the connection without a word
            log.warning("DICOM TLS connection from %s dropped before its handshake: %s",
                        _shown_address(address), exc)
            client.close()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            admitted = self.dicom.tls_admits(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)
            return
        if admitted:
            super().process_request_thread(request, client_address)
        else:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """In the log, not on standard error (socketserver prints the traceback there)."""
        log.exception("DICOM TLS connection from %s failed", _shown_address(client_address))


class DicomServer:
    """The DIMSE listener around a :class:`DicomArchive`, and its TLS listener."""

    def __init__(self, archive: DicomArchive, max_associations: int = 32) -> None:
        self.archive = archive
        self.max_associations = max_associations
        self._started: dict[int, float] = {}  # association → when it was established
        self._trails: dict[int, StoreTrail] = {}  # association → its stores' trail
        self._server: ThreadedAssociationServer | None = None
        self._tls_server: _TlsAssociationServer | None = None
        self._identities = ClientIdentities(archive.registry)
        self.tls_trail = TlsTrail(archive.audit, archive.clock, "dicom")
        self.ae = self._application_entity()

    def _application_entity(self) -> AE:
        # A received dataset goes to a temporary file as its fragments arrive, never whole
        # into memory (see _received).
        _config.STORE_RECV_CHUNKED_DATASET = True
        ae = AE(ae_title=self.archive.ae_title)
        ae.maximum_pdu_size = 0  # no limit on what we receive: fewer, larger PDUs
        ae.network_timeout = 60
        ae.dimse_timeout = 120
        ae.acse_timeout = 30
        # One more is refused with A-ASSOCIATE-RJ, transient, local limit exceeded: the
        # modality tries again later.
        ae.maximum_associations = self.max_associations
        # An undeclared calling AE title is refused at association time (A-ASSOCIATE-RJ,
        # "calling AE title not recognised"), before anything is sent; titles compare as
        # the registry compares them, whatever their case.
        ae.require_calling_aet = sorted({variant for authority in self.archive.registry.all
                                         for title in authority.ae_titles
                                         for variant in (title, title.upper(), title.lower())})
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES,
                                     scu_role=True, scp_role=True)
        for model in [Verification, *_QUERY_MODELS]:
            ae.add_supported_context(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        return ae

    def _handlers(self) -> list[Any]:
        return [(evt.EVT_CONN_OPEN, _no_delay), (evt.EVT_REJECTED, self.on_rejected),
                (evt.EVT_ESTABLISHED, self.on_established),
                (evt.EVT_RELEASED, self.on_ended), (evt.EVT_ABORTED, self.on_ended),
                (evt.EVT_C_STORE, self.on_store), (evt.EVT_C_FIND, self.on_find),
                (evt.EVT_C_GET, self.on_get), (evt.EVT_C_MOVE, self.on_move)]

    def start(self, host: str, port: int) -> int:
        """Listen in background threads; returns the bound port."""
        server = self.ae.start_server((host, port), block=False,
                                      evt_handlers=self._handlers())
        assert server is not None  # a non-blocking start returns its server
        self._server = server
        bound = int(server.server_address[1])
        self.archive.bound_port = bound
        return bound

    def start_tls(self, host: str, port: int, context: ssl.SSLContext) -> int:
        """Listen for DICOM over TLS in background threads; returns the bound port. The
        context must require a client certificate."""
        server = self.ae.make_server(
            (host, port), ssl_context=context, server_class=_TlsAssociationServer,
            evt_handlers=[(evt.EVT_REQUESTED, self.on_tls_requested), *self._handlers()])
        assert isinstance(server, _TlsAssociationServer)
        server.dicom = self
        self.ae._servers.append(server)  # as start_server does: shutdown() removes it
        threading.Thread(target=server.serve_forever, name="dicom-tls-acceptor",
                         daemon=True).start()
        self._tls_server = server
        bound = int(server.server_address[1])
        return bound

    def stop(self) -> None:
        for server in (self._server, self._tls_server):
            if server is not None:
                server.shutdown()
        self._server = self._tls_server = None

    # -- TLS -----------------------------------------------------------------------------

    def tls_admits(self, connection: ssl.SSLSocket, address: Any) -> bool:
        """Do the handshake of a TLS connection (in its own thread) and check that its
        certificate speaks for a declared establishment; log and audit a refusal."""
        shown = _shown_address(address)
        try:
            connection.settimeout(self.ae.acse_timeout or 30)
            connection.do_handshake()
            connection.settimeout(None)
        except OSError as exc:
            if left_early(exc):  # the peer left, or never spoke
                log.info("DICOM TLS peer %s left during the handshake: %s", shown, exc)
            else:
                self.tls_trail.handshake_failed(shown, exc)
            return False
        certificate = connection.getpeercert()
        who = self._identities.identify(certificate)
        if who is None:
            self.tls_trail.undeclared(shown, certificate_names(certificate))
            return False
        self.tls_trail.accepted(shown, who)
        return True

    def _tls_peer(self, assoc: Any) -> TlsPeer | None:
        connection = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        if not isinstance(connection, ssl.SSLSocket):
            return None
        return self._identities.identify(connection.getpeercert())

    def on_tls_requested(self, event: Any) -> None:
        """Reject an association whose calling AE title is not one of the establishment its
        certificate speaks for, before anything is negotiated."""
        self._name_association(event)
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title).strip()
        who = self._tls_peer(assoc)
        authority = self.archive.registry.for_ae_title(calling)
        if who is not None and authority is not None and authority.code == who.establishment.code:
            return
        establishment = who.establishment.code if who else None
        address = _address(event)
        log_event(log, logging.WARNING,
                  "refused DICOM association: its calling AE title is not one of the "
                  "establishment its TLS client certificate speaks for; fix the AE title at "
                  "the peer, or the ae_titles / tls_client_names of the authorities file",
                  calling=calling or "(empty)", certificate=who.name if who else None,
                  establishment=establishment, address=address)
        self.tls_trail.record(
            f"tls:{who.name if who else '?'}", f"A-ASSOCIATE-RQ from {calling or '(empty)'}",
            address, establishment,
            {"reason": "calling AE title of another establishment", "calling": calling})
        assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, calling AE title not recognised
        assoc.kill()

    # -- associations --------------------------------------------------------------------

    def on_rejected(self, event: Any) -> None:
        self._name_association(event)
        calling = event.assoc.requestor.ae_title.strip()
        undeclared = self.archive.registry.for_ae_title(calling) is None
        metrics().dicom_associations.labels(
            "rejected-calling-ae" if undeclared else "rejected-limit").inc()
        if undeclared:
            log_event(log, logging.WARNING,
                      "refused DICOM association: the calling AE title is not declared; add "
                      "it to the ae_titles of its establishment in the authorities file "
                      "(MPI_AUTHORITIES)", calling=calling or "(empty)",
                      address=_address(event))
            self.tls_trail.record(f"dicom:{calling or '?'}",
                                  f"A-ASSOCIATE-RQ from {calling or '(empty)'}",
                                  _address(event), None,
                                  {"reason": "undeclared calling AE title", "calling": calling})
        else:
            log_event(log, logging.WARNING, "refused DICOM association: too many at once",
                      calling=calling, address=_address(event),
                      maximum=self.ae.maximum_associations)

    def _name_association(self, event: Any) -> None:
        """Every log line of an association's thread carries the association's request id."""
        if request_id() is None:
            bind_request_id(new_request_id())

    def on_established(self, event: Any) -> None:
        self._name_association(event)
        metrics().dicom_associations.labels("accepted").inc()
        self._started[id(event.assoc)] = time.perf_counter()
        log_event(log, logging.INFO, "dicom association", calling=_calling(event),
                  address=_address(event))

    def on_ended(self, event: Any) -> None:
        started = self._started.pop(id(event.assoc), None)
        self._trails.pop(id(event.assoc), None)
        log_event(log, logging.INFO,
                  "dicom association aborted" if event.event is evt.EVT_ABORTED
                  else "dicom association released", calling=_calling(event),
                  address=_address(event),
                  seconds=None if started is None else time.perf_counter() - started)

    # -- C-STORE -------------------------------------------------------------------------

    def on_store(self, event: Any) -> Dataset | int:
        started = time.perf_counter()
        calling = _calling(event)
        status = self._store(event, calling)
        code = status if isinstance(status, int) else int(status.Status)
        metrics().dicom_operation("C-STORE", code)
        log_event(log, logging.INFO if code == 0 else logging.WARNING, "dicom C-STORE",
                  calling=calling, status=f"0x{code:04X}",
                  ms=(time.perf_counter() - started) * 1000)
        return status

    def _store(self, event: Any, calling: str) -> Dataset | int:
        authority = self.archive.registry.for_ae_title(calling)
        if authority is None:
            return _status(NOT_AUTHORIZED, f"calling AE title {calling} is not declared")
        # One trail entry per study and association, written with its first object.
        trail = self._trails.setdefault(id(event.assoc), StoreTrail(
            "dicom", f"dicom:{calling}", authority.code, _address(event)))
        try:
            with _received(event, calling) as data:
                self.archive.store(data.view(), Sender(calling, authority.code), trail)
        except (AdapterError, MPIError, OSError) as exc:
            return _status(store_failure(exc), str(exc))
        except Exception:  # storage or database failure: the sender may try again
            log.exception("C-STORE from %s failed", calling)
            return _status(OUT_OF_RESOURCES, "the object could not be stored")
        return 0x0000

    # -- queries and retrieves -----------------------------------------------------------

    def _asker(self, event: Any) -> tuple[str, Any]:
        calling = event.assoc.requestor.ae_title.strip()
        return calling, self.archive.registry.for_ae_title(calling)

    def _level(self, event: Any) -> str | None:
        level = str(event.identifier.get("QueryRetrieveLevel", "")).strip().upper()
        root = _QUERY_MODELS.get(event.request.AffectedSOPClassUID)
        if level not in LEVELS or (root == "STUDY" and level == "PATIENT"):
            return None
        return level

    def on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        calling, asker = self._asker(event)
        if asker is None:
            yield NOT_AUTHORIZED, None
            return
        level = self._level(event)
        if level is None:
            yield INVALID_OBJECT, None
            return
        identifier = event.identifier
        persons: set[int] = set()
        outcome = "success"
        try:
            try:
                matches = self.archive.find(query_of(identifier, level), asker)
            except UnknownAuthorityError:
                matches = []
            for match in matches:
                if event.is_cancelled:
                    outcome = "cancelled"
                    yield 0xFE00, None
                    return
                persons.add(match.plan.person_id)
                yield 0xFF00, _answer(identifier, match_dataset(match, level))
        finally:
            self.archive.trace(
                channel="dicom", action=AuditAction.SEARCH, actor=f"dicom:{calling}",
                subject=f"C-FIND {level} {_keys(identifier)}", persons=persons,
                authority=asker.code, source=_address(event), outcome=outcome)
            metrics().dicom_operation("C-FIND", outcome)
            log_event(log, logging.INFO, "dicom C-FIND", calling=calling, query_level=level,
                      outcome=outcome, persons=len(persons))

    def _retrieve(self, event: Any, asker: Any) -> list[Any]:
        level = self._level(event)
        if level is None:
            return []
        try:
            return self.archive.instances(query_of(event.identifier, level), asker)
        except UnknownAuthorityError:
            return []

    def _send(self, event: Any, calling: str, found: list[Any], action: str,
              audit_authority: str,
              accepted: Any = None) -> Iterator[tuple[int, Dataset | None]]:
        persons: set[int] = set()
        outcome = "success"
        try:
            for instance, plan in found:
                if event.is_cancelled:
                    outcome = "cancelled"
                    yield 0xFE00, None
                    return
                persons.add(plan.person_id)
                yield 0xFF00, self._outgoing(instance, plan, accepted() if accepted else None)
        finally:
            self.archive.trace(
                channel="dicom", action=AuditAction.RETRIEVE, actor=f"dicom:{calling}",
                subject=f"{action} {_keys(event.identifier)}", persons=persons,
                authority=audit_authority, source=_address(event), outcome=outcome,
                detail={"instances": len(found)})
            metrics().dicom_operation(action.split(" ")[0], outcome)
            log_event(log, logging.INFO, f"dicom {action.split(' ')[0]}", calling=calling,
                      destination=action.split(" to ")[1] if " to " in action else None,
                      instances=len(found), outcome=outcome)

    def _outgoing(self, instance: Any, plan: Any,
                  association: Any) -> Dataset:
        """As stored when the peer took the stored syntax (the fast path: the header
        rewritten, the pixel bytes copied), else decoded when it took an uncompressed one."""
        syntaxes = _accepted_syntaxes(association, instance.sop_class_uid)
        decode = (syntaxes is not None and instance.transfer_syntax_uid not in syntaxes
                  and bool(syntaxes & _UNCOMPRESSED))
        try:
            return self.archive.coerced_dataset(instance, plan, decode=decode)
        except AdapterError:  # not decodable here: sent as stored (the peer may refuse it)
            return self.archive.coerced_dataset(instance, plan)

    def on_get(self, event: Any) -> Iterator[Any]:
        calling, asker = self._asker(event)
        if asker is None:
            yield 0
            yield NOT_AUTHORIZED, None
            return
        if self._level(event) is None:
            yield 0
            yield INVALID_OBJECT, None
            return
        found = self._retrieve(event, asker)
        yield len(found)
        yield from self._send(event, calling, found, "C-GET", asker.code,
                              lambda: event.assoc)

    def on_move(self, event: Any) -> Iterator[Any]:
        calling, asker = self._asker(event)
        destination = self.archive.registry.destination(str(event.move_destination))
        if asker is None or destination is None or self._level(event) is None:
            yield None, None  # refused: unknown destination (0xA801)
            return
        # Objects go to the destination: coerced for its domain when it speaks for one.
        target = self.archive.registry.for_ae_title(destination.ae_title) or asker
        found = self._retrieve(event, target)
        contexts = []
        for sop_class in sorted({i.sop_class_uid for i, _ in found}):
            stored = sorted({i.transfer_syntax_uid for i, _ in found
                             if i.sop_class_uid == sop_class})
            contexts.append(build_context(sop_class, [*stored, ExplicitVRLittleEndian,
                                                      ImplicitVRLittleEndian]))
        # The sub-association to the destination is pynetdicom's: its accepted contexts are
        # caught when it is established.
        store: dict[str, Any] = {}

        def accepted(accepted_event: Any) -> None:
            store["association"] = accepted_event.assoc

        yield destination.host, destination.port, {
            "contexts": contexts[:128], "evt_handlers": [(evt.EVT_ACCEPTED, accepted)]}
        yield len(found)
        yield from self._send(event, calling, found, f"C-MOVE to {destination.ae_title}",
                              target.code, lambda: store.get("association"))


_UNCOMPRESSED = frozenset({str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)})


def _accepted_syntaxes(association: Any, sop_class: str) -> set[str] | None:
    """The transfer syntaxes an association accepted for a SOP class (None: unknown)."""
    if association is None:
        return None
    return {str(cx.transfer_syntax[0]) for cx in association.accepted_contexts
            if cx.abstract_syntax == sop_class and cx.transfer_syntax}


def _no_delay(event: Any) -> None:
    """Turn Nagle's algorithm off on every association's socket: a DIMSE exchange is many
    small messages each waiting for its answer, which Nagle and delayed ACKs would hold back
    about 40 ms each."""
    connection = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if connection is not None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _keys(identifier: Dataset) -> str:
    keys = []
    for keyword in ("PatientID", "IssuerOfPatientID", "PatientName", "StudyInstanceUID",
                    "AccessionNumber", "StudyDate", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(identifier.get(keyword) or "").strip()
        if value:
            keys.append(f"{keyword}={value}")
    return " ".join(keys)[:500]


def _calling(event: Any) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _shown_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _address(event: Any) -> str | None:
    try:
        return str(event.assoc.requestor.address)
    except AttributeError:
        return None


def _received(event: Any, calling: str) -> SpooledBody:
    """The received object as a Part-10 file with our file meta information (the calling AE
    title as its source), its dataset byte for byte as received: copied by the kernel from
    the file the dataset was received into, beside it, and mapped (never read whole into
    memory). Received in memory (pynetdicom's chunked reception off), it is written from
    there."""
    request = event.request
    spooled: SpooledBody
    meta = part10_bytes(b"", request.AffectedSOPClassUID, request.AffectedSOPInstanceUID,
                        event.context.transfer_syntax, calling)
    try:
        path = Path(event.dataset_path)
    except (AttributeError, TypeError):
        spooled = SpooledBody()
        spooled.write(meta + request.DataSet.getvalue())
        return spooled
    spooled = SpooledBody(path.parent)
    try:
        spooled.write(meta)
        with open(path, "rb") as source:
            head = source.read(1 << 16)
            spooled.copy_from(source, meta_end(head))
    except BaseException:
        spooled.close()
        raise
    return spooled
