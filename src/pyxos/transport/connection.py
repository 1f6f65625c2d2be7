"""State shared by the two sides of the transport, and one authenticated connection.

A :class:`Connection` is what a socket becomes after the handshake, on either side: it owns
the heartbeat (ping when we have been quiet, close when the peer has been), and it is closed
exactly once, with a reason that is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pyxos.core.messages import Message
from pyxos.transport.config import TransportConfig
from pyxos.transport.framing import PING_FRAME, ConnectionClosed, FrameError, FrameReader
from pyxos.transport.handshake import HandshakeError, Identity
from pyxos.transport.stats import PeerCounters

OnMessage = Callable[[Message], None]

QUIET_REASONS = frozenset({"shutdown", "eof", "reset", "tls_reload"})
"""Close reasons that are routine and logged at INFO; every other one is a WARNING."""


@dataclass(slots=True)
class Context:
    """Everything the listener and the outbound peers share: identity, config, counters."""

    identity: Identity
    config: TransportConfig
    clock: Callable[[], float]
    log: logging.Logger
    on_message: OnMessage
    counters: dict[int, PeerCounters]
    last_received: dict[int, float] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    handler_errors: int = 0

    def count_rejection(self, exc: HandshakeError, direction: str, where: str) -> None:
        """Log and count a failed handshake against the global and the peer's counters."""
        self.rejected[exc.reason.value] += 1
        if exc.peer_id is not None and exc.peer_id in self.counters:
            self.counters[exc.peer_id].rejected_handshakes[exc.reason.value] += 1
        self.log.warning(
            "rejected %s handshake %s (claimed node %s): %s",
            direction,
            where,
            exc.peer_id,
            exc,
        )


class Connection:
    """An authenticated connection with ``peer_id``, ``direction`` "in" or "out"."""

    __slots__ = (
        "_ctx",
        "_heartbeat",
        "_on_close",
        "closed",
        "direction",
        "last_rx",
        "last_tx",
        "peer_id",
        "reader",
        "reason",
        "started",
        "writer",
    )

    def __init__(
        self,
        ctx: Context,
        reader: FrameReader,
        writer: asyncio.StreamWriter,
        peer_id: int,
        direction: str,
    ) -> None:
        self._ctx = ctx
        self.reader = reader
        self.writer = writer
        self.peer_id = peer_id
        self.direction = direction
        now = ctx.clock()
        self.last_rx = now
        self.last_tx = now
        self.started = asyncio.get_running_loop().time()
        self.reason: str | None = None
        self.closed = asyncio.Event()
        self._on_close: list[Callable[[], None]] = []
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._beat(), name=f"pyxos-heartbeat-{direction}-{peer_id}"
        )

    @property
    def is_closed(self) -> bool:
        return self.reason is not None

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once) when the connection closes."""
        self._on_close.append(callback)

    @contextlib.contextmanager
    def closed_on_failure(self) -> Iterator[None]:
        """Close with the reason when reading fails: bad framing, the peer's EOF, a reset."""
        try:
            yield
        except FrameError as exc:
            self.close(exc.reason, exc.detail)
        except ConnectionClosed:
            self.close("eof")
        except ConnectionError as exc:
            self.close("reset", str(exc))

    def close(self, reason: str, detail: str = "") -> None:
        """Close now, discarding unsent bytes; the first reason given is the one recorded.

        Aborting rather than flushing is deliberate: the connection is closed because it is
        broken, idle, replaced or shutting down, and Paxos tolerates the lost messages.
        """
        if self.reason is not None:
            return
        self.reason = reason
        self._ctx.counters[self.peer_id].closed[reason] += 1
        level = logging.INFO if reason in QUIET_REASONS else logging.WARNING
        self._ctx.log.log(
            level,
            "closed %s connection with node %d: %s%s",
            "inbound" if self.direction == "in" else "outbound",
            self.peer_id,
            reason,
            f" ({detail})" if detail else "",
        )
        self.writer.transport.abort()
        if asyncio.current_task() is not self._heartbeat:
            self._heartbeat.cancel()
        self.closed.set()
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()

    async def wait_heartbeat_stopped(self) -> None:
        """Wait until the heartbeat task has ended (after :meth:`close`)."""
        try:
            await self._heartbeat
        except asyncio.CancelledError:
            if not self._heartbeat.cancelled():
                raise

    async def _beat(self) -> None:
        """Ping after ``ping_interval`` without sending; close after ``idle_timeout`` silence."""
        cfg = self._ctx.config
        clock = self._ctx.clock
        while self.reason is None:
            now = clock()
            if now - self.last_rx >= cfg.idle_timeout:
                self.close("idle_timeout", f"nothing received for {now - self.last_rx:.3f}s")
                return
            if now - self.last_tx >= cfg.ping_interval:
                if self.writer.transport.is_closing():
                    self.close("reset", "transport closing")
                    return
                self.writer.write(PING_FRAME)
                self.last_tx = now
            wake = min(self.last_tx + cfg.ping_interval, self.last_rx + cfg.idle_timeout)
            await asyncio.sleep(max(0.001, wake - now))
