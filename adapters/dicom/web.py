"""DICOMweb operations (PS3.18): QIDO-RS search, WADO-RS retrieve and metadata, STOW-RS store.

HTTP concerns (routes, status codes, headers) live in ``adapters/dicomweb/routes.py``; this
module turns query parameters into archive queries and archive answers into DICOM JSON and
multipart bodies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from adapters.dicom.header import dicom_date, parse_object
from adapters.dicom.service import DicomArchive, StoreTrail, match_dataset
from adapters.dicom.spool import Content, MultipartError, SpooledBody
from adapters.dicom.status import CANNOT_UNDERSTAND, must_retry, store_failure
from adapters.errors import AdapterError
from mpi.archive import ArchiveMatch, ArchiveQuery, PatientCoercion, Sender, StoredInstance
from mpi.audit import AuditAction
from mpi.errors import InvalidObjectError, MPIError
from mpi.model import Authority, AuthorityKind

__all__ = ["DicomWeb", "Retrieval", "StowResult", "split_multipart", "MultipartError",
           "NotAcceptableError", "wanted_transfer_syntax", "syntax_given", "AS_STORED",
           "DEFAULT"]

AS_STORED = "*"
DEFAULT = ""  # the Accept header names no transfer syntax
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNCOMPRESSED_LE = frozenset({_EXPLICIT_LE, "1.2.840.10008.1.2"})

# FailureReason (0008,1197) of a part that is not a DICOM object.
_PROCESSING_FAILURE = 0x0110


class NotAcceptableError(AdapterError):
    """The asker wants a transfer syntax the archive cannot give an object in."""


def wanted_transfer_syntax(accept: str | None) -> str:
    """The transfer syntax a WADO-RS Accept header asks for (PS3.18 8.7.3.5): its
    ``transfer-syntax`` parameter (``*``: as stored); DEFAULT when it names none (no header,
    ``*/*``, application/dicom or multipart/related without the parameter): Explicit VR
    Little Endian, PS3.18's default for application/dicom."""
    for media in (accept or "").split(","):
        kind, *parameters = [part.strip() for part in media.split(";")]
        values = {}
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
        dicom = kind.lower() == "application/dicom" or (
            kind.lower() == "multipart/related"
            and values.get("type", "").lower() == "application/dicom")
        if "transfer-syntax" in values and (dicom or kind == "*/*"):
            return values["transfer-syntax"] or AS_STORED
        if dicom:
            return DEFAULT
    return DEFAULT


def syntax_given(stored: str, wanted: str) -> str:
    """The transfer syntax an object stored in ``stored`` is given in when ``wanted`` is
    asked for: as stored for ``*`` or the stored syntax itself; for DEFAULT, Explicit VR
    Little Endian when the archive can decode the object (as stored otherwise: an object
    no decoder here reads is not withheld from an asker that named no syntax); a named
    syntax when the archive can decode the object and write that syntax (uncompressed
    little endian, or a lossless one, verified). Raises NotAcceptableError otherwise."""
    from adapters.dicom.compress import can_decode, can_encode

    if wanted in (AS_STORED, stored):
        return stored
    if wanted == DEFAULT:
        return _EXPLICIT_LE if can_decode(stored) else stored
    if not can_encode(wanted):
        raise NotAcceptableError(
            f"the archive does not give objects in {wanted} (it gives them as stored, "
            f"uncompressed little endian or in a lossless syntax it writes)")
    if not can_decode(stored):
        raise NotAcceptableError(
            f"an object stored in {stored} cannot be decoded here to give it in {wanted}; "
            "ask for transfer-syntax=* (as stored)")
    return wanted


@dataclass
class Retrieval:
    """A WADO-RS answer: the multipart boundary and the body, streamed."""

    boundary: str
    body: Iterator[bytes]
    count: int


@dataclass
class StowResult:
    stored: int
    failed: int
    body: dict[str, Any]
    retry: bool = False  # nothing stored, every failure worth sending again (disk, database)


def split_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body: (headers with lower-case names, content). Raises
    MultipartError when the boundary never opens or closes the body."""
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise MultipartError("the body is not delimited by its boundary")
    parts = []
    for piece in pieces[1:-1]:
        if piece.startswith(b"\r\n"):
            piece = piece[2:]
        head, separator, content = piece.partition(b"\r\n\r\n")
        if not separator:
            raise MultipartError("a part has no header section")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
    return parts


def _param(params: Mapping[str, str], keyword: str, tag: str) -> str | None:
    value = params.get(keyword) or params.get(tag)
    value = (value or "").strip()
    return value or None


def query_from_params(level: str, params: Mapping[str, str], study: str | None = None,
                      series: str | None = None) -> ArchiveQuery:
    """QIDO-RS matching parameters (keyword or tag form) as an archive query. Raises
    ValueError for a bad ``limit`` or ``StudyDate``."""
    study_date = _param(params, "StudyDate", "00080020")
    date_from = date_to = None
    if study_date:
        first, dash, last = study_date.partition("-")
        date_from, date_to = dicom_date(first), (dicom_date(last) if dash else dicom_date(first))
        if (first and date_from is None) or (last and date_to is None):
            raise ValueError(f"StudyDate {study_date!r} is not a date or a date range")
    limit = int(params.get("limit", "1000"))
    if not 1 <= limit <= 10_000:
        raise ValueError("limit must be between 1 and 10000")
    study_uid = study or _param(params, "StudyInstanceUID", "0020000D")
    series_uid = series or _param(params, "SeriesInstanceUID", "0020000E")
    sop_uid = _param(params, "SOPInstanceUID", "00080018")
    return ArchiveQuery(
        level=level,
        patient_id=_param(params, "PatientID", "00100020"),
        issuer=_param(params, "IssuerOfPatientID", "00100021"),
        patient_name=_param(params, "PatientName", "00100010"),
        study_uids=tuple(study_uid.split(",")) if study_uid else (),
        accession_number=_param(params, "AccessionNumber", "00080050"),
        date_from=date_from, date_to=date_to,
        modality=_param(params, "ModalitiesInStudy", "00080061") or _param(
            params, "Modality", "00080060"),
        series_uids=tuple(series_uid.split(",")) if series_uid else (),
        sop_uids=(sop_uid,) if sop_uid else (),
        limit=limit,
    )


class DicomWeb:
    def __init__(self, archive: DicomArchive, base_path: str = "/dicomweb") -> None:
        self.archive = archive
        self.base_path = base_path

    def asker(self, domain: str | None) -> Authority:
        """Raises UnknownAuthorityError."""
        return self.archive.asker(domain)

    def wanted_transfer_syntax(self, accept: str | None) -> str:
        return wanted_transfer_syntax(accept)

    def query(self, level: str, params: Mapping[str, str], study: str | None = None,
              series: str | None = None) -> ArchiveQuery:
        """Raises ValueError for a bad parameter."""
        return query_from_params(level, params, study, series)

    def search(self, query: ArchiveQuery, asker: Authority, who: str, subject: str,
               source: str | None, token_id: str | None = None,
               params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """QIDO-RS answers; ``params`` (the request's, repeated ones as lists) give the
        paging, includefield and fuzzymatching (see adapters/dicom/qido.py). Raises
        ValueError for a bad one."""
        from adapters.dicom import qido

        options = qido.Options.of(params or {})
        if options.fuzzy:
            query = qido.fuzzy_query(query)
        query = dataclasses.replace(query, limit=options.offset + options.limit)
        matches: list[ArchiveMatch] = []
        try:
            matches = self.archive.find(query, asker)[options.offset:]
        finally:
            self.archive.trace(channel="dicomweb", action=AuditAction.SEARCH, actor=who,
                               subject=subject, persons={m.plan.person_id for m in matches},
                               authority=asker.code, source=source, token_id=token_id)
        answers = []
        for match in matches:
            ds = match_dataset(match, query.level)
            del ds.QueryRetrieveLevel
            study = match.studies[0] if match.studies else None
            if study is not None:
                url = f"{self.base_path}/studies/{study.study_instance_uid}"
                if match.series is not None:
                    url += f"/series/{match.series.series_instance_uid}"
                if match.instance is not None:
                    url += f"/instances/{match.instance.sop_instance_uid}"
                ds.RetrieveURL = url
            answers.append(qido.with_included(ds.to_json_dict(), options.fields))
        return answers

    def _found(self, query: ArchiveQuery, asker: Authority, who: str, subject: str,
               source: str | None, action: AuditAction, token_id: str | None = None
               ) -> list[tuple[StoredInstance, PatientCoercion]]:
        found: list[tuple[StoredInstance, PatientCoercion]] = []
        try:
            found = self.archive.instances(query, asker)
        finally:
            self.archive.trace(channel="dicomweb", action=action, actor=who, subject=subject,
                               persons={plan.person_id for _, plan in found},
                               authority=asker.code, source=source,
                               detail={"instances": len(found)}, token_id=token_id)
        return found

    def retrieve(self, query: ArchiveQuery, asker: Authority, who: str, subject: str,
                 source: str | None, transfer_syntax: str = DEFAULT,
                 token_id: str | None = None) -> Retrieval:
        """Coerced Part-10 objects in a multipart/related body (type application/dicom), in
        the transfer syntax asked for (see syntax_given): as stored (the header rewritten,
        the pixel bytes copied), decoded to an uncompressed syntax, or transcoded to another
        lossless one (verified bit for bit, done before the answer starts so that a failure
        is a 406, not a broken body). Raises NotAcceptableError."""
        found = self._found(query, asker, who, subject, source, AuditAction.RETRIEVE, token_id)
        boundary = secrets.token_hex(16)
        given = [syntax_given(instance.transfer_syntax_uid, transfer_syntax)
                 for instance, _ in found]
        ready: dict[int, bytes] = {}
        for index, ((instance, plan), syntax) in enumerate(zip(found, given, strict=True)):
            if syntax != instance.transfer_syntax_uid and syntax not in _UNCOMPRESSED_LE:
                try:
                    ready[index] = self._transcoded(instance, plan, syntax)
                except AdapterError as exc:
                    raise NotAcceptableError(
                        f"{instance.sop_instance_uid} cannot be given in {syntax}: "
                        f"{exc.message}") from None

        def body() -> Iterator[bytes]:
            for index, ((instance, plan), syntax) in enumerate(zip(found, given, strict=True)):
                yield (f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax="
                       f"{syntax}\r\n"
                       f"Content-Location: {self.base_path}/studies/"
                       f"{instance.study_instance_uid}/series/{instance.series_instance_uid}/"
                       f"instances/{instance.sop_instance_uid}\r\n\r\n").encode("ascii")
                if index in ready:
                    yield ready.pop(index)
                elif syntax == instance.transfer_syntax_uid:
                    yield from self.archive.coerced_file(instance, plan)
                else:
                    yield self._transcoded(instance, plan, syntax)
                yield b"\r\n"
            yield f"--{boundary}--\r\n".encode("ascii")

        return Retrieval(boundary, body(), len(found))

    def _transcoded(self, instance: StoredInstance, plan: PatientCoercion,
                    syntax: str) -> bytes:
        """Raises CompressionFailedError."""
        from adapters.dicom.compress import encoded_as

        return encoded_as(self.archive.coerced_dataset(instance, plan, decode=True), syntax)

    def metadata(self, query: ArchiveQuery, asker: Authority, who: str, subject: str,
                 source: str | None, token_id: str | None = None) -> list[dict[str, Any]]:
        """The coerced headers (DICOM JSON), bulk data (the pixel data, and any value
        over 64 KiB) as BulkDataURIs of this service (see adapters/dicom/pixels.py)."""
        from adapters.dicom.pixels import with_bulk_data_uris

        found = self._found(query, asker, who, subject, source, AuditAction.READ, token_id)
        return [with_bulk_data_uris(self.archive.coerced_header(instance, plan),
                                    self._instance_url(instance))
                for instance, plan in found]

    def _instance_url(self, instance: StoredInstance) -> str:
        return (f"{self.base_path}/studies/{instance.study_instance_uid}/series/"
                f"{instance.series_instance_uid}/instances/{instance.sop_instance_uid}")

    def pixels(self, query: ArchiveQuery, asker: Authority, who: str, subject: str,
               source: str | None, token_id: str | None = None
               ) -> list[tuple[StoredInstance, Dataset]]:
        """The instances a frames, bulk data or rendered request designates, each read
        with its pixel data (as stored: frames carry no patient attribute); the access is
        traced as a retrieve."""
        found = self._found(query, asker, who, subject, source, AuditAction.RETRIEVE, token_id)
        return [(instance, self._stored(instance)) for instance, _ in found]

    def _stored(self, instance: StoredInstance) -> Dataset:
        from pydicom import dcmread

        with self.archive.blobs.open(instance.blob_key) as handle:
            return dcmread(handle)

    def frames(self, query: ArchiveQuery, asker: Authority, who: str, subject: str,
               source: str | None, numbers: str | None, accept: str | None,
               token_id: str | None = None, tag: str | None = None) -> Retrieval:
        """WADO-RS frames (``numbers``: ``1,3``; None: every frame) or bulk data (``tag``,
        the pixel data's or another value's) of one instance, as multipart/related parts
        whose Content-Type names their transfer syntax: as stored for ``transfer-syntax=*``
        or the stored syntax, else decoded to Explicit VR Little Endian. Raises ValueError
        for a bad frame list, NotAcceptableError for a syntax it cannot give, FrameError
        for a frame that does not exist or cannot be decoded."""
        from adapters.dicom.pixels import all_frames, frame_numbers, frames_of

        wanted = frame_numbers(numbers) if numbers is not None else None
        found = self.pixels(query, asker, who, subject, source, token_id)
        boundary = secrets.token_hex(16)
        if not found:
            return Retrieval(boundary, iter(()), 0)
        _, dataset = found[0]
        if tag is not None and tag.upper() != "7FE00010":
            return Retrieval(boundary, iter(_parts(boundary, [(
                "application/octet-stream", _bulk_value(dataset, tag))])), 1)
        stored = str(dataset.file_meta.TransferSyntaxUID)
        frames = frames_of(dataset, wanted or all_frames(dataset),
                           as_stored=_takes_stored(accept, stored))
        return Retrieval(boundary, iter(_parts(boundary, [
            (frame.media_type, frame.data) for frame in frames])), len(frames))

    def rendered(self, query: ArchiveQuery, asker: Authority, who: str, subject: str,
                 source: str | None, media_type: str, window: str | None = None,
                 viewport: str | None = None, frame: int = 1, one: bool = False,
                 token_id: str | None = None) -> list[bytes]:
        """Rendered images (JPEG or PNG) of the instances designated, frame ``frame`` of
        each; ``one``: only the middle instance (a thumbnail). Raises ValueError for a bad
        window or viewport, FrameError for pixel data that cannot be decoded."""
        from adapters.dicom.pixels import parse_viewport, parse_window, render

        shown, size = parse_window(window), parse_viewport(viewport)
        if one and size is None:
            size = (128, 128)
        found = [instance for instance, _ in self._found(
            query, asker, who, subject, source, AuditAction.RETRIEVE, token_id)]
        found.sort(key=lambda i: (i.series_instance_uid or "", i.instance_number or 0,
                                  i.sop_instance_uid))
        if one:  # the middle instance first, then the others, until one has pixels
            middle = len(found) // 2
            found = found[middle:] + found[:middle]
        images = []
        for instance in found:
            dataset = self._stored(instance)
            if "PixelData" not in dataset:
                continue
            images.append(render(dataset, frame, media_type, shown, size))
            if one:
                break
        return images

    def split(self, body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
        """Raises MultipartError (a ValueError)."""
        return split_multipart(body, boundary)

    async def spool(self, body: AsyncIterator[bytes], folder: Path) -> SpooledBody:
        """A request body written to a temporary file in ``folder`` as it arrives, about a
        megabyte at a time (each written from a worker thread); the caller closes it."""
        spooled = SpooledBody(folder)
        try:
            pending: list[bytes] = []
            size = 0
            async for chunk in body:
                pending.append(chunk)
                size += len(chunk)
                if size >= 1 << 20:
                    await asyncio.to_thread(spooled.write, b"".join(pending))
                    pending, size = [], 0
            if pending:
                await asyncio.to_thread(spooled.write, b"".join(pending))
        except BaseException:
            spooled.close()
            raise
        return spooled

    def store_for(self, parts: Sequence[tuple[dict[str, str], Content]], asker: Authority,
                  who: str, source: str | None = None,
                  token_id: str | None = None) -> StowResult:
        """Store for a client (``who``, as the trail names it): objects without an issuer go
        to its domain when it is an establishment's. One trail entry per study stored."""
        authority = asker.code if asker.kind is AuthorityKind.ESTABLISHMENT else None
        sender = Sender(f"dicomweb:{who.partition(':')[2] or who}"[:64], authority)
        return self.store(parts, sender,
                          trail=StoreTrail("dicomweb", who, authority, source, token_id))

    def store(self, parts: Sequence[tuple[dict[str, str], Content]], sender: Sender,
              study: str | None = None, trail: StoreTrail | None = None) -> StowResult:
        """Store each application/dicom part; the others fail. ``study``, when the request
        named one, must be the study of every object."""
        referenced, failed, reasons = [], [], []
        for headers, content in parts:
            reason, uids = None, ("", "")
            if headers.get("content-type", "").split(";")[0].strip().lower() != "application/dicom":
                reason = CANNOT_UNDERSTAND
            else:
                try:
                    parsed = parse_object(content)
                    uids = (parsed.header.sop_class_uid, parsed.header.sop_instance_uid)
                    if study is not None and parsed.header.study_instance_uid != study:
                        raise InvalidObjectError("the object belongs to another study")
                    result = self.archive.store(content, sender, trail)
                    item = Dataset()
                    item.ReferencedSOPClassUID = uids[0]
                    item.ReferencedSOPInstanceUID = uids[1]
                    item.RetrieveURL = (f"{self.base_path}/studies/{result.study_instance_uid}")
                    referenced.append(item)
                    continue
                except (AdapterError, MPIError, OSError) as exc:
                    reason = store_failure(exc)
            item = Dataset()
            item.ReferencedSOPClassUID = uids[0]
            item.ReferencedSOPInstanceUID = uids[1]
            item.FailureReason = reason if reason is not None else _PROCESSING_FAILURE
            reasons.append(item.FailureReason)
            failed.append(item)
        answer = Dataset()
        answer.RetrieveURL = f"{self.base_path}/studies/{study}" if study else ""
        if referenced:
            answer.ReferencedSOPSequence = referenced
        if failed:
            answer.FailedSOPSequence = failed
        return StowResult(len(referenced), len(failed), answer.to_json_dict(),
                          retry=not referenced and must_retry(reasons))


def _parts(boundary: str, parts: list[tuple[str, bytes]]) -> Iterator[bytes]:
    for media_type, data in parts:
        yield f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode("ascii")
        yield data
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


def _takes_stored(accept: str | None, stored: str) -> bool:
    """Whether a frames request's Accept takes the stored syntax (``transfer-syntax=*`` or
    the stored one); an uncompressed little endian one, or none, asks for decoded frames.
    Raises NotAcceptableError for another syntax."""
    named = [value.strip().strip('"') for media in (accept or "").split(",")
             for name, _, value in (p.partition("=") for p in media.split(";"))
             if name.strip().lower() == "transfer-syntax"]
    if not named:
        return stored in _UNCOMPRESSED_LE
    if "*" in named or stored in named:
        return True
    if any(syntax in _UNCOMPRESSED_LE for syntax in named):
        return False
    raise NotAcceptableError(f"frames are given as stored ({stored}) or uncompressed "
                             f"(1.2.840.10008.1.2.1), not {', '.join(named)}")


def _bulk_value(dataset: Dataset, tag: str) -> bytes:
    """The raw value of a top-level element (a BulkDataURI's target). Raises
    FrameError when the object has no such element."""
    from adapters.dicom.pixels import FrameError

    try:
        element = dataset[int(tag, 16)]
    except (ValueError, KeyError):
        raise FrameError(f"the object has no bulk data element {tag}") from None
    value = element.value
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise FrameError(f"element {tag} is not bulk data")
