"""The sending side: one bounded queue and one dialled connection per peer.

``send`` never blocks and never awaits: it appends ready-made wire bytes to a bounded
deque and wakes the peer's task. The task dials lazily (on the first message), runs the
handshake, then writes whatever is queued, many frames per ``write`` call with one ``drain``
per batch, and redials with capped, jittered exponential backoff when the link drops.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque

from pyxos.core.messages import Message
from pyxos.transport import handshake
from pyxos.transport.connection import Connection, Context
from pyxos.transport.framing import (
    HANDSHAKE_MAX_FRAME,
    KIND_CONTROL,
    FrameError,
    FrameReader,
    Ping,
    decode_control,
    message_frames,
)
from pyxos.transport.handshake import HandshakeError, RejectReason
from pyxos.transport.sockopts import set_nodelay
from pyxos.transport.tls import describe_tls_failure


class Backoff:
    """Capped exponential backoff with "equal jitter": a delay in ``[d/2, d]``.

    ``d`` doubles per attempt from ``initial`` up to ``maximum``. The jitter keeps the nodes
    of a cluster that lost a peer at the same moment from redialling it in lock step; the
    lower bound keeps a retry from coming right back. The RNG is an explicit
    :class:`random.Random`, so tests and simulations can seed it.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failed attempt."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.attempt, 62))
        self.attempt += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        """Start again from ``initial`` (after a connection that worked)."""
        self.attempt = 0


_last_encoded: tuple[Message, int, bytes, int] | None = None
"""``(message, chunk_size, wire, size)`` of the last message encoded (see ``_encode``)."""


class OutboundPeer:
    """The queue for ``peer_id`` and the task that keeps a connection to it."""

    def __init__(self, ctx: Context, peer_id: int, rng: random.Random) -> None:
        self._ctx = ctx
        self.peer_id = peer_id
        host, port = ctx.identity.members[peer_id]
        self.host = host
        self.port = port
        self.queue: deque[tuple[float, bytes]] = deque()
        self._limit = ctx.config.queue_limit
        self._chunk_size = ctx.config.chunk_size
        self._max_message = ctx.config.max_message_size
        self._counters = ctx.counters[peer_id]
        self._wakeup = asyncio.Event()
        self._backoff = Backoff(ctx.config.backoff_initial, ctx.config.backoff_max, rng)
        self._task: asyncio.Task[None] | None = None
        self.conn: Connection | None = None
        self._closed = False
        self._next: Connection | None = None
        """A connection made by :meth:`renew`, to be served once the current one closes."""
        self._renewing: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """An authenticated connection is up."""
        return self.conn is not None and not self.conn.is_closed

    def _encode(self, message: Message) -> tuple[bytes, int]:
        """Encode ``message``, reusing the bytes when the same object was just encoded.

        A leader broadcasts one message object to every peer; encoding it once instead of
        once per peer matters at tens of thousands of messages a second.
        """
        global _last_encoded
        cache = _last_encoded
        if cache is not None and cache[0] is message and cache[1] == self._chunk_size:
            return cache[2], cache[3]
        wire, size = message_frames(message, self._chunk_size)
        _last_encoded = (message, self._chunk_size, wire, size)
        return wire, size

    def send(self, message: Message) -> bool:
        """Queue ``message``; ``False`` (and counted) when it is dropped instead.

        When the queue is full the *new* message is dropped: the queued ones are older and
        already ordered, and Paxos retransmits whatever it still needs. Blocking the caller
        instead would stall the node's driver on one slow peer.
        """
        queue = self.queue
        if self._closed:
            return False
        if len(queue) >= self._limit:
            self._counters.dropped_queue_full += 1
            return False
        wire, size = self._encode(message)
        if size > self._max_message:
            self._counters.dropped_too_large += 1
            self._ctx.log.error(
                "dropped a %s of %d bytes to node %d: over max_message_size %d",
                type(message).__name__,
                size,
                self.peer_id,
                self._max_message,
            )
            return False
        queue.append((self._ctx.clock(), wire))
        self._wakeup.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"pyxos-peer-{self.peer_id}"
            )
        return True

    def renew(self) -> None:
        """Replace the connection by a new one made with the current TLS files, without a
        gap: the new connection is made first, then the old one is closed (TLS reload)."""
        if self._closed or self._renewing is not None or not self.connected:
            return
        self._renewing = asyncio.get_running_loop().create_task(
            self._renew(), name=f"pyxos-peer-renew-{self.peer_id}"
        )

    async def _renew(self) -> None:
        try:
            new = await self._connect()
            if new is None:
                return  # refused (logged); the current connection carries on
            if self._closed:
                new.close("shutdown")
                return
            self._next = new
            if self.conn is not None:
                self.conn.close("tls_reload")
        finally:
            self._renewing = None

    async def close(self) -> None:
        """Stop the task and close the connection; queued messages are discarded."""
        self._closed = True
        self.queue.clear()
        task, self._task = self._task, None
        if self._renewing is not None:
            self._renewing.cancel()
        for conn in (self.conn, self._next):
            if conn is not None:
                conn.close("shutdown")
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                self._ctx.handler_errors += 1
                self._ctx.log.exception("outbound task for node %d failed", self.peer_id)

    async def _run(self) -> None:
        """Connect, serve, and after any failure wait (backoff) and connect again, forever.

        The backoff is reset only after a connection that lasted ``idle_timeout``: a peer
        that accepts and then drops every connection at once is retried at a falling rate.
        """
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, self._next = self._next or await self._connect(), None
                if conn is not None:
                    self.conn = conn
                    try:
                        await self._serve(conn)
                    finally:
                        conn.close("shutdown")
                        await conn.wait_heartbeat_stopped()
                    if loop.time() - conn.started >= self._ctx.config.idle_timeout:
                        self._backoff.reset()
            except Exception:
                # A bug, not a network condition; keep the peer alive and make it visible.
                self._ctx.handler_errors += 1
                self._ctx.log.exception("unexpected error on the link to node %d", self.peer_id)
            if self._next is None:  # a renewed connection is served at once
                await asyncio.sleep(self._backoff.next_delay())

    async def _connect(self) -> Connection | None:
        ctx = self._ctx
        cfg = ctx.config
        where = f"to {self.host}:{self.port}"
        try:
            async with asyncio.timeout(cfg.connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                set_nodelay(writer)
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a bad host name
            self._counters.connect_failures += 1
            # Every failure is counted, but only the first of a run is worth an INFO line.
            level = logging.INFO if self._backoff.attempt == 0 else logging.DEBUG
            ctx.log.log(level, "cannot connect to node %d %s: %r", self.peer_id, where, exc)
            return None
        frames = FrameReader(reader, HANDSHAKE_MAX_FRAME)
        try:
            async with asyncio.timeout(cfg.handshake_timeout):
                if cfg.tls is not None:
                    await self._start_tls(writer)
                await handshake.dial(frames, writer, ctx.identity, self.peer_id)
        except (HandshakeError, TimeoutError) as exc:
            writer.transport.abort()
            if isinstance(exc, TimeoutError):
                exc = HandshakeError(RejectReason.TIMEOUT, "handshake not completed", self.peer_id)
            ctx.count_rejection(exc, "outbound", where)
            return None
        except BaseException:
            writer.transport.abort()
            raise
        frames.max_frame = cfg.max_frame_size
        self._counters.connects += 1
        if self._counters.connects > 1:
            self._counters.reconnects += 1
        ctx.log.info("connected to node %d %s", self.peer_id, where)
        return Connection(ctx, frames, writer, self.peer_id, "out")

    async def _start_tls(self, writer: asyncio.StreamWriter) -> None:
        """Upgrade the fresh TCP connection to TLS, presenting this node's certificate."""
        cfg = self._ctx.config
        assert cfg.tls is not None
        try:
            await writer.start_tls(
                cfg.tls.require("peer_client"), ssl_handshake_timeout=cfg.handshake_timeout
            )
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            detail = describe_tls_failure(exc, cfg.handshake_timeout)
            raise HandshakeError(RejectReason.TLS, detail, self.peer_id) from exc

    def _drop_stale(self) -> None:
        queue = self.queue
        if not queue:
            return
        horizon = self._ctx.clock() - self._ctx.config.stale_after
        dropped = 0
        while queue and queue[0][0] < horizon:
            queue.popleft()
            dropped += 1
        if dropped:
            self._counters.dropped_stale += dropped
            self._ctx.log.info(
                "dropped %d queued messages to node %d older than %.3fs",
                dropped,
                self.peer_id,
                self._ctx.config.stale_after,
            )

    async def _serve(self, conn: Connection) -> None:
        conn.on_close(self._wakeup.set)
        reader_task = asyncio.get_running_loop().create_task(
            self._read(conn), name=f"pyxos-peer-read-{self.peer_id}"
        )
        try:
            self._drop_stale()
            await self._write(conn)
        except ConnectionError as exc:
            conn.close("reset", str(exc))
        finally:
            conn.close("shutdown")
            reader_task.cancel()
            try:
                await reader_task
            except asyncio.CancelledError:
                if not reader_task.cancelled():
                    raise

    async def _write(self, conn: Connection) -> None:
        """Write queued frames, coalesced: one ``write`` and one ``drain`` per batch."""
        queue = self.queue
        counters = self._counters
        writer = conn.writer
        wakeup = self._wakeup
        clock = self._ctx.clock
        batch_bytes = self._ctx.config.write_batch_bytes
        while not conn.is_closed:
            if not queue:
                wakeup.clear()
                await wakeup.wait()
                continue
            parts: list[bytes] = []
            size = 0
            while queue and size < batch_bytes:
                wire = queue.popleft()[1]
                parts.append(wire)
                size += len(wire)
            if writer.transport.is_closing():
                conn.close("reset", "transport closing")
                return
            writer.write(parts[0] if len(parts) == 1 else b"".join(parts))
            counters.sent += len(parts)
            conn.last_tx = clock()
            await writer.drain()

    async def _read(self, conn: Connection) -> None:
        """Read the listener's frames: only pings are expected, they prove it is alive."""
        ctx = self._ctx
        with conn.closed_on_failure():
            while not conn.is_closed:
                frames = await conn.reader.read_frames()
                now = ctx.clock()
                conn.last_rx = now
                ctx.last_received[self.peer_id] = now
                for frame in frames:
                    if frame[0] != KIND_CONTROL or not isinstance(decode_control(frame[1:]), Ping):
                        raise FrameError("unexpected_frame", "only pings flow listener->dialer")
