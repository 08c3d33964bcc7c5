"""Pixel data for a web viewer: WADO-RS frames (as stored, compressed or not, or decoded),
and rendered images (JPEG or PNG, windowed) for ``rendered`` and ``thumbnail``.

Frames carry no patient attribute, so they are cut from the stored object as it is; the
transfer syntax each is given in goes in its part's Content-Type (PS3.18 8.7.3.5).
Rendering decodes with pydicom's handlers (pylibjpeg with OpenJPEG and RLE, CharLS),
applies the modality LUT (rescale), then the window the request names, else the object's
first WindowCenter/WindowWidth, else the frame's own range.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_modality_lut

from adapters.errors import AdapterError

__all__ = ["Frame", "FrameError", "frames_of", "frame_media_type", "render", "Window",
           "parse_window", "parse_viewport", "RENDERED_TYPES", "UNCOMPRESSED",
           "with_bulk_data_uris", "frame_numbers", "all_frames"]

UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
# The media type of a frame in each compressed syntax (PS3.18 table 8.7.3-5).
_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
RENDERED_TYPES = ("image/jpeg", "image/png")


class FrameError(AdapterError):
    """A frame or element that does not exist (``http_status`` 404), or pixel data that
    cannot be decoded here (422)."""

    def __init__(self, message: str, http_status: int = 404) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class Frame:
    number: int  # from 1
    data: bytes
    transfer_syntax: str

    @property
    def media_type(self) -> str:
        return frame_media_type(self.transfer_syntax)


def frame_media_type(transfer_syntax: str) -> str:
    """The Content-Type of a frame part, its transfer syntax named."""
    media = _MEDIA.get(transfer_syntax, "application/octet-stream")
    return f"{media}; transfer-syntax={transfer_syntax}"


def _frame_count(dataset: Dataset) -> int:
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _check_numbers(numbers: Sequence[int], count: int) -> None:
    for number in numbers:
        if not 1 <= number <= count:
            raise FrameError(f"frame {number} does not exist: the object has {count} "
                             f"frame{'s' if count > 1 else ''}")


def frames_of(dataset: Dataset, numbers: Sequence[int], as_stored: bool) -> list[Frame]:
    """The frames ``numbers`` (from 1) of an object read with its pixel data: as stored
    when ``as_stored`` (a compressed frame's bytes untouched), else decoded to Explicit VR
    Little Endian. Raises FrameError."""
    if "PixelData" not in dataset:
        raise FrameError("the object has no pixel data")
    count = _frame_count(dataset)
    _check_numbers(numbers, count)
    syntax = str(dataset.file_meta.TransferSyntaxUID)
    if as_stored and syntax not in UNCOMPRESSED:
        fragments = list(generate_frames(dataset.PixelData, number_of_frames=count))
        return [Frame(n, fragments[n - 1], syntax) for n in numbers]
    if syntax in UNCOMPRESSED and syntax != "1.2.840.10008.1.2.2" and int(
            dataset.BitsAllocated) % 8 == 0:
        size = (int(dataset.Rows) * int(dataset.Columns) * int(dataset.SamplesPerPixel)
                * int(dataset.BitsAllocated) // 8)
        data = bytes(dataset.PixelData)
        return [Frame(n, data[(n - 1) * size:n * size], _EXPLICIT_LE) for n in numbers]
    pixels = _decoded(dataset)
    if count == 1:
        pixels = pixels[np.newaxis, ...]
    return [Frame(n, np.ascontiguousarray(pixels[n - 1]).astype(
        pixels.dtype.newbyteorder("<")).tobytes(), _EXPLICIT_LE) for n in numbers]


def _decoded(dataset: Dataset) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dataset.pixel_array
    except Exception as exc:  # every handler's own error: no decoder for this object
        raise FrameError(f"the pixel data cannot be decoded here: {exc}", 422) from exc


@dataclass(frozen=True)
class Window:
    center: float
    width: float


def parse_window(text: str | None) -> Window | None:
    """The ``window`` parameter of a rendered request: ``center,width[,function]``. Raises
    ValueError."""
    if not text:
        return None
    parts = [part.strip() for part in text.split(",")]
    try:
        center, width = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        raise ValueError("window is center,width[,linear]") from None
    if width <= 0:
        raise ValueError("the window's width must be positive")
    return Window(center, width)


def parse_viewport(text: str | None) -> tuple[int, int] | None:
    """The ``viewport`` parameter: ``width,height`` in pixels. Raises ValueError."""
    if not text:
        return None
    try:
        width, height = (int(part) for part in text.split(",")[:2])
    except ValueError:
        raise ValueError("viewport is width,height") from None
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ValueError("viewport's width and height are between 1 and 4096")
    return width, height


def _object_window(dataset: Dataset) -> Window | None:
    def first(name: str) -> float | None:
        value = dataset.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value[0] if hasattr(value, "__len__") and not isinstance(
                value, str) else value)
        except (TypeError, ValueError, IndexError):
            return None

    center, width = first("WindowCenter"), first("WindowWidth")
    return Window(center, width) if center is not None and width and width > 0 else None


def _to_8_bits(dataset: Dataset, frame: np.ndarray, window: Window | None) -> np.ndarray:
    if frame.ndim == 3:  # colour: shown as decoded (RGB)
        if frame.dtype != np.uint8:
            top = float(frame.max()) or 1.0
            frame = (frame.astype(np.float64) * (255.0 / top))
        return np.clip(frame, 0, 255).astype(np.uint8)
    values = np.asarray(apply_modality_lut(frame, dataset), dtype=np.float64)
    window = window or _object_window(dataset)
    if window is None:
        low, high = float(values.min()), float(values.max())
    else:
        low, high = window.center - window.width / 2, window.center + window.width / 2
    scaled = (values - low) / ((high - low) or 1.0) * 255.0
    image = np.clip(scaled, 0, 255).astype(np.uint8)
    if str(dataset.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        image = 255 - image
    return image


def render(dataset: Dataset, number: int = 1, media_type: str = "image/jpeg",
           window: Window | None = None, size: tuple[int, int] | None = None) -> bytes:
    """Frame ``number`` of an object as a JPEG or PNG image, windowed, shrunk to fit
    ``size`` (width, height) when given. Raises FrameError."""
    from PIL import Image

    if "PixelData" not in dataset:
        raise FrameError("the object has no pixel data")
    count = _frame_count(dataset)
    _check_numbers([number], count)
    pixels = _decoded(dataset)
    frame = pixels[number - 1] if count > 1 else pixels
    image = Image.fromarray(_to_8_bits(dataset, frame, window))
    if size is not None:
        image.thumbnail(size)
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, format="PNG", optimize=False)
    else:
        image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def with_bulk_data_uris(dataset: Dataset, instance_url: str) -> dict[str, object]:
    """A header as DICOM JSON, every value over 64 KiB given as a BulkDataURI of the
    instance's ``bulkdata/{tag}`` and, for an image, the pixel data's (never inline)."""

    def uri(element: object) -> str:
        return f"{instance_url}/bulkdata/{getattr(element, 'tag', 0):08X}"

    answer: dict[str, object] = dataset.to_json_dict(bulk_data_threshold=1 << 16,
                                                     bulk_data_element_handler=uri)
    if "Rows" in dataset or "PixelData" in dataset:
        vr = "OW" if int(dataset.get("BitsAllocated", 8) or 8) > 8 else "OB"
        answer["7FE00010"] = {"vr": vr, "BulkDataURI": f"{instance_url}/bulkdata/7FE00010"}
    return answer


def frame_numbers(text: str) -> list[int]:
    """The frame list of a frames request (``1`` or ``1,3,5``). Raises ValueError."""
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"frames are numbers from 1, comma-separated, not {text!r}") from None
    if not numbers or any(n < 1 for n in numbers):
        raise ValueError("frames are numbered from 1")
    return numbers


def all_frames(dataset: Dataset) -> list[int]:
    return list(range(1, _frame_count(dataset) + 1))
