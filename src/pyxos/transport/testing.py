"""Helpers for tests and harnesses that drive the transport from outside.

Shipped with the package (like ``sim`` and ``chaos``) because the chaos harness and fuzzers
need the same things the unit tests do: free ports, an inbox that can be awaited, and a raw
peer that speaks the handshake with whatever (possibly wrong) parameters it is given.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable

from pyxos.core.messages import Message
from pyxos.transport import handshake
from pyxos.transport.framing import HANDSHAKE_MAX_FRAME, PROTOCOL_VERSION, FrameReader
from pyxos.transport.handshake import Identity


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def local_members(ids: Iterable[int], host: str = "127.0.0.1") -> dict[int, tuple[str, int]]:
    """A membership map with a fresh port on ``host`` for each id."""
    return {i: (host, free_port(host)) for i in ids}


class Inbox:
    """An ``on_message`` callback whose messages can be awaited."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()

    def __call__(self, message: Message) -> None:
        self.queue.put_nowait(message)

    async def get(self, timeout: float = 10.0) -> Message:
        """The next message, or ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self.queue.get()


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds, checking every few milliseconds; raise on timeout.

    For state that has no event to await (counters, connection status); the timeout is a
    generous upper bound, not a fixed delay.
    """
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class RawPeer:
    """A hand-driven connection to a transport's listening port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader(reader, 1 << 30)

    @classmethod
    async def connect(cls, host: str, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def dial_handshake(
        self,
        *,
        node_id: int,
        listener_id: int,
        cluster_id: str,
        secret: bytes,
        members: dict[int, tuple[str, int]] | None = None,
    ) -> None:
        """Run the dialer's handshake (raises ``HandshakeError`` if the listener's fails)."""
        me = Identity(node_id, cluster_id, secret, members or {})
        limit, self.frames.max_frame = self.frames.max_frame, HANDSHAKE_MAX_FRAME
        try:
            await handshake.dial(self.frames, self.writer, me, listener_id)
        finally:
            self.frames.max_frame = limit

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def wait_closed_by_peer(self, timeout: float = 10.0) -> None:
        """Read (and discard) until the other side closes or resets the connection."""
        async with asyncio.timeout(timeout):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass

    def close(self) -> None:
        self.writer.transport.abort()


__all__ = [
    "PROTOCOL_VERSION",
    "Inbox",
    "RawPeer",
    "eventually",
    "free_port",
    "local_members",
]
