"""The listening side: accept, authenticate, then receive messages from one peer per socket.

Inbound connections only receive protocol messages (and send pings): a node sends over the
connection it dialled itself, so the two directions between a pair of nodes are independent
and no tie-breaking between simultaneous dials is needed.

Whatever arrives on the port, the handler closes that one connection with a logged reason
and never lets an exception escape (docs/DESIGN.md section 3, rule 6): the node keeps serving.
With TLS on, a connection whose TLS handshake fails (a foreign CA, an expired certificate,
no certificate, plain text) is refused the same way, counted as ``tls``.
"""

from __future__ import annotations

import asyncio

from pyxos.transport import handshake
from pyxos.transport.connection import Connection, Context
from pyxos.transport.framing import (
    HANDSHAKE_MAX_FRAME,
    KIND_CONTROL,
    KIND_MESSAGE,
    Chunk,
    FrameError,
    FrameReader,
    Ping,
    decode_control,
    decode_message,
)
from pyxos.transport.handshake import HandshakeError, RejectReason
from pyxos.transport.sockopts import set_nodelay
from pyxos.transport.tls import TLSListener, stream_factory


class Listener:
    """Accepts peer connections for one transport and feeds their messages to ``on_message``."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._server: asyncio.Server | TLSListener | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections: dict[int, Connection] = {}
        """The current authenticated inbound connection of each peer."""

    @property
    def active_handlers(self) -> int:
        """Connection handlers still running (authenticated or not)."""
        return len(self._tasks)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port``; return the bound address (useful when ``port`` is 0)."""
        tls = self._ctx.config.tls
        if tls is not None:
            listener = TLSListener(
                lambda: tls.require("peer_server"),
                stream_factory(self._handle),
                self._tls_rejected,
                self._ctx.config.handshake_timeout,
            )
            self._server = listener
            return await listener.start(host, port)
        self._server = await asyncio.start_server(self._handle, host, port)
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    def _tls_rejected(self, reason: str, peer: tuple[str, int] | None, exc: BaseException) -> None:
        where = f"from {peer[0]}:{peer[1]}" if peer else "from unknown address"
        self._ctx.count_rejection(HandshakeError(RejectReason.TLS, reason), "inbound", where)

    def close_connections(self, reason: str) -> None:
        """Close every authenticated inbound connection (their peers dial again)."""
        for conn in list(self.connections.values()):
            conn.close(reason)

    async def close(self) -> None:
        """Stop accepting, close every connection and wait for the handlers to finish."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.close("shutdown")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        set_nodelay(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # Only ever cancelled by close(); returning normally keeps asyncio's stream
            # callback from reporting the cancellation as an error.
            pass
        except Exception:
            self._ctx.handler_errors += 1
            self._ctx.log.exception("unexpected error in inbound connection handler")
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = self._ctx
        peername = writer.get_extra_info("peername")
        peer_ip = str(peername[0]) if isinstance(peername, tuple) and peername else None
        where = f"from {peer_ip}:{peername[1]}" if peer_ip else "from unknown address"
        frames = FrameReader(reader, HANDSHAKE_MAX_FRAME)
        try:
            async with asyncio.timeout(ctx.config.handshake_timeout):
                peer_id = await handshake.accept(frames, writer, ctx.identity, peer_ip)
        except TimeoutError:
            ctx.count_rejection(
                HandshakeError(RejectReason.TIMEOUT, "handshake not completed in time"),
                "inbound",
                where,
            )
            return
        except HandshakeError as exc:
            ctx.count_rejection(exc, "inbound", where)
            return
        frames.max_frame = ctx.config.max_frame_size
        conn = Connection(ctx, frames, writer, peer_id, "in")
        old = self.connections.get(peer_id)
        if old is not None:
            ctx.log.info(
                "node %d connected again %s; replacing its previous inbound connection",
                peer_id,
                where,
            )
            old.close("replaced", "a newer authenticated connection from the same node")
        self.connections[peer_id] = conn
        ctx.log.info("accepted inbound connection from node %d %s", peer_id, where)
        try:
            with conn.closed_on_failure():
                await self._receive(conn)
        finally:
            conn.close("shutdown")
            if self.connections.get(peer_id) is conn:
                del self.connections[peer_id]
            await conn.wait_heartbeat_stopped()

    async def _receive(self, conn: Connection) -> None:
        """Deliver messages until the connection fails; the hot path of the transport."""
        ctx = self._ctx
        peer_id = conn.peer_id
        counters = ctx.counters[peer_id]
        on_message = ctx.on_message
        clock = ctx.clock
        last_received = ctx.last_received
        max_message = ctx.config.max_message_size
        read_frames = conn.reader.read_frames
        pending: bytearray | None = None
        while not conn.is_closed:
            frames = await read_frames()
            if conn.is_closed:
                return
            now = clock()
            conn.last_rx = now
            last_received[peer_id] = now
            for frame in frames:
                kind = frame[0]
                if kind == KIND_MESSAGE:
                    if pending is not None:
                        raise FrameError("bad_chunk", "message frame inside a chunked message")
                    body: bytes | memoryview = frame[1:]
                elif kind == KIND_CONTROL:
                    control = decode_control(frame[1:])
                    if isinstance(control, Ping):
                        continue
                    if not isinstance(control, Chunk):
                        raise FrameError("unexpected_control", type(control).__name__)
                    if pending is None:
                        pending = bytearray()
                    pending += control.data
                    if len(pending) > max_message:
                        raise FrameError(
                            "message_too_large", f"chunked message over {max_message} bytes"
                        )
                    if not control.final:
                        continue
                    body, pending = bytes(pending), None
                else:
                    raise FrameError("unknown_frame_kind", f"kind {kind:#x}")
                message = decode_message(body)
                if message.src != peer_id:
                    raise FrameError(
                        "src_mismatch", f"message from node {message.src} on node {peer_id}'s link"
                    )
                counters.received += 1
                try:
                    on_message(message)
                except Exception:
                    counters.callback_errors += 1
                    ctx.log.exception("on_message raised for a message from node %d", peer_id)
