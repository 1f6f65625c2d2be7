"""Framing: length prefix, kind byte, control frames, chunking, and the frame reader."""

from __future__ import annotations

import asyncio
import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxos.core.ballot import Ballot
from pyxos.core.messages import Accepted, InstallSnapshot, Propose, encode
from pyxos.transport.framing import (
    KIND_CONTROL,
    KIND_MESSAGE,
    PING_FRAME,
    Chunk,
    ConnectionClosed,
    FrameError,
    FrameReader,
    Hello,
    Ping,
    Proof,
    Welcome,
    control_frame,
    decode_control,
    decode_message,
    message_frames,
)


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def reader_with(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def read_all(frames: FrameReader) -> list[bytes]:
    out: list[bytes] = []
    while True:
        try:
            batch = await frames.read_frames()
        except ConnectionClosed:
            return out
        out.extend(bytes(f) for f in batch)


def test_message_frame_is_prefix_kind_and_core_encoding() -> None:
    message = Accepted(2, Ballot(3, 2), 10, 12)
    wire, size = message_frames(message, chunk_size=1 << 20)
    body = encode(message)
    assert size == len(body)
    assert wire == struct.pack(">I", len(body) + 1) + bytes([KIND_MESSAGE]) + body
    assert decode_message(wire[5:]) == message


async def test_large_message_is_sent_as_chunks_that_reassemble() -> None:
    message = InstallSnapshot(2, 99, (1, 2, 3), bytes(range(256)) * 40)
    wire, size = message_frames(message, chunk_size=1000)
    frames = await read_all(FrameReader(reader_with(wire), 2000))
    assert len(frames) == (size + 999) // 1000
    chunks = [decode_control(f[1:]) for f in frames]
    assert all(f[0] == KIND_CONTROL for f in frames)
    assert all(isinstance(c, Chunk) for c in chunks)
    assert [c.final for c in chunks if isinstance(c, Chunk)] == [False] * (len(chunks) - 1) + [True]
    data = b"".join(c.data for c in chunks if isinstance(c, Chunk))
    assert decode_message(data) == message


@pytest.mark.parametrize(
    "control",
    [
        Hello(1, "c", 7, b"n" * 32),
        Welcome(1, "c", 8, b"m" * 32, b"x" * 32),
        Proof(b"y" * 32),
        Ping(),
        Chunk(b"abc", True),
    ],
)
async def test_control_frames_round_trip(control: object) -> None:
    wire = control_frame(control)  # type: ignore[arg-type]
    (got,) = await read_all(FrameReader(reader_with(wire), 4096))
    assert got[0] == KIND_CONTROL
    assert decode_control(got[1:]) == control


@pytest.mark.parametrize("payload", [b"", b"\xc1", b"\x92\xa3zzz\x01", b"\x91" * 5000 + b"\x01"])
def test_decode_message_rejects_garbage(payload: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode_message(payload)
    assert info.value.reason == "undecodable_message"


def test_ping_frame_constant() -> None:
    assert decode_control(PING_FRAME[5:]) == Ping()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        b"\x92\xa3zzz\x01",
        msgspec.msgpack.encode(1),
        b"\x95\xa5hello\x01\xa2\xc7\x00\x03\xc4\x00",  # invalid UTF-8: UnicodeDecodeError
        b"\x91" * 5000 + b"\x01",  # deep nesting: RecursionError
    ],
)
def test_decode_control_rejects_garbage(payload: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode_control(payload)
    assert info.value.reason == "bad_control"


async def test_many_frames_in_one_read() -> None:
    wire = b"".join(frame(KIND_MESSAGE, bytes([i]) * i) for i in range(1, 50))
    frames = FrameReader(reader_with(wire), 4096)
    batch = await frames.read_frames()
    assert len(batch) == 49  # all of them from one read


async def test_frames_split_byte_by_byte() -> None:
    wire = frame(KIND_MESSAGE, b"hello") + frame(KIND_CONTROL, b"world!")
    reader = asyncio.StreamReader()
    frames = FrameReader(reader, 4096)
    for b in wire:
        reader.feed_data(bytes([b]))
    reader.feed_eof()
    assert await read_all(frames) == [b"\x01hello", b"\x02world!"]


async def test_truncated_frame_then_eof() -> None:
    wire = struct.pack(">I", 100) + b"x" * 10
    with pytest.raises(FrameError) as info:
        await FrameReader(reader_with(wire), 4096).read_frames()
    assert info.value.reason == "truncated_frame"


async def test_clean_eof_between_frames() -> None:
    frames = FrameReader(reader_with(frame(KIND_MESSAGE, b"a")), 4096)
    await frames.read_frames()
    with pytest.raises(ConnectionClosed):
        await frames.read_frames()


@pytest.mark.parametrize("method", ["read_frames", "read_frame"])
async def test_oversize_prefix_is_refused_before_the_body(method: str) -> None:
    # Only the prefix is available and the stream stays open: the reader must refuse at
    # once rather than wait for (or allocate) the 4 GiB body.
    reader = reader_with(b"\xff\xff\xff\xff", eof=False)
    frames = FrameReader(reader, 1024)
    with pytest.raises(FrameError) as info:
        await asyncio.wait_for(getattr(frames, method)(), 5)
    assert info.value.reason == "frame_too_large"


async def test_prefix_at_the_limit_is_accepted() -> None:
    wire = frame(KIND_MESSAGE, b"z" * 1023)
    (got,) = await read_all(FrameReader(reader_with(wire), 1024))
    assert len(got) == 1024


@pytest.mark.parametrize("method", ["read_frames", "read_frame"])
async def test_empty_frame_is_an_error(method: str) -> None:
    frames = FrameReader(reader_with(b"\x00\x00\x00\x00"), 1024)
    with pytest.raises(FrameError) as info:
        await getattr(frames, method)()
    assert info.value.reason == "empty_frame"


async def test_read_frame_keeps_what_follows_buffered() -> None:
    wire = frame(KIND_CONTROL, b"first") + frame(KIND_MESSAGE, b"second")
    frames = FrameReader(reader_with(wire), 4096)
    assert bytes(await frames.read_frame()) == b"\x02first"
    assert [bytes(f) for f in await frames.read_frames()] == [b"\x01second"]


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=10),
)
def test_any_split_of_a_frame_stream_reassembles(bodies: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(struct.pack(">I", len(b)) + b for b in bodies)
    points = sorted({c for c in cuts if 0 < c < len(wire)})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]

    async def run() -> list[bytes]:
        reader = asyncio.StreamReader()
        frames = FrameReader(reader, 1024)
        for piece in pieces:
            reader.feed_data(piece)
        reader.feed_eof()
        return await read_all(frames)

    assert asyncio.run(run()) == bodies


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=5000), chunk=st.integers(min_value=64, max_value=600))
def test_any_snapshot_round_trips_through_chunking(data: bytes, chunk: int) -> None:
    message = InstallSnapshot(1, 5, (1, 2), data)
    wire, _size = message_frames(message, chunk_size=chunk)

    async def run() -> list[bytes]:
        return await read_all(FrameReader(reader_with(wire), chunk + 64))

    frames = asyncio.run(run())
    if len(frames) == 1 and frames[0][0] == KIND_MESSAGE:
        assert decode_message(frames[0][1:]) == message
    else:
        parts = [decode_control(f[1:]) for f in frames]
        assert decode_message(b"".join(p.data for p in parts if isinstance(p, Chunk))) == message


def test_propose_with_values_round_trips() -> None:
    message = Propose(1, Ballot(2, 1), 5, ((b"a", b"b"), ()), 4)
    wire, _ = message_frames(message, chunk_size=1 << 20)
    assert decode_message(memoryview(wire)[5:]) == message
