"""What callers wait on: commands until applied here, reads until they may be served.

Every command proposed through a node gets a future resolved with the state machine's
reply when its slot is applied on this node; every read gets a future resolved once the
leader confirmed a read index and this node applied through it. Both fail with
:class:`~pyxos.runtime.errors.UnknownOutcome` at their deadline (checked every tick, one
heap for both), and commands also as soon as the leader changes while they are in
flight: the outcome is then unknown and the caller should retry with the same request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from typing import TypeVar

from pyxos.runtime.errors import UnknownOutcome

_T = TypeVar("_T")


class Requests:
    """The futures of one node's callers; see the module docstring."""

    def __init__(self) -> None:
        self._commands: dict[int, asyncio.Future[bytes]] = {}
        self._reads: dict[int, asyncio.Future[bool]] = {}
        self._deadlines: list[tuple[float, int, bool]] = []
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
        """A new future filed under ``key``, its deadline on the heap both kinds share."""
        future: asyncio.Future[_T] = loop.create_future()
        table[key] = future
        heapq.heappush(self._deadlines, (loop.time() + timeout, key, is_read))
        return future

    def expire(self, now: float) -> None:
        """Fail the commands and reads whose time ran out."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, key, is_read = heapq.heappop(heap)
            if is_read:
                read = self._reads.pop(key, None)
                if read is not None and not read.done():
                    read.set_exception(UnknownOutcome("no read index in time"))
            else:
                write = self._commands.pop(key, None)
                if write is not None and not write.done():
                    write.set_exception(UnknownOutcome("not applied in time"))

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
