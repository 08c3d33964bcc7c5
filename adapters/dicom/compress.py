"""Lossless compression of stored objects, verified bit for bit, and decoding on the way out
for an asker that does not take the stored syntax.

An instance is encoded (pydicom 3 with CharLS for JPEG-LS, OpenJPEG for JPEG 2000, the RLE
plugin), decoded again and compared with the original pixels; only an exact match is kept.
The SOP Instance UID never changes (``generate_instance_uid=False``). An object that cannot
be encoded or does not decode to the same pixels is left as received and recorded.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from io import BytesIO
from typing import Any, BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from adapters.errors import AdapterError

__all__ = ["LOSSLESS_SYNTAXES", "COMPRESSIBLE_SYNTAXES", "UNCOMPRESSED_SYNTAXES",
           "CompressionFailedError", "Compressed", "compress_object", "pixel_digest",
           "decoded_dataset", "syntax_named", "can_decode", "can_encode", "encoded_as"]

# The lossless syntaxes the archive writes, by the name the configuration gives them.
LOSSLESS_SYNTAXES: dict[str, UID] = {
    "jpeg-ls": JPEGLSLossless, "jpeg2000": JPEG2000Lossless, "rle": RLELossless,
}
# What compression starts from (big endian and deflated objects stay as received).
COMPRESSIBLE_SYNTAXES = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))
UNCOMPRESSED_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                   "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})


class CompressionFailedError(AdapterError):
    """An object that cannot be compressed losslessly, or whose copy did not decode to the
    original pixels: it stays as received."""


@dataclass(frozen=True)
class Compressed:
    data: bytes
    transfer_syntax_uid: str
    sha256: str
    pixel_sha256: str


def syntax_named(name_or_uid: str) -> str:
    """A configured syntax (``jpeg-ls``, ``jpeg2000``, ``rle`` or its UID) as a UID. Raises
    ValueError for any other, lossy ones included."""
    if name_or_uid in LOSSLESS_SYNTAXES:
        return str(LOSSLESS_SYNTAXES[name_or_uid])
    if name_or_uid in {str(uid) for uid in LOSSLESS_SYNTAXES.values()}:
        return name_or_uid
    raise ValueError(f"{name_or_uid!r} is not a lossless syntax the archive writes "
                     f"({', '.join(LOSSLESS_SYNTAXES)})")


def _read(data: bytes | BinaryIO) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(BytesIO(data) if isinstance(data, bytes) else data)


def pixel_digest(pixels: Any) -> str:
    """SHA-256 of decoded pixels, their shape and type included."""
    array = np.ascontiguousarray(pixels)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def compress_object(data: bytes, transfer_syntax: str) -> Compressed:
    """A losslessly compressed copy of a Part-10 object, verified: decoding it gives the
    original pixels bit for bit. Raises CompressionFailedError."""
    try:
        dataset = _read(data)
        if "PixelData" not in dataset:
            raise CompressionFailedError("the object has no pixel data")
        sop = dataset.SOPInstanceUID
        original = dataset.pixel_array
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset.compress(transfer_syntax, generate_instance_uid=False)
        out = BytesIO()
        dataset.save_as(out, enforce_file_format=True)
        copy = out.getvalue()
        decoded = _read(copy)
        again = decoded.pixel_array
    except CompressionFailedError:
        raise
    except Exception as exc:  # encoders raise many kinds: each means "not compressible"
        raise CompressionFailedError(f"{type(exc).__name__}: {exc}") from exc
    if decoded.SOPInstanceUID != sop:
        raise CompressionFailedError("the copy has another SOP Instance UID")
    if again.dtype != original.dtype or again.shape != original.shape or not np.array_equal(
            again, original):
        raise CompressionFailedError("the compressed copy does not decode to the original "
                                     "pixels")
    return Compressed(copy, transfer_syntax, hashlib.sha256(copy).hexdigest(),
                      pixel_digest(original))


def decoded_dataset(handle: BinaryIO) -> Dataset:
    """A stored object with its pixels decoded, in Explicit VR Little Endian (for an asker
    that does not take the stored syntax). Raises CompressionFailedError when no decoder
    can read it."""
    dataset = _read(handle)
    if dataset.file_meta.TransferSyntaxUID in UNCOMPRESSED_SYNTAXES:
        return dataset
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset.decompress(as_rgb=False, generate_instance_uid=False)
    except Exception as exc:  # any decoder failure: the object cannot be offered decoded
        raise CompressionFailedError(f"cannot decode: {exc}") from exc
    return dataset


def can_decode(transfer_syntax: str) -> bool:
    """Whether an object stored in ``transfer_syntax`` can be given decoded here (little
    endian uncompressed ones need no decoder; big endian and deflated ones are only given
    as stored)."""
    if transfer_syntax in COMPRESSIBLE_SYNTAXES:
        return True
    if transfer_syntax in UNCOMPRESSED_SYNTAXES:
        return False
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(transfer_syntax).is_available)
    except Exception:  # an unknown or unsupported syntax: no decoder
        return False


def can_encode(transfer_syntax: str) -> bool:
    """Whether the archive can give an object in ``transfer_syntax``: the little endian
    uncompressed ones, and the lossless syntaxes it writes (never a lossy one)."""
    return transfer_syntax in COMPRESSIBLE_SYNTAXES or transfer_syntax in {
        str(uid) for uid in LOSSLESS_SYNTAXES.values()}


def encoded_as(dataset: Dataset, transfer_syntax: str) -> bytes:
    """A decoded dataset (see decoded_dataset) as a Part-10 object in ``transfer_syntax``:
    re-encoded for an uncompressed one, compressed and verified bit for bit for a lossless
    one (see compress_object). Raises CompressionFailedError."""
    out = BytesIO()
    if transfer_syntax in COMPRESSIBLE_SYNTAXES:
        dataset.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset.save_as(out, enforce_file_format=True)
        except Exception as exc:  # an attribute that cannot be written in that syntax
            raise CompressionFailedError(f"cannot write it in {transfer_syntax}: {exc}") from exc
        return out.getvalue()
    if not can_encode(transfer_syntax):
        raise CompressionFailedError(f"the archive does not write {transfer_syntax}")
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.save_as(out, enforce_file_format=True)
    return compress_object(out.getvalue(), transfer_syntax).data
