"""Blocking pops (BLPOP, BRPOP, BLMOVE, BZPOPMIN, BZPOPMAX) on the client port.

The replicated state machine cannot wait (:mod:`pyxos.kv.blocking_pops`): applied, a
blocking pop pops if there is something to pop and otherwise answers null and changes
nothing. The waiting happens here, on the node that holds the client's connection:

1. The client is registered as waiting on each of its keys *before* its first attempt goes
   through the log, so a push applied while the attempt is in flight is not missed.
2. An attempt that finds data answers the client. One that finds nothing leaves the client
   waiting; when this node applies a push (or a ZADD, LMOVE, RENAME... that gives one of the
   keys elements; the state machine calls :meth:`BlockedClients.signal`), every client
   waiting on that key makes a new attempt, in the order they blocked: the log orders their
   attempts, so the first blocked is the first served, as in Redis, and the others find
   nothing and keep waiting in their place.
3. The timeout runs here. A client whose time is up gets the null reply, unless an attempt
   is in flight: then its outcome decides (if it popped, the client gets the element).
   So a pop that timed out never changed the state.

Fairness holds among the clients of one node. Clients blocked on different nodes race:
whichever node's attempt reaches the log first is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyxos.kv import encode_request
from pyxos.kv.blocking_pops import parse_timeout
from pyxos.kv.commands import CommandSpec
from pyxos.kv.resp3 import resp3_reply
from pyxos.resp.replies import ErrorReply
from pyxos.server.connection_base import ServerPort, now_ms

if TYPE_CHECKING:
    from pyxos.kv import KVStateMachine

__all__ = ["BLOCKING", "BlockedClients", "BlockingCommands"]

BLOCKING = frozenset({"blpop", "brpop", "blmove", "bzpopmin", "bzpopmax"})
"""Commands that wait for data when there is none."""
_NOTHING = (b"*-1\r\n", b"$-1\r\n")
_TIMED_OUT = {2: b"*-1\r\n", 3: b"_\r\n"}


class _Waiter:
    __slots__ = (
        "again", "argv", "conn", "done", "future", "in_flight", "keys", "order", "timed_out",
        "timer",
    )  # fmt: skip

    def __init__(
        self, conn: BlockingCommands, argv: list[bytes], keys: list[tuple[int, bytes]], order: int
    ) -> None:
        self.conn = conn
        self.argv = argv
        self.keys = keys
        self.order = order
        self.future: asyncio.Future[bytes] = conn.loop.create_future()
        self.in_flight = self.again = self.timed_out = self.done = False
        self.timer: asyncio.TimerHandle | None = None


class BlockedClients:
    """The clients of one node waiting in a blocking pop, by ``(db, key)``, oldest first."""

    def __init__(self, kv: KVStateMachine, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queues: dict[tuple[int, bytes], deque[_Waiter]] = {}
        self._ready: dict[tuple[int, bytes], None] = {}
        self._all = False
        self._scheduled = False
        kv.on_ready = self.signal

    def signal(self, db: int, key: bytes) -> None:
        """Called while a command is applied: the key may have elements now (db -1: any
        key may, after a snapshot was installed or databases were swapped)."""
        if db < 0:
            self._all = True
        elif (db, key) in self.queues:
            self._ready[(db, key)] = None
        else:
            return
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._serve)

    def _serve(self) -> None:
        self._scheduled = False
        ready = list(self.queues) if self._all else list(self._ready)
        self._ready, self._all = {}, False
        woken: dict[_Waiter, None] = {}
        for dk in ready:
            for waiter in self.queues.get(dk, ()):
                woken[waiter] = None
        # Oldest first across keys too: queues hold waiters in the order they blocked.
        for waiter in sorted(woken, key=lambda w: w.order):
            waiter.conn.attempt(waiter)

    def add(self, waiter: _Waiter) -> None:
        for dk in waiter.keys:
            self.queues.setdefault(dk, deque()).append(waiter)

    def remove(self, waiter: _Waiter) -> None:
        for dk in waiter.keys:
            queue = self.queues.get(dk)
            if queue is not None:
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
                if not queue:
                    del self.queues[dk]

    def waiting(self) -> int:
        """Clients blocked now (for tests and INFO)."""
        return len({id(w) for q in self.queues.values() for w in q})


_REGISTRIES: weakref.WeakKeyDictionary[KVStateMachine, BlockedClients] = weakref.WeakKeyDictionary()
_blocked_so_far = 0


def blocked_clients(kv: KVStateMachine, loop: asyncio.AbstractEventLoop) -> BlockedClients:
    """The node's registry of blocked clients (made on first use)."""
    registry = _REGISTRIES.get(kv)
    if registry is None:
        registry = _REGISTRIES[kv] = BlockedClients(kv, loop)
    return registry


class BlockingCommands:
    """The connection's side of blocking pops (a mixin of the connection)."""

    server: ServerPort
    loop: asyncio.AbstractEventLoop
    protocol: int
    db: int
    closing: bool

    def submit(self, payload: bytes) -> asyncio.Future[bytes]:
        raise NotImplementedError  # the connection's

    def propose_blocking(self, argv: Sequence[bytes], spec: CommandSpec) -> asyncio.Future[bytes]:
        """Run a blocking pop: its reply future, done when it pops, fails or times out."""
        global _blocked_so_far
        _blocked_so_far += 1
        keys = [(self.db, k) for k in spec.keys(argv)]
        waiter = _Waiter(self, list(argv), keys, _blocked_so_far)
        timeout = parse_timeout(argv[-1])
        registry = blocked_clients(self.server.kv, self.loop)
        registry.add(waiter)
        waiter.future.add_done_callback(lambda _: self._forget(waiter))
        if not isinstance(timeout, ErrorReply) and timeout > 0:
            waiter.timer = self.loop.call_later(timeout / 1000, self._time_up, waiter)
        self.attempt(waiter)
        return waiter.future

    def attempt(self, waiter: _Waiter) -> None:
        """Try the pop through the log (unless one is in flight: then try again after)."""
        if waiter.done:
            return
        if self.closing:
            self._finish(waiter, b"")
            return
        if waiter.in_flight:
            waiter.again = True
            return
        waiter.in_flight, waiter.again = True, False
        future = self.submit(encode_request(waiter.argv, time=now_ms(), db=self.db))
        future.add_done_callback(lambda f: self._attempted(waiter, f.result()))

    def _attempted(self, waiter: _Waiter, reply: bytes) -> None:
        waiter.in_flight = False
        if waiter.done:
            return
        if reply not in _NOTHING:
            argv = waiter.argv
            self._finish(waiter, resp3_reply(argv, reply) if self.protocol == 3 else reply)
        elif waiter.timed_out:
            self._finish(waiter, _TIMED_OUT[self.protocol])
        elif waiter.again:
            self.attempt(waiter)

    def _time_up(self, waiter: _Waiter) -> None:
        waiter.timer = None
        if waiter.in_flight:
            waiter.timed_out = True  # the attempt's outcome decides
        else:
            self._finish(waiter, _TIMED_OUT[self.protocol])

    def _finish(self, waiter: _Waiter, reply: bytes) -> None:
        if not waiter.done:
            waiter.done = True
            if not waiter.future.done():
                waiter.future.set_result(reply)

    def _forget(self, waiter: _Waiter) -> None:
        waiter.done = True
        if waiter.timer is not None:
            waiter.timer.cancel()
        blocked_clients(self.server.kv, self.loop).remove(waiter)
