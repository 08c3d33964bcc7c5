"""Unit tests of MLLP framing (FrameDecoder and frame)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2.mllp import (
    CARRIAGE_RETURN,
    END_BLOCK,
    START_BLOCK,
    Frame,
    FrameDecoder,
    frame,
)

MESSAGE = b"MSH|^~\\&|LAB|NANCY|MPI|NANCY|20240101120000||ADT^A01|MSG001|P|2.5\rPID|1||123^^^CHRU"


def feed_all(decoder: FrameDecoder, *chunks: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    return frames


def test_frame_wraps_payload_in_start_and_end_blocks() -> None:
    assert frame(b"abc") == b"\x0babc\x1c\x0d"
    assert START_BLOCK + b"abc" + END_BLOCK + CARRIAGE_RETURN == frame(b"abc")


def test_single_frame_in_one_read() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    assert decoder.feed(frame(MESSAGE)) == [Frame(MESSAGE, oversized=False)]
    assert not decoder.has_partial_frame


def test_frame_split_byte_by_byte() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    wire = frame(MESSAGE)
    frames = feed_all(decoder, *(wire[i : i + 1] for i in range(len(wire))))
    assert frames == [Frame(MESSAGE, oversized=False)]


def test_several_frames_in_one_read_come_out_in_order() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    frames = decoder.feed(frame(b"one") + frame(b"two") + frame(b"three"))
    assert [f.payload for f in frames] == [b"one", b"two", b"three"]


def test_partial_frame_is_held_until_completed() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    assert decoder.feed(b"\x0bMSH|first half") == []
    assert decoder.has_partial_frame
    assert decoder.feed(b" second half\x1c\x0d") == [Frame(b"MSH|first half second half", False)]


def test_bytes_outside_frames_are_discarded() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    frames = decoder.feed(b"noise\r\n" + frame(b"one") + b"\r\n\n" + frame(b"two") + b"\r")
    assert [f.payload for f in frames] == [b"one", b"two"]
    assert decoder.bytes_discarded == len(b"noise\r\n") + len(b"\r\n\n") + len(b"\r")


def test_end_block_followed_directly_by_start_block_ends_frame() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    frames = decoder.feed(b"\x0bone\x1c\x0btwo\x1c\x0d")
    assert [f.payload for f in frames] == [b"one", b"two"]


def test_end_block_at_end_of_read_with_carriage_return_in_next_read() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    assert decoder.feed(b"\x0bone\x1c") == []
    assert decoder.feed(b"\x0d") == [Frame(b"one", False)]


def test_end_block_at_end_of_read_with_start_block_in_next_read() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    assert decoder.feed(b"\x0bone\x1c") == []
    assert decoder.feed(b"\x0btwo\x1c\x0d") == [Frame(b"one", False), Frame(b"two", False)]


def test_end_block_followed_by_other_byte_is_kept_as_data() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    assert decoder.feed(b"\x0bab\x1ccd\x1c\x0d") == [Frame(b"ab\x1ccd", False)]


def test_lone_end_block_across_reads_is_kept_as_data() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    assert decoder.feed(b"\x0bab\x1c") == []
    assert decoder.feed(b"cd\x1c\x0d") == [Frame(b"ab\x1ccd", False)]


def test_start_block_inside_unfinished_frame_drops_the_partial_frame() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    frames = feed_all(decoder, b"\x0blost part", b"ial\x0bkept\x1c\x0d")
    assert frames == [Frame(b"kept", False)]
    assert decoder.frames_lost == 1


def test_empty_frame_is_emitted() -> None:
    decoder = FrameDecoder(max_message_bytes=1000)
    assert decoder.feed(b"\x0b\x1c\x0d") == [Frame(b"", False)]


def test_message_of_exactly_the_maximum_size_is_not_oversized() -> None:
    decoder = FrameDecoder(max_message_bytes=10, keep_prefix_bytes=4)
    assert decoder.feed(frame(b"0123456789")) == [Frame(b"0123456789", False)]


def test_oversized_message_yields_prefix_and_next_frame_is_intact() -> None:
    decoder = FrameDecoder(max_message_bytes=100, keep_prefix_bytes=8)
    big = b"MSH|^~\\&|" + b"x" * 500
    wire = frame(big) + frame(MESSAGE)
    frames = feed_all(decoder, *(wire[i : i + 7] for i in range(0, len(wire), 7)))
    assert frames == [Frame(big[:8], oversized=True), Frame(MESSAGE, oversized=False)]


def test_oversized_message_is_not_accumulated() -> None:
    decoder = FrameDecoder(max_message_bytes=1000, keep_prefix_bytes=16)
    decoder.feed(START_BLOCK)
    for _ in range(100):
        decoder.feed(b"y" * 1000)
    assert len(decoder._buffer) == 16
    assert decoder.feed(END_BLOCK + CARRIAGE_RETURN) == [Frame(b"y" * 16, oversized=True)]


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_message_bytes=0)
    with pytest.raises(ValueError):
        FrameDecoder(max_message_bytes=10, keep_prefix_bytes=-1)


# Payload bytes: anything but the two block delimiters, which cannot occur inside a frame.
payload_bytes = st.binary(max_size=300).map(
    lambda raw: raw.replace(START_BLOCK, b"").replace(END_BLOCK, b"")
)
# What some senders put between frames.
between_frames = st.sampled_from([b"", b"\r", b"\n", b"\r\n"])


@st.composite
def wire_and_cuts(draw: st.DrawFn) -> tuple[list[bytes], bytes, list[int]]:
    payloads = draw(st.lists(payload_bytes, max_size=8))
    wire = b"".join(draw(between_frames) + frame(payload) for payload in payloads)
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=20)))
    return payloads, wire, cuts


def split_at(wire: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(wire)]
    return [wire[start:end] for start, end in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(wire_and_cuts())
def test_any_cutting_of_concatenated_frames_yields_the_original_payloads(
    case: tuple[list[bytes], bytes, list[int]],
) -> None:
    payloads, wire, cuts = case
    decoder = FrameDecoder(max_message_bytes=1000)
    frames = feed_all(decoder, *split_at(wire, cuts))
    assert frames == [Frame(payload, oversized=False) for payload in payloads]
    assert not decoder.has_partial_frame
    assert decoder.frames_lost == 0


@settings(max_examples=300, deadline=None)
@given(wire_and_cuts())
def test_any_cutting_applies_the_size_limit_per_frame(
    case: tuple[list[bytes], bytes, list[int]],
) -> None:
    payloads, wire, cuts = case
    max_bytes, prefix_bytes = 50, 10
    decoder = FrameDecoder(max_message_bytes=max_bytes, keep_prefix_bytes=prefix_bytes)
    frames = feed_all(decoder, *split_at(wire, cuts))
    expected = [
        Frame(payload[:prefix_bytes], oversized=True)
        if len(payload) > max_bytes
        else Frame(payload, oversized=False)
        for payload in payloads
    ]
    assert frames == expected
