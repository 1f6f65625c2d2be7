"""Wire framing: length-prefixed frames, a kind byte, and the transport's own control frames.

Every frame on a peer connection is::

    +----------------------+------+------------------------+
    | length: u32 big end. | kind | payload (length-1 B)   |
    +----------------------+------+------------------------+

``length`` counts the kind byte and the payload. The kind byte keeps the transport's own
frames apart from protocol messages without touching the core message union:

- :data:`KIND_MESSAGE`: the payload is a core :class:`~pyxos.core.messages.Message`, encoded
  by :func:`pyxos.core.messages.encode` (msgpack), byte for byte;
- :data:`KIND_CONTROL`: the payload is one of the :data:`Control` structs below (handshake,
  ping, chunk of a large message), msgpack-encoded with its own tag.

Why a length prefix checked before anything else: a peer (or anything that can reach the
port) controls the prefix, so the reader refuses a frame over the limit as soon as the four
prefix bytes are in, without allocating for, or waiting for, the body. Before the handshake
the limit is tiny (:data:`HANDSHAKE_MAX_FRAME`), so an unauthenticated connection can make
the node hold only a few kilobytes.

Why chunks: a snapshot can be larger than one frame should be. Messages whose encoding is
larger than the configured chunk size are cut into :class:`Chunk` frames and put back
together by the receiver, bounded by a separate maximum message size; a frame on the wire
therefore stays small, and pings still fit between the chunks of a long transfer.
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

from msgspec import Struct
from msgspec import msgpack as _msgpack

from pyxos.core.messages import Message, encode

_message_decoder: _msgpack.Decoder[Message] = _msgpack.Decoder(Message)


def decode_message(payload: bytes | memoryview) -> Message:
    """Parse a protocol message straight from a frame buffer, without copying it first.

    Same union and wire format as :func:`pyxos.core.messages.decode`, which only takes
    ``bytes``. Raises :class:`FrameError` (``undecodable_message``) on any bad input (see
    :func:`decode_control` for the exceptions msgspec raises besides its own).
    """
    try:
        return _message_decoder.decode(payload)
    except Exception as exc:
        raise FrameError("undecodable_message", f"{type(exc).__name__}: {exc}") from exc


PROTOCOL_VERSION: Final = 1
"""Bumped on any incompatible change of framing, handshake or control frames."""

KIND_MESSAGE: Final = 0x01
KIND_CONTROL: Final = 0x02

DEFAULT_MAX_FRAME: Final = 64 * 1024 * 1024
"""Largest frame (kind byte + payload) a connection accepts once authenticated."""

HANDSHAKE_MAX_FRAME: Final = 4096
"""Largest frame accepted before the peer has authenticated: handshake frames are tiny."""

_PREFIX: Final = struct.Struct(">I")
_HEADER: Final = struct.Struct(">IB")
PREFIX_SIZE: Final = _PREFIX.size
HEADER_SIZE: Final = _HEADER.size


class FrameError(Exception):
    """The byte stream is not valid framing; ``reason`` is a short stable identifier."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConnectionClosed(Exception):
    """The peer closed the stream cleanly at a frame boundary."""


# --- control frames -------------------------------------------------------------------------


class Hello(Struct, frozen=True, tag="hello", array_like=True):
    """Dialer -> listener, first frame: who I am, which cluster, and my challenge."""

    version: int
    cluster_id: str
    node_id: int
    nonce: bytes


class Welcome(Struct, frozen=True, tag="welcome", array_like=True):
    """Listener -> dialer: who I am, my challenge, and my proof over both challenges."""

    version: int
    cluster_id: str
    node_id: int
    nonce: bytes
    mac: bytes


class Proof(Struct, frozen=True, tag="proof", array_like=True):
    """Dialer -> listener, last handshake frame: the dialer's proof over both challenges."""

    mac: bytes


class Ping(Struct, frozen=True, tag="ping", array_like=True):
    """Keep-alive sent by either side of a connection after ``ping_interval`` without sending.

    There is no pong: both ends ping on their own, so each end hears something at least
    every ``ping_interval`` from a live peer, and a reply would only double the traffic.
    """


class Chunk(Struct, frozen=True, tag="chunk", array_like=True):
    """One piece of a message too large for one frame (typically ``InstallSnapshot``).

    The pieces of one message are sent back to back on one connection; ``final`` marks the
    last, after which the receiver decodes the concatenation as one message.
    """

    data: bytes
    final: bool


Control = Hello | Welcome | Proof | Ping | Chunk
"""The transport's own frames (kind :data:`KIND_CONTROL`)."""

_control_encoder = _msgpack.Encoder()
_control_decoder: _msgpack.Decoder[Control] = _msgpack.Decoder(Control)


def control_frame(control: Control) -> bytes:
    """One complete wire frame carrying a control struct."""
    body = _control_encoder.encode(control)
    return _HEADER.pack(len(body) + 1, KIND_CONTROL) + body


def decode_control(payload: bytes | memoryview) -> Control:
    """Parse a control payload; raises :class:`FrameError` (``bad_control``) on bad input.

    Any exception from the decoder means bad input: besides ``DecodeError`` and
    ``ValidationError``, msgspec raises ``UnicodeDecodeError`` for invalid UTF-8 in a string
    and ``RecursionError`` for deeply nested data (found by fuzzing).
    """
    try:
        return _control_decoder.decode(payload)
    except Exception as exc:
        raise FrameError("bad_control", f"{type(exc).__name__}: {exc}") from exc


PING_FRAME: Final = control_frame(Ping())


def message_frames(message: Message, chunk_size: int) -> tuple[bytes, int]:
    """Encode ``message`` as wire bytes: one frame, or a run of chunk frames.

    Returns ``(wire_bytes, encoded_size)``. The chunk frames of one message are simply
    concatenated: they are valid wire data back to back, so a queue can hold them as one
    item and a writer can send them with one call.
    """
    body = encode(message)
    size = len(body)
    if size + 1 <= chunk_size:
        return _HEADER.pack(size + 1, KIND_MESSAGE) + body, size
    view = memoryview(body)
    parts = [
        control_frame(Chunk(bytes(view[i : i + chunk_size]), i + chunk_size >= size))
        for i in range(0, size, chunk_size)
    ]
    return b"".join(parts), size


class _StreamReaderLike(Protocol):
    """The one method of :class:`asyncio.StreamReader` the frame reader needs."""

    async def read(self, n: int = -1, /) -> bytes: ...


class FrameReader:
    """Reads frames from an :class:`asyncio.StreamReader`, many per ``read`` call.

    Reading in large blocks and cutting frames out of the buffer costs one await per block
    instead of two per frame, which is what lets one connection carry >100k small messages
    per second. The buffer is an immutable ``bytes`` so that the returned ``memoryview``
    slices stay valid while the caller decodes them.

    The limit is checked from the prefix alone: an oversize frame raises
    :class:`FrameError` (``frame_too_large``) before any of its body is awaited.
    """

    __slots__ = ("_buf", "_read_size", "_reader", "max_frame")

    def __init__(self, reader: _StreamReaderLike, max_frame: int, read_size: int = 256 * 1024):
        self._reader = reader
        self._buf = b""
        self._read_size = read_size
        self.max_frame = max_frame

    @property
    def buffered(self) -> bytes:
        """Bytes read but not yet returned as frames (to recognise what a bad stream is)."""
        return self._buf

    def _cut(self) -> list[memoryview]:
        buf = self._buf
        end = len(buf)
        pos = 0
        frames: list[memoryview] = []
        view = memoryview(buf)
        limit = self.max_frame
        while end - pos >= PREFIX_SIZE:
            (length,) = _PREFIX.unpack_from(buf, pos)
            if length > limit:
                raise FrameError("frame_too_large", f"{length} bytes > limit {limit}")
            if length == 0:
                raise FrameError("empty_frame", "length 0 leaves no room for the kind byte")
            stop = pos + PREFIX_SIZE + length
            if stop > end:
                break
            frames.append(view[pos + PREFIX_SIZE : stop])
            pos = stop
        if pos:
            self._buf = buf[pos:]
        return frames

    async def read_frames(self) -> list[memoryview]:
        """At least one frame (kind byte first); raises at EOF or on bad framing."""
        while True:
            frames = self._cut()
            if frames:
                return frames
            await self._fill()

    async def read_frame(self) -> memoryview:
        """Exactly one frame; used during the handshake, where frames come one at a time.

        Anything buffered after it stays in the buffer for the next call.
        """
        while True:
            buf = self._buf
            if len(buf) >= PREFIX_SIZE:
                (length,) = _PREFIX.unpack_from(buf, 0)
                if length > self.max_frame:
                    raise FrameError("frame_too_large", f"{length} bytes > limit {self.max_frame}")
                if length == 0:
                    raise FrameError("empty_frame", "length 0 leaves no room for the kind byte")
                stop = PREFIX_SIZE + length
                if len(buf) >= stop:
                    frame = memoryview(buf)[PREFIX_SIZE:stop]
                    self._buf = buf[stop:]
                    return frame
            await self._fill()

    async def _fill(self) -> None:
        """Read more bytes into the buffer; at EOF, a partial frame is a framing error."""
        data = await self._reader.read(self._read_size)
        if not data:
            if self._buf:
                raise FrameError("truncated_frame", f"EOF with {len(self._buf)} bytes pending")
            raise ConnectionClosed
        self._buf = self._buf + data if self._buf else data
