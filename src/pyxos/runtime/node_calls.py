"""What callers of a node do: propose commands, read state, and wait for the node.

:class:`NodeCalls` is the client half of :class:`~pyxos.runtime.node.Node`, kept apart
from its lifecycle and I/O wiring: ``submit`` and ``read`` (and their fast-path futures
for the server), and the waits tests and callers use instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from pyxos.core.replica import Replica
from pyxos.runtime import envelope
from pyxos.runtime.config import NodeConfig
from pyxos.runtime.errors import Unavailable, UnknownOutcome
from pyxos.runtime.metrics import NodeMetrics
from pyxos.runtime.requests import Requests

T = TypeVar("T")


class NodeCalls:
    """The calls a node answers; the state they use is the node's."""

    id: int
    config: NodeConfig
    replica: Replica
    requests: Requests
    metrics: NodeMetrics
    sm: Any
    _incarnation: int
    _seq: itertools.count[int]
    _read_tokens: itertools.count[int]
    _wake: asyncio.Event
    _changed: asyncio.Event
    _loop: asyncio.AbstractEventLoop | None

    def check_alive(self) -> None:
        raise NotImplementedError

    def submit_future(self, payload: bytes, timeout: float = 5.0) -> asyncio.Future[bytes] | None:
        """Propose ``payload`` now; the future gets the reply once it is applied here.

        Returns None when no leader is known (nothing was proposed: use :meth:`submit`,
        which waits for one). The future fails with :class:`UnknownOutcome` after
        ``timeout`` or when the leader changes while the command is in flight. This is the
        server's fast path: no task and no timer per command.
        """
        self.check_alive()
        seq = next(self._seq)
        command = envelope.HEADER.pack(self.id, self._incarnation, seq) + payload
        if not self.replica.propose(command):
            return None
        future = self.requests.command(seq, self._loop or asyncio.get_running_loop(), timeout)
        self.metrics.proposals.inc()
        self._wake.set()
        return future

    async def submit(self, payload: bytes, timeout: float = 5.0) -> bytes:
        """Put ``payload`` in the log; return the state machine's reply once applied here.

        Raises :class:`Unavailable` if it was never proposed (no leader within the
        timeout), :class:`UnknownOutcome` if it was proposed but not seen applied in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            future = self.submit_future(payload, max(0.0, deadline - loop.time()))
            if future is not None:
                return await future
            if loop.time() >= deadline:
                raise Unavailable("no leader is known")
            await self.wait_for_leader(deadline - loop.time())
            self.check_alive()

    def read_future(self, timeout: float = 5.0) -> asyncio.Future[bool]:
        """Ask for a read index; the future becomes True once this node may serve a read.

        False means no leader confirmed it (none known, or leadership lost): retry.
        """
        self.check_alive()
        token = next(self._read_tokens)
        future = self.requests.read(token, self._loop or asyncio.get_running_loop(), timeout)
        self.replica.read_index(token)
        self._wake.set()
        return future

    async def read(self, fn: Callable[[Any], T], timeout: float = 5.0) -> T:
        """Run ``fn(state_machine)`` once this node reflects every write before the call.

        The leader confirms with a quorum that it still leads (read index), and the read
        waits until this node has applied through that point: linearizable.
        """
        self.check_alive()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                ok = await self.read_future(max(0.0, deadline - loop.time()))
            except UnknownOutcome:
                raise Unavailable(f"no read index within {timeout:.1f}s") from None
            if ok:
                self.metrics.reads.inc()
                return fn(self.sm)
            if loop.time() >= deadline:
                raise Unavailable("no leader confirmed the read")
            await self.wait_for_leader(deadline - loop.time())
            self.check_alive()

    async def wait_for_change(self, timeout: float) -> None:
        """Return after the next batch this node carries out, or after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max(0.0, timeout))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checking after every batch and tick."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("condition not reached in time")
            await self.wait_for_change(remaining)

    def wake(self) -> None:
        """The core has new work (a caller asked it something): carry it out soon."""
        self._wake.set()

    async def wait_for_quietly(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """:meth:`wait_for` that returns whether ``predicate()`` came to hold in time."""
        try:
            await self.wait_for(predicate, timeout)
        except TimeoutError:
            return False
        return True

    async def wait_for_leader(self, remaining: float) -> None:
        """Sleep until a leader change or a heartbeat period, whichever is first."""
        wait = min(self.config.tick_seconds * self.config.heartbeat_ticks, remaining)
        await self.requests.wait_for_leader_change(wait)
