"""Character set handling between MLLP framing and HL7 parsing.

An HL7 v2 message declares its character set in MSH-18 (HL7 table 0211). The MSH
segment up to MSH-18 is plain ASCII in every supported encoding, so the declaration is
read from the raw bytes before the whole message is decoded with the matching codec.
"""

from __future__ import annotations

import re

from adapters.errors import AdapterError

__all__ = [
    "MessageDecodingError",
    "UnsupportedCharsetError",
    "decode_message",
    "encode_reply",
    "message_charset",
    "python_codec",
]

_UTF8_BOM = b"\xef\xbb\xbf"
_SEGMENT_TERMINATOR = re.compile(r"\r\n|\r|\n")
_MSH18_INDEX = 17  # MSH-1 is the field separator itself, so MSH-n sits at index n - 1.

_CODECS_BY_HL7_CHARSET = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}


class UnsupportedCharsetError(AdapterError, ValueError):
    """MSH-18 names a character set this system cannot decode."""

    def __init__(self, charset: str) -> None:
        super().__init__(f"unsupported HL7 character set (MSH-18): {charset!r}")
        self.charset = charset


class MessageDecodingError(AdapterError, ValueError):
    """The message bytes are not valid text in the declared character set."""


def _without_bom(payload: bytes) -> bytes:
    return payload.removeprefix(_UTF8_BOM)


def message_charset(payload: bytes) -> str:
    """Return the raw value of MSH-18 (first repetition), or "" when it is absent.

    The field separator is taken from byte 3 of the payload and the repetition
    separator from the second character of MSH-2. A leading UTF-8 byte order mark is
    ignored. A payload that does not start with an MSH segment yields "", leaving its
    rejection to the parser.

    Never raises.
    """
    payload = _without_bom(payload)
    if not payload.startswith(b"MSH") or len(payload) < 4:
        return ""
    segment_end = len(payload)
    for terminator in (b"\r", b"\n"):
        position = payload.find(terminator)
        if position != -1:
            segment_end = min(segment_end, position)
    # latin-1 maps every byte to one character, so this cannot fail and keeps any
    # non-ASCII bytes visible in the value reported back to the caller.
    msh = payload[:segment_end].decode("latin-1")
    field_separator = msh[3]
    fields = msh.split(field_separator)
    if len(fields) <= _MSH18_INDEX:
        return ""
    value = fields[_MSH18_INDEX]
    encoding_characters = fields[1]
    if len(encoding_characters) >= 2:
        value = value.split(encoding_characters[1])[0]
    return value


def python_codec(hl7_charset: str, default: str) -> str:
    """Map an HL7 table 0211 value to a Python codec name.

    An empty value means the sender did not declare a character set, and ``default``
    is returned. Values are compared ignoring case and surrounding spaces.

    Raises:
        UnsupportedCharsetError: for UTF-16 ("UNICODE", "UNICODE UTF-16") and for any
            value outside the supported set (ASCII, 8859/1, 8859/15, UNICODE UTF-8).
    """
    normalized = hl7_charset.strip().upper()
    if not normalized:
        return default
    codec = _CODECS_BY_HL7_CHARSET.get(normalized)
    if codec is None:
        raise UnsupportedCharsetError(hl7_charset)
    return codec


def decode_message(payload: bytes, default_codec: str = "utf-8") -> tuple[str, str]:
    """Decode an HL7 message with the character set it declares in MSH-18.

    Returns the text and the Python codec used. A leading UTF-8 byte order mark is
    dropped. Segments may end with CR, LF or CRLF; they are rejoined with CR, and empty
    segments (blank lines, trailing terminators) are dropped.

    Raises:
        UnsupportedCharsetError: if MSH-18 names an unsupported character set.
        MessageDecodingError: if the bytes are not valid in that character set, or
            contain NUL bytes (never valid in HL7 v2 text, and a sign of UTF-16).
        LookupError: if ``default_codec`` is not a Python codec.
    """
    body = _without_bom(payload)
    declared = message_charset(body)
    codec = python_codec(declared, default_codec)
    nul_offset = body.find(b"\x00")
    if nul_offset != -1:
        raise MessageDecodingError(
            f"NUL byte at offset {nul_offset}: HL7 v2 text cannot contain NUL "
            "(UTF-16 encoded messages are not supported)"
        )
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        declaration = f"declared in MSH-18 as {declared!r}" if declared else "by default"
        offending = body[exc.start : exc.end].hex(" ")
        raise MessageDecodingError(
            f"bytes {offending} at offset {exc.start} are not valid {codec} "
            f"(character set {declaration}): {exc.reason}"
        ) from exc
    segments = [segment for segment in _SEGMENT_TERMINATOR.split(text) if segment]
    return "\r".join(segments), codec


def encode_reply(text: str, codec: str) -> bytes:
    """Encode a reply, replacing characters the codec cannot represent with "?".

    A reply must always be sent, so an unrepresentable character (for example a name
    echoed back into a latin-1 acknowledgement) is replaced rather than fatal.

    Raises:
        LookupError: if ``codec`` is not a Python codec.
    """
    return text.encode(codec, errors="replace")
