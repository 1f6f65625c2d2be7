"""What callers wait on: commands until applied here, reads until they may be served.

Every command proposed through a node gets a future resolved with the state machine's
reply when its slot is applied on this node; every read gets a future resolved once the
leader confirmed a read index and this node applied through it. Both fail with
:class:`~pyxos.runtime.errors.UnknownOutcome` at their deadline (checked every tick), and
commands also as soon as the leader changes while they are in flight: the outcome is then
unknown and the caller should retry with the same request id.

Deadlines are kept in one FIFO queue per timeout (rounded to the millisecond) rather than
one heap: callers use a handful of timeouts (the server's, mostly), and for one timeout
deadlines are filed in increasing order, so filing and expiring are O(1) appends and pops
per command instead of a heap's O(log n) tuple comparisons on the hot path. The rounding
can leave a request up to a millisecond past its deadline, well inside one tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from typing import TypeVar

from pyxos.runtime.errors import UnknownOutcome

_T = TypeVar("_T")


class Requests:
    """The futures of one node's callers; see the module docstring."""

    def __init__(self) -> None:
        self._commands: dict[int, asyncio.Future[bytes]] = {}
        self._reads: dict[int, asyncio.Future[bool]] = {}
        self._deadlines: dict[float, deque[tuple[float, int, bool]]] = {}
        """timeout -> (deadline, key, is_read) in filing order, so in deadline order."""
        self._last_timeout = -1.0
        self._last_queue: deque[tuple[float, int, bool]] | None = None
        """The queue of the last timeout filed; only used while it is not empty (an empty
        queue may have been dropped from ``_deadlines`` by :meth:`expire`)."""
        self._ready_reads: list[tuple[int, int]] = []
        """(index, token) of confirmed reads waiting for this node to apply through index."""
        self._leader_changes: list[asyncio.Future[None]] = []

    def command(
        self, seq: int, loop: asyncio.AbstractEventLoop, timeout: float
    ) -> asyncio.Future[bytes]:
        """A future for the reply to command ``seq``, failing after ``timeout``."""
        return self._file(self._commands, seq, False, loop, timeout)

    def read(
        self, token: int, loop: asyncio.AbstractEventLoop, timeout: float
    ) -> asyncio.Future[bool]:
        """A future that becomes True once read ``token`` may be served (False: retry)."""
        return self._file(self._reads, token, True, loop, timeout)

    def _file(
        self,
        table: dict[int, asyncio.Future[_T]],
        key: int,
        is_read: bool,
        loop: asyncio.AbstractEventLoop,
        timeout: float,
    ) -> asyncio.Future[_T]:
        """A new future filed under ``key``, its deadline in its timeout's queue."""
        future: asyncio.Future[_T] = loop.create_future()
        table[key] = future
        queue = self._last_queue
        if timeout != self._last_timeout or not queue:
            bucket = round(timeout, 3)
            queue = self._deadlines.get(bucket)
            if queue is None:
                queue = self._deadlines[bucket] = deque()
            self._last_timeout, self._last_queue = timeout, queue
        queue.append((loop.time() + timeout, key, is_read))
        return future

    def expire(self, now: float) -> None:
        """Fail the commands and reads whose time ran out."""
        for timeout, queue in list(self._deadlines.items()):
            while queue and queue[0][0] <= now:
                _, key, is_read = queue.popleft()
                if is_read:
                    read = self._reads.pop(key, None)
                    if read is not None and not read.done():
                        read.set_exception(UnknownOutcome("no read index in time"))
                else:
                    write = self._commands.pop(key, None)
                    if write is not None and not write.done():
                        write.set_exception(UnknownOutcome("not applied in time"))
            if not queue:
                del self._deadlines[timeout]

    def replied(self, seq: int, reply: bytes) -> None:
        """Command ``seq`` was applied here and produced ``reply``."""
        future = self._commands.pop(seq, None)
        if future is not None and not future.done():
            future.set_result(reply)

    def read_confirmed(self, token: int, index: int) -> None:
        """Read ``token`` may be served once this node applied through ``index``."""
        if token in self._reads:
            heapq.heappush(self._ready_reads, (index, token))

    def read_refused(self, token: int) -> None:
        failed = self._reads.pop(token, None)
        if failed is not None and not failed.done():
            failed.set_result(False)

    def serve(self, applied: int) -> None:
        """Release every confirmed read whose index this node has applied through."""
        heap = self._ready_reads
        while heap and heap[0][0] <= applied:
            _, token = heapq.heappop(heap)
            waiter = self._reads.pop(token, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(True)

    def abandon_commands(self, exc: Exception) -> None:
        """The leader changed: tell every waiting command its outcome is unknown."""
        for future in self._commands.values():
            if not future.done():
                future.set_exception(exc)

    def fail(self, exc: Exception) -> None:
        """The node stops: fail everything."""
        for command in self._commands.values():
            if not command.done():
                command.set_exception(exc)
        self._commands.clear()
        for read in self._reads.values():
            if not read.done():
                read.set_exception(exc)
        self._reads.clear()

    def leader_changed(self) -> None:
        waiters, self._leader_changes = self._leader_changes, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    async def wait_for_leader_change(self, timeout: float) -> None:
        """Return at the next leader change, or after ``timeout``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leader_changes.append(future)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, max(0.0, timeout))

    @property
    def has_deadlines(self) -> bool:
        return bool(self._deadlines)
