"""The node-to-node transport: authenticated TCP links carrying protocol messages.

A :class:`Transport` listens on this node's configured address and keeps one outbound
connection per peer. Sending never blocks the event loop; a message that cannot be queued is
dropped and counted, because Multi-Paxos retransmits what it still needs (proposals,
heartbeats, catch-up) and is safe under message loss. Received messages are handed to a
synchronous ``on_message`` callback on the event loop, in the order each peer sent them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping

from pyxos.core.messages import Message
from pyxos.transport.config import TransportConfig
from pyxos.transport.connection import Context
from pyxos.transport.handshake import Identity
from pyxos.transport.introduce import identify
from pyxos.transport.peer import OutboundPeer
from pyxos.transport.server import Listener
from pyxos.transport.stats import PeerCounters, PeerStatus, TransportStats
from pyxos.transport.tls import still_trusted


class Transport:
    """Messages between the members of one cluster, for the node ``node_id``.

    ``members`` maps every member id, this node's included, to the ``(host, port)`` of its
    peer port. ``secret`` is shared by all members and authenticates every connection (see
    :mod:`pyxos.transport.handshake`); with ``config.tls`` every link is mutual TLS as well,
    and a reload of those files re-establishes every link. ``rng`` drives reconnect jitter
    only; ``clock`` is ``time.monotonic`` unless a test substitutes one (it times staleness,
    heartbeats and ``last_received_monotonic``).
    """

    def __init__(
        self,
        node_id: int,
        cluster_id: str,
        secret: bytes,
        members: Mapping[int, tuple[str, int]],
        on_message: Callable[[Message], None],
        *,
        config: TransportConfig | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if node_id not in members:
            raise ValueError(f"node {node_id} is not in members {sorted(members)}")
        if not isinstance(secret, bytes) or not secret:
            raise ValueError("secret must be non-empty bytes")
        self.node_id = node_id
        self.config = config or TransportConfig()
        self._members = dict(members)
        self.log = logging.getLogger(f"pyxos.transport.node{node_id}")
        self._ctx = Context(
            identity=Identity(
                node_id,
                cluster_id,
                secret,
                self._members,
                require_cert=self.config.tls is not None,
            ),
            config=self.config,
            clock=clock,
            log=self.log,
            on_message=on_message,
            counters={pid: PeerCounters() for pid in self._members if pid != node_id},
        )
        rng = self._rng = rng if rng is not None else random.Random()
        self._peers = {
            pid: OutboundPeer(self._ctx, pid, rng) for pid in self._members if pid != node_id
        }
        self._listener = Listener(self._ctx)
        self._address: tuple[str, int] | None = None
        self._closed = False
        self._dropped_unknown = 0
        if self.config.tls is not None:
            self.config.tls.on_reload(self._tls_reloaded)

    def _tls_reloaded(self) -> None:
        """New certificates or CA: every link this node dialled is made again with the new
        files (the new one first, then the old one closes, so no message waits); an inbound
        link whose certificate the new CA files no longer trust, or that has expired, is
        closed. Inbound links still trusted stay: their dialler renews them on its reload.
        """
        if self._closed:
            return
        tls = self.config.tls
        assert tls is not None
        self.log.info("TLS files reloaded: renewing the peer links this node dialled")
        for peer in self._peers.values():
            peer.renew()
        ctx = tls.require("peer_server")
        for conn in list(self._listener.connections.values()):
            if not still_trusted(conn.writer.get_extra_info("peercert"), ctx):
                conn.close("tls_reload", "its certificate is not trusted by the new files")

    @property
    def address(self) -> tuple[str, int]:
        """The address actually listened on (after :meth:`start`)."""
        if self._address is None:
            raise RuntimeError("transport not started")
        return self._address

    async def start(self) -> None:
        """Listen on this node's configured address (or ``config.bind_host``)."""
        if self._closed:
            raise RuntimeError("transport closed")
        if self._address is not None:
            raise RuntimeError("transport already started")
        host, port = self._members[self.node_id]
        self._address = await self._listener.start(self.config.bind_host or host, port)
        self.log.info("listening for peers on %s:%d", *self._address)

    def update_members(self, members: Mapping[int, tuple[str, int]]) -> None:
        """Add the peers of ``members`` not known yet, and move those whose address changed.

        The membership changes through the log; the node calls this whenever a change is
        learned. Peers are never dropped here: a removed node must still hear that it
        was removed (the core answers it), and its handshakes pass until then.
        """
        if self._closed:
            return
        for pid, address in members.items():
            if pid == self.node_id or self._members.get(pid) == address:
                continue
            self._members[pid] = address  # the Identity sees the same dict (handshakes)
            self._ctx.counters.setdefault(pid, PeerCounters())
            old = self._peers.pop(pid, None)
            if old is not None:
                self.log.info("node %d moved to %s:%d", pid, *address)
                asyncio.get_running_loop().create_task(old.close())
            else:
                self.log.info("node %d joins the peers at %s:%d", pid, *address)
            self._peers[pid] = OutboundPeer(self._ctx, pid, self._rng)

    async def identify(self, host: str, port: int) -> int:
        """The id of the member at ``host:port`` (see :mod:`pyxos.transport.introduce`)."""
        return await identify(self._ctx, host, port)

    def send(self, dst: int, message: Message) -> bool:
        """Queue ``message`` for node ``dst``; never blocks, returns whether it was queued.

        Returns ``False`` when the message is dropped: the peer's queue holds
        ``config.queue_limit`` messages already (the new message is dropped, counted in
        ``dropped_queue_full``), the message encodes to more than ``max_message_size``
        (``dropped_too_large``), ``dst`` is this node or not a member (logged as an error,
        counted in ``TransportStats.dropped_unknown_destination``: a caller's bug, but one
        that must not take the node down), or the transport is closed. Queued messages can
        still be lost with a connection, or dropped as stale when it is re-established. The
        first message to a peer dials it; must be called on the event loop.
        """
        peer = self._peers.get(dst)
        if peer is None:
            self._dropped_unknown += 1
            self.log.error(
                "dropped a %s for node %d: not a peer of node %d",
                type(message).__name__,
                dst,
                self.node_id,
            )
            return False
        if self._closed:
            return False
        return peer.send(message)

    async def close(self) -> None:
        """Stop listening, close every connection and task; queued messages are discarded."""
        if self._closed:
            return
        self._closed = True
        await self._listener.close()
        for peer in self._peers.values():
            await peer.close()
        self.log.info("transport closed")

    def peer_status(self) -> dict[int, PeerStatus]:
        """Per peer: connected (outbound), inbound connected, last frame time, queue length."""
        inbound = self._listener.connections
        last = self._ctx.last_received
        return {
            pid: PeerStatus(
                connected=peer.connected,
                inbound_connected=pid in inbound,
                last_received_monotonic=last.get(pid),
                queued=len(peer.queue),
            )
            for pid, peer in self._peers.items()
        }

    def stats(self) -> TransportStats:
        """A snapshot of all counters (copies; later traffic does not change them)."""
        return TransportStats(
            peers={pid: c.copy() for pid, c in self._ctx.counters.items()},
            rejected_handshakes=dict(self._ctx.rejected),
            handler_errors=self._ctx.handler_errors,
            dropped_unknown_destination=self._dropped_unknown,
        )

    @property
    def active_inbound_handlers(self) -> int:
        """Inbound connection handlers still running (for tests and diagnostics)."""
        return self._listener.active_handlers
