"""What the fuzzing throws at the service, and what must hold after each input.

Each target is a hypothesis strategy of inputs (mutations of real messages and objects, and
free-form data) and a check run against the real thing: the ER7 reader and the MLLP framing
directly, the MLLP listener over a socket, the C-STORE SCP with pynetdicom as the SCU (the
mutated bytes sent as they are), STOW-RS, and the FHIR routes (PIXm, PDQm, $match,
ImagingStudy, AuditEvent). Whatever the input: no unhandled exception, no 5xx, the service
still answers, and no stored file without its index row.

Every input that ever broke a check is kept under ``corpus/<target>/`` (its bytes; a FHIR
request as JSON) and replayed by the suite (``test_fuzz.py``); ``bench/fuzz.py`` runs the long
campaign and adds what it finds there.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st
from pynetdicom import AE, _config
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from adapters.hl7v2.er7 import ParseError, parse
from adapters.hl7v2.mllp import FrameDecoder, frame
from adapters.sql.tables import archive_blob_deletions, archive_instance_versions, archive_instances
from tests.dicom_objects import bundled
from tests.feeds import encode, load_feed
from tests.service import FIXTURES, RunningService

CORPUS = Path(__file__).resolve().parent / "corpus"
HL7_SEEDS = load_feed(FIXTURES / "feeds" / "pamfr_nancy.hl7")[:40]
DICOM_SEEDS = [FIXTURES / "tour" / "ct-chru.dcm", bundled("CT_small.dcm"),
               bundled("MR_small.dcm"), bundled("rtplan.dcm")]
# Send a file's dataset bytes as they are (pynetdicom's option), not decoded and re-encoded:
# the mutations must reach the SCP.
_config.STORE_SEND_CHUNKED_DATASET = True


# -- mutations -------------------------------------------------------------------------------

@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], keep: int = 0) -> bytes:
    """A seed with a few random edits after its first ``keep`` bytes: bytes flipped,
    inserted, deleted, a range duplicated, or the end cut off."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        if len(data) <= keep:
            break
        at = draw(st.integers(keep, len(data) - 1))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "cut"]))
        if operation == "flip":
            data[at] = draw(st.integers(0, 255))
        elif operation == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif operation == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 256))]
        else:
            del data[at:]
    return bytes(data)


def hl7_inputs() -> st.SearchStrategy[bytes]:
    seeds = [encode(seed) for seed in HL7_SEEDS]
    return st.one_of(mutated(seeds), st.binary(max_size=512),
                     st.text(max_size=300).map(lambda t: ("MSH|^~\\&|" + t).encode()))


def _meta_end(data: bytes) -> int:
    """Where a Part 10 file's meta information ends (its group length says)."""
    return 132 + 12 + int.from_bytes(data[140:144], "little")


_DICOM_BYTES = [path.read_bytes() for path in DICOM_SEEDS]


def dicom_inputs() -> st.SearchStrategy[bytes]:
    """Part 10 files whose meta information is intact and whose dataset is mutated."""
    return st.one_of(*(mutated([data], keep=_meta_end(data)) for data in _DICOM_BYTES))


# -- checks ----------------------------------------------------------------------------------

def check_er7(data: bytes) -> None:
    """The ER7 reader raises ParseError or returns a message; nothing else."""
    try:
        parse(data.decode("latin-1"))
    except ParseError:
        pass


def check_framing(data: bytes) -> None:
    """The MLLP decoder never raises, and cutting the stream anywhere changes nothing."""
    whole = FrameDecoder(4096).feed(data)
    decoder = FrameDecoder(4096)
    pieces = [*decoder.feed(data[:len(data) // 3]), *decoder.feed(data[len(data) // 3:])]
    assert pieces == whole


def _read_reply(sock: socket.socket, control: bytes) -> bytes:
    received = b""
    while b"MSA|" not in received or control not in received.split(b"MSA|")[-1][:40]:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before the reply to {control!r}"
        received += chunk
    return received


def check_mllp(service: RunningService, data: bytes, control: str) -> None:
    """Any bytes, then a good message on the same connection: the good one is answered AA
    (the junk before it neither kills the connection nor the listener)."""
    good = HL7_SEEDS[0]
    fields = good.split("\r")[0].split("|")
    fields[9] = control
    good = "\r".join(["|".join(fields), *good.split("\r")[1:]])
    with socket.create_connection(("127.0.0.1", service.mllp_port), timeout=30) as sock:
        # Junk that opens a frame and never closes it would swallow the next message: the
        # framing's documented behaviour (a start block inside a frame restarts it).
        sock.sendall(data + frame(good.encode()))
        reply = _read_reply(sock, control.encode())
    assert b"MSA|AA|" + control.encode() in reply or b"MSA|AE|" + control.encode() in reply, reply


def check_hl7_application(service: RunningService, data: bytes) -> None:
    """The application answers every payload with an ACK, AA, AE or AR, that reads back (in
    the sender's separators, as HL7 wants)."""
    reply = service.container.hl7.handle(data)
    assert reply.ack_code in ("AA", "AE", "AR"), reply
    msa = parse(reply.text).first("MSA")
    assert msa is not None and msa.value(1) == reply.ack_code, reply


class StoreScu:
    """One association to the SCP, as a modality of the CHRU; reopened when the SCP ended
    it (an abort is a valid answer to a broken object)."""

    def __init__(self, service: RunningService) -> None:
        self.service = service
        self.ae = AE(ae_title="CHRU")
        self.ae.requested_contexts = StoragePresentationContexts[:126]
        self.ae.add_requested_context(Verification)
        self.association: Any = None

    def store(self, path: Path) -> int | None:
        if self.association is None or not self.association.is_established:
            self.association = self.ae.associate("127.0.0.1", self.service.dicom_port,
                                                 ae_title="VNA")
            assert self.association.is_established, "the SCP refused a new association"
        try:
            status = self.association.send_c_store(path)
        except (AttributeError, ValueError, KeyError):
            return None  # the SCU itself cannot send it (no context for that class)
        return int(status.Status) if "Status" in status else None

    def echo(self) -> None:
        if self.association is None or not self.association.is_established:
            self.association = self.ae.associate("127.0.0.1", self.service.dicom_port,
                                                 ae_title="VNA")
        assert self.association.send_c_echo().Status == 0

    def close(self) -> None:
        if self.association is not None and self.association.is_established:
            self.association.release()


def stored_files_without_index(service: RunningService) -> list[str]:
    """Files of the archive that no index row names (a partial write)."""
    root = service.container.settings.resolved_archive_dir()
    with service.container.engine.connect() as connection:
        keys = {key for table in (archive_instances, archive_instance_versions,
                                  archive_blob_deletions)
                for key in connection.scalars(select(table.c.blob_key))}
    files = [p for p in root.rglob("*") if p.is_file()]
    named = {service.container.dicom.blobs.path(key).resolve()  # type: ignore[attr-defined]
             for key in keys}
    return [str(p) for p in files if p.resolve() not in named]


def check_cstore(service: RunningService, scu: StoreScu, data: bytes, work: Path) -> None:
    """A mutated object through C-STORE: a status (or an abort), never a partial file, and
    the SCP answers the next association."""
    path = work / "object.dcm"
    path.write_bytes(data)
    status = scu.store(path)
    assert status is None or status in (0x0000, 0xB000, 0xB007, 0xB006) or status >= 0xA000, \
        hex(status)
    scu.echo()
    assert stored_files_without_index(service) == []


def check_stow(service: RunningService, bearer: Bearer, data: bytes) -> None:
    """A mutated object through STOW-RS: 200, 202, 4xx (never 401: the input must reach the
    route), never 5xx; never a partial file."""
    headers = bearer()
    body = (b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--XyZ--\r\n")
    answer = _http(service).post("/dicomweb/studies", content=body,
                        headers={**headers, "Content-Type":
                                 'multipart/related; type="application/dicom"; boundary=XyZ'})
    assert answer.status_code < 500 and answer.status_code != 401, (answer.status_code,
                                                                   answer.text[:500])
    assert stored_files_without_index(service) == []


def _http(service: RunningService) -> httpx.Client:
    """One keep-alive client per service (a new client per request costs more than the
    request)."""
    client = getattr(service, "_fuzz_http", None)
    if client is None:
        client = httpx.Client(base_url=service.http_base, timeout=60)
        service._fuzz_http = client  # type: ignore[attr-defined]
    return client


class Bearer:
    """The Authorization header of a client, its token renewed before it expires (a
    campaign outlasts a token: every request would then be a mere 401)."""

    def __init__(self, service: RunningService, scopes: str, establishment: str) -> None:
        self.service, self.scopes, self.establishment = service, scopes, establishment
        self.header: dict[str, str] = {}
        self.taken = 0.0

    def __call__(self) -> dict[str, str]:
        if time.monotonic() - self.taken > 120:  # tokens live 300 s
            self.header = self.service.bearer(self.scopes, self.establishment)
            self.taken = time.monotonic()
        return self.header


# -- FHIR requests ---------------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_SYSTEMS = st.sampled_from(["urn:oid:1.2.250.1.999.54.1", "urn:oid:1.2.250.1.213.1.4.8",
                            "urn:oid:", "http://x", ""])
_IDENTIFIER = st.one_of(_TEXT, st.builds(lambda s, v: f"{s}|{v}", _SYSTEMS, _TEXT))
_PDQM = ["family", "given", "birthdate", "gender", "identifier", "address-postalcode",
         "_count", "_offset", "family:exact", "given:exact", "telecom", "_sort", "zzz"]
_STUDY = ["patient", "patient.identifier", "started", "modality", "_count", "identifier"]
_AUDIT = ["date", "patient", "agent", "action", "outcome", "_count", "type"]


def _params(names: list[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.lists(st.tuples(st.sampled_from(names), st.one_of(_TEXT, _IDENTIFIER,
                                                              st.sampled_from(["ge2020", "lt1900-13-45", "male", "-1", "1e9"]))),
                    max_size=4)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | _TEXT, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=12)
_MATCH = {"resourceType": "Parameters", "parameter": [
    {"name": "resource", "resource": {"resourceType": "Patient", "name": [
        {"family": "DUPONT", "given": ["Jean"]}], "birthDate": "1980-01-01",
        "gender": "male"}}, {"name": "count", "valueInteger": 5}]}


@st.composite
def _match_body(draw: st.DrawFn) -> Any:
    body = json.loads(json.dumps(_MATCH))
    # The objects an edit may land in, taken before any edit replaces one of them.
    places = [body, body["parameter"][0]["resource"], body["parameter"][1]]
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(places))
        target[draw(st.sampled_from(["name", "birthDate", "gender", "identifier",
                                     "resourceType", "valueInteger", "parameter",
                                     "onlyCertainMatches", draw(_TEXT)]))] = draw(_JSON)
    return draw(st.one_of(st.just(body), _JSON)) if draw(st.booleans()) else body


def fhir_inputs() -> st.SearchStrategy[dict[str, Any]]:
    """A FHIR request: method, path, parameters, body."""
    def get(path: str, names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
        return _params(names).map(lambda p: {"method": "GET", "path": path, "params": p})

    return st.one_of(
        st.builds(lambda source, target: {"method": "GET", "path": "/fhir/Patient/$ihe-pix",
                                          "params": [("sourceIdentifier", source),
                                                     *(("targetSystem", t) for t in target)]},
                  _IDENTIFIER, st.lists(_SYSTEMS, max_size=2)),
        get("/fhir/Patient", _PDQM),
        st.builds(lambda i: {"method": "GET", "path": "/fhir/Patient/" + quote(i, safe=""),
                                "params": []}, _TEXT),
        _match_body().map(lambda b: {"method": "POST", "path": "/fhir/Patient/$match",
                                     "params": [], "body": b}),
        get("/fhir/ImagingStudy", _STUDY),
        get("/fhir/AuditEvent", _AUDIT),
    )


def check_fhir(service: RunningService, bearer: Bearer, request: dict[str, Any]) -> None:
    """Any FHIR request: an answer below 500 (and never 401: it must reach the route)."""
    headers = bearer()
    body = request.get("body")
    answer = _http(service).request(
        request["method"], request["path"], params=request["params"],
        headers={**headers, **({"Content-Type": "application/fhir+json"} if body is not None
                               or request["method"] == "POST" else {})},
        content=None if body is None else json.dumps(body).encode())
    assert answer.status_code < 500 and answer.status_code != 401, (answer.status_code,
                                                                   answer.text[:500])


# -- the corpus ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kept:
    target: str
    name: str
    data: bytes


def keep(target: str, data: bytes) -> Path:
    """Keep an input that broke a check, named by its hash, for the regression replay."""
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest()[:16] + ".bin")
    path.write_bytes(data)
    return path


def kept(target: str) -> list[Kept]:
    folder = CORPUS / target
    return [Kept(target, p.name, p.read_bytes()) for p in sorted(folder.glob("*.bin"))]


def fhir_request_bytes(request: dict[str, Any]) -> bytes:
    return json.dumps(request, ensure_ascii=False, sort_keys=True).encode("utf-8")


def fhir_request_of(data: bytes) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(data)
    request["params"] = [tuple(pair) for pair in request["params"]]
    return request


TARGETS: tuple[str, ...] = ("er7", "framing", "hl7-application", "mllp", "dicom-cstore",
                            "stow-rs", "fhir")
Checker = Callable[..., None]
