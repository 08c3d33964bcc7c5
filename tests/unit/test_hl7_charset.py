"""Unit tests of MSH-18 handling and message decoding."""

from __future__ import annotations

import pytest

from adapters.hl7v2.charset import (
    MessageDecodingError,
    UnsupportedCharsetError,
    decode_message,
    encode_reply,
    message_charset,
    python_codec,
)


def msh(charset: str, separator: str = "|", encoding_characters: str = "^~\\&") -> str:
    fields = [
        "MSH",
        encoding_characters,
        "LAB",
        "NANCY",
        "MPI",
        "NANCY",
        "20240101120000",
        "",
        "ADT^A01",
        "MSG001",
        "P",
        "2.5",
        "",
        "",
        "AL",
        "NE",
        "FRA",
        charset,
    ]
    # MSH-1 is the separator itself, so "MSH" and MSH-2 are joined by it directly.
    return separator.join(fields)


def message(charset: str, family_name: str = "DUPONT", terminator: str = "\r") -> str:
    return terminator.join([msh(charset), f"PID|1||123^^^CHRU||{family_name}^Hélène"])


def test_charset_is_read_from_msh_18() -> None:
    assert message_charset(message("8859/1").encode("latin-1")) == "8859/1"


def test_charset_absent_when_msh_is_shorter_than_18_fields() -> None:
    assert message_charset(b"MSH|^~\\&|LAB|NANCY\rPID|1") == ""


def test_charset_empty_field_is_absent() -> None:
    assert message_charset(message("").encode()) == ""


def test_charset_uses_the_message_field_and_repetition_separators() -> None:
    payload = msh("UNICODE UTF-8#8859/1", separator="$", encoding_characters="!#\\&").encode()
    assert message_charset(payload) == "UNICODE UTF-8"


def test_first_repetition_only() -> None:
    assert message_charset(msh("8859/15~ASCII").encode()) == "8859/15"


def test_charset_stops_at_any_segment_terminator() -> None:
    for terminator in ("\r", "\n", "\r\n"):
        payload = (msh("") + terminator + "PID|1|||||||||||||||||ASCII").encode()
        assert message_charset(payload) == ""


def test_charset_of_non_msh_payload_is_absent() -> None:
    assert message_charset(b"PID|1") == ""
    assert message_charset(b"") == ""


def test_charset_ignores_utf8_bom() -> None:
    assert message_charset(b"\xef\xbb\xbf" + msh("UNICODE UTF-8").encode()) == "UNICODE UTF-8"


@pytest.mark.parametrize(
    ("hl7_charset", "codec"),
    [
        ("", "cp1252"),
        ("ASCII", "ascii"),
        ("8859/1", "latin-1"),
        ("8859/15", "iso8859-15"),
        ("UNICODE UTF-8", "utf-8"),
        ("unicode utf-8 ", "utf-8"),
    ],
)
def test_python_codec_maps_table_0211(hl7_charset: str, codec: str) -> None:
    assert python_codec(hl7_charset, default="cp1252") == codec


@pytest.mark.parametrize("hl7_charset", ["UNICODE", "UNICODE UTF-16", "ISO IR87", "KLINGON"])
def test_python_codec_rejects_unsupported_charsets(hl7_charset: str) -> None:
    with pytest.raises(UnsupportedCharsetError) as raised:
        python_codec(hl7_charset, default="utf-8")
    assert raised.value.charset == hl7_charset
    assert isinstance(raised.value, ValueError)


def test_latin1_message_decodes_helene() -> None:
    text, codec = decode_message(message("8859/1").encode("latin-1"))
    assert codec == "latin-1"
    assert "DUPONT^Hélène" in text


def test_utf8_message_decodes_helene() -> None:
    text, codec = decode_message(message("UNICODE UTF-8").encode("utf-8"))
    assert codec == "utf-8"
    assert "DUPONT^Hélène" in text


def test_undeclared_charset_uses_default_codec() -> None:
    text, codec = decode_message(message("").encode("latin-1"), default_codec="latin-1")
    assert codec == "latin-1"
    assert "Hélène" in text


def test_utf8_bytes_read_as_latin1_when_declared_latin1() -> None:
    # The declaration wins: a sender mislabelling UTF-8 as 8859/1 gets mojibake, not
    # an error, because every byte is valid latin-1.
    text, _ = decode_message(message("8859/1").encode("utf-8"))
    assert "HÃ©lÃ¨ne" in text


def test_latin1_bytes_declared_utf8_raise_decoding_error() -> None:
    with pytest.raises(MessageDecodingError, match="not valid utf-8") as raised:
        decode_message(message("UNICODE UTF-8").encode("latin-1"))
    assert "UNICODE UTF-8" in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_non_ascii_bytes_declared_ascii_raise_decoding_error() -> None:
    with pytest.raises(MessageDecodingError, match="ascii"):
        decode_message(message("ASCII").encode("latin-1"))


def test_unknown_charset_raises_unsupported() -> None:
    with pytest.raises(UnsupportedCharsetError):
        decode_message(message("8859/99").encode("latin-1"))


def test_nul_bytes_raise_decoding_error() -> None:
    with pytest.raises(MessageDecodingError, match="NUL"):
        decode_message(message("").encode("utf-8") + b"\x00")


@pytest.mark.parametrize("terminator", ["\r", "\n", "\r\n"])
def test_segment_terminators_are_normalized_to_cr(terminator: str) -> None:
    payload = terminator.join([msh(""), "EVN|A01", "PID|1"]) + terminator * 2
    text, _ = decode_message(payload.encode())
    assert text == "\r".join([msh(""), "EVN|A01", "PID|1"])


def test_mixed_terminators_and_blank_lines_are_normalized() -> None:
    text, _ = decode_message(b"MSH|^~\\&|A\r\nEVN|A01\n\nPID|1\r")
    assert text == "MSH|^~\\&|A\rEVN|A01\rPID|1"


def test_utf8_bom_is_stripped() -> None:
    text, codec = decode_message(b"\xef\xbb\xbf" + message("UNICODE UTF-8").encode())
    assert codec == "utf-8"
    assert text.startswith("MSH|")


def test_encode_reply_replaces_unrepresentable_characters() -> None:
    assert encode_reply("MSA|AA|Hélène Łukasz", "latin-1") == "MSA|AA|Hélène ?ukasz".encode(
        "latin-1"
    )
    assert encode_reply("Hélène", "utf-8") == "Hélène".encode()
