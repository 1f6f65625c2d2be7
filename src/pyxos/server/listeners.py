"""How the client port's listeners tell TLS from plain text, and say so when they refuse.

A node can serve Redis clients on a plain port (``--port``), a TLS port (``--tls-port``),
or both. A client on the wrong one must be told no, visibly, without disturbing anyone
else: a plain-text client on the TLS port fails the TLS handshake
(:class:`~pyxos.transport.tls.TLSListener` logs why), and a TLS client on the plain port
is recognised by :class:`PlainPortGuard` from its ClientHello before the RESP parser sees
the bytes (it would otherwise wait for a line that never comes while the client waits for
a ServerHello).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from pyxos.transport.tls import looks_like_tls

log = logging.getLogger("pyxos.server")

OnRefused = Callable[[str, tuple[str, int] | None], None]


def client_refusals(node_id: int, count: Callable[[], None] | None = None) -> OnRefused:
    """A callback that logs (and counts, with ``count``) a refused client connection."""

    def refused(reason: str, peer: tuple[str, int] | None) -> None:
        if count is not None:
            count()
        where = f"{peer[0]}:{peer[1]}" if peer else "an unknown address"
        log.warning("node %d refused a client from %s: %s", node_id, where, reason)

    return refused


class PlainPortGuard(asyncio.Protocol):
    """Stands in front of one plain-text client connection until its first bytes arrive.

    A TLS ClientHello is refused with a logged reason; anything else is handed to the real
    protocol, which then becomes the transport's protocol (so the guard costs one call per
    connection, not per read). The real protocol sees ``connection_made`` at once, as
    without the guard.
    """

    __slots__ = ("_inner", "_refused", "_transport")

    def __init__(self, inner: asyncio.Protocol, refused: OnRefused) -> None:
        self._inner = inner
        self._refused = refused
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if looks_like_tls(data):
            peer = transport.get_extra_info("peername")
            address = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
            self._refused("a TLS handshake on the plain-text port (use the TLS port)", address)
            transport.abort()
            return
        transport.set_protocol(self._inner)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def guard_plain_port(
    factory: Callable[[], asyncio.Protocol], refused: OnRefused
) -> Callable[[], asyncio.Protocol]:
    """``factory``, each protocol wrapped in a :class:`PlainPortGuard`."""
    return lambda: PlainPortGuard(factory(), refused)
