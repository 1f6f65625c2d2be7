"""The client port: the Redis protocol in front of a replicated :class:`KVStateMachine`.

Any node accepts any command. Writes are proposed through the local core (a follower's
core forwards them to the leader) and answered once this node has applied them; reads
wait for a read index confirmed by the leader and are then answered from local state;
connection commands (PING, HELLO, AUTH, INFO...) never touch the log. Pipelined commands
are started as they arrive and answered strictly in order.

Time: a write is stamped with this node's clock (unless its result cannot depend on time),
and the leader proposes a clock tick whenever a key's time has come, so keys expire on an
idle cluster too. A read that meets a key past its time by this node's clock (but not yet
by the replicated clock) first puts a tick through the log; see :mod:`pyxos.kv.keyspace`.

Exactly-once for retries: ``RID <client_id> <seq> <command...>`` runs ``command`` inside
the replicated session of ``client_id``; a retry with the same ``seq`` returns the cached
reply instead of applying again. ``pyxos.Client`` uses it; plain Redis clients do not need
to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from pyxos.kv import CommandKind, KVStateMachine
from pyxos.kv.clock import leader_tick
from pyxos.runtime.errors import PyxosError
from pyxos.runtime.node import Node
from pyxos.server.acl_commands import attach as attach_acl
from pyxos.server.connection import Connection
from pyxos.server.connection_base import ConnectionBase, now_ms
from pyxos.server.info import started_at
from pyxos.server.listeners import client_refusals, guard_plain_port
from pyxos.server.port_state import ServerLimits, ServerStats
from pyxos.server.redis_config import RedisConfig
from pyxos.transport.tls import TLSContexts, TLSListener

__all__ = ["RedisServer", "now_ms"]

log = logging.getLogger("pyxos.server")


class RedisServer:
    """Serves RESP on ``host:port`` for one node."""

    def __init__(
        self,
        node: Node,
        kv: KVStateMachine,
        host: str,
        port: int,
        *,
        password: str | None = None,
        aclfile: str | None = None,
        limits: ServerLimits | None = None,
        tls: TLSContexts | None = None,
        tls_port: int = 0,
    ) -> None:
        self.node = node
        self.kv = kv
        self.host = host
        self.port = port
        self.password = password.encode() if password else None
        self.aclfile = aclfile
        self.limits = limits or ServerLimits()
        self.stats = ServerStats()
        self.config = RedisConfig(self)
        self.last_save = started_at()
        self._server: asyncio.Server | None = None
        self._connections: dict[ConnectionBase, None] = {}
        self._next_client_id = 0
        self.address: tuple[str, int] | None = None
        self._expirer: asyncio.Task[None] | None = None
        self.paused_until = 0.0
        self.pause_writes_only = False
        self._unpause: asyncio.TimerHandle | None = None
        # Listeners: plain text on ``port`` (0: none), TLS on ``tls_port`` (see listeners.py).
        self.tls, self.tls_port = tls, tls_port
        self._tls_server: TLSListener | None = None
        self.tls_address: tuple[str, int] | None = None
        attach_acl(self)  # users: this node's base ones, and its connections follow changes

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        refused = client_refusals(self.node.id, self.node.metrics.client_errors.labels("tls").inc)
        if self.port:
            self._server = await loop.create_server(
                guard_plain_port(lambda: Connection(self), refused),
                self.host,
                self.port,
                reuse_address=True,
            )
            self.address = self._server.sockets[0].getsockname()[:2]
            log.info("node %d serving Redis clients on %s:%d", self.node.id, *self.address)
        if self.tls is not None and self.tls_port:
            tls = self.tls
            self._tls_server = TLSListener(
                lambda: tls.require("clients"),
                lambda: Connection(self),
                lambda r, a, e: refused(r, a),
            )
            self.tls_address = await self._tls_server.start(self.host, self.tls_port)
            log.info("node %d serving TLS clients on %s:%d", self.node.id, *self.tls_address)
        self._expirer = asyncio.create_task(self._expire_loop(), name="pyxos-expirer")

    async def _expire_loop(self) -> None:
        """While this node leads and some key's time has come by its clock, propose a clock
        tick: applying it deletes every due key on every replica. One tick at a time."""
        interval = self.limits.expire_interval
        while True:
            await asyncio.sleep(interval)
            if self.kv.next_expiry() is None or self.node.role.value != "leader":
                continue
            tick = leader_tick(self.kv, now_ms())
            if tick is None:
                continue
            with contextlib.suppress(PyxosError):
                await self.node.submit(tick, self.limits.timeout)

    async def close(self) -> None:
        if self._expirer is not None:
            self._expirer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expirer
        if self._unpause is not None:
            self._unpause.cancel()
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
        for conn in list(self._connections):
            conn.abort()
        for server in (self._server, self._tls_server):
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.wait_closed()

    @property
    def client_count(self) -> int:
        return len(self._connections)

    def connections(self) -> Iterator[ConnectionBase]:
        """Open client connections, oldest first."""
        return iter(list(self._connections))

    def add_connection(self, conn: ConnectionBase) -> int:
        self._next_client_id += 1
        self.stats.connections += 1
        self._connections[conn] = None
        return self._next_client_id

    def remove_connection(self, conn: ConnectionBase) -> None:
        self._connections.pop(conn, None)

    # ---- CLIENT PAUSE

    def pause(self, seconds: float, writes_only: bool) -> None:
        loop = asyncio.get_running_loop()
        self.paused_until = max(self.paused_until, loop.time() + seconds)
        self.pause_writes_only = writes_only
        if self._unpause is not None:
            self._unpause.cancel()
        self._unpause = loop.call_at(self.paused_until, self.unpause)

    def unpause(self) -> None:
        self.paused_until = 0.0
        if self._unpause is not None:
            self._unpause.cancel()
            self._unpause = None
        for conn in list(self._connections):
            conn.resume_held()

    def holds(self, kind: CommandKind) -> bool:
        """Whether CLIENT PAUSE holds a command of this kind now."""
        return self.paused_until > 0 and (not self.pause_writes_only or kind is CommandKind.WRITE)
