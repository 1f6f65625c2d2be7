"""How a client connection's commands reach the node, and how the node's errors come back.

Writes go through the log (:meth:`LogCalls.propose`, and :meth:`LogCalls.submit` for the
entries the server makes itself: ACL changes, WATCH registrations, blocking pops); reads
wait for a read index and then answer from the local state. A node's refusal (no leader,
an outcome not known in time, a stopped node) becomes one RESP error a client can act on.
Kept apart from :mod:`pyxos.server.connection`, which orders the replies these produce.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pyxos.kv import encode_request
from pyxos.kv.clock import clock_tick, read_needs_tick, write_stamp
from pyxos.kv.commands import CommandSpec
from pyxos.kv.resp3 import resp3_reply
from pyxos.runtime.errors import NodeFailed, PyxosError, Unavailable, UnknownOutcome
from pyxos.server.connection_base import ConnectionBase, Reply_, error, now_ms

__all__ = ["LogCalls"]

log = logging.getLogger("pyxos.server")


class LogCalls(ConnectionBase):
    """A connection's writes through the log and reads through a read index."""

    def propose(self, argv: Sequence[bytes], client: int, seq: int, spec: CommandSpec) -> Reply_:
        """Propose a write. The fast path returns the node's own future (no task, no timer);
        :meth:`_reply_bytes` turns its result or error into RESP when it is sent.

        The command is stamped with this node's clock unless its result cannot depend on
        time (a plain ``SET k v``), and carries the connection's database."""
        stamp = write_stamp(argv, spec, now_ms)
        payload = encode_request(argv, client, seq, stamp, self.db)
        try:
            future = self.node.submit_future(payload, self.server.limits.timeout)
        except PyxosError as exc:
            return self.error_reply(exc)
        if future is None:
            return self._write_slow(payload, argv)  # no leader known yet: wait for one
        if self.protocol == 3:
            out: asyncio.Future[bytes] = self.loop.create_future()
            future.add_done_callback(lambda f: out.set_result(self._reply_bytes(f, argv)))
            return out
        return future

    def submit(self, payload: bytes) -> asyncio.Future[bytes]:
        """An internal entry through the log; its RESP2 reply, or the error that stopped it."""

        async def run() -> bytes:
            try:
                return await self.node.submit(payload, self.server.limits.timeout)
            except PyxosError as exc:
                return self.error_reply(exc)

        return asyncio.ensure_future(run())

    async def _write_slow(self, payload: bytes, argv: Sequence[bytes] = ()) -> bytes:
        try:
            reply = await self.node.submit(payload, self.server.limits.timeout)
        except PyxosError as exc:
            return self.error_reply(exc)
        return resp3_reply(argv, reply) if self.protocol == 3 else reply

    def _read(self, argv: Sequence[bytes]) -> bytes | asyncio.Future[bytes]:
        """Ask for a read index; answer from local state once it is applied here."""
        kv, protocol, node, db = self.server.kv, self.protocol, self.node, self.db
        try:
            index = node.read_future(self.server.limits.timeout)
        except PyxosError as exc:
            return self.error_reply(exc)
        out: asyncio.Future[bytes] = self.loop.create_future()

        def done(f: asyncio.Future[bool]) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_result(self.error_reply(exc))
            elif f.result():
                node.metrics.reads.inc()
                if not kv.expiring:
                    out.set_result(kv.read(argv, protocol, db))
                    return
                clock = now_ms()
                if not read_needs_tick(kv, argv, db, clock):
                    out.set_result(kv.read(argv, protocol, db, clock))
                    return
                task = asyncio.ensure_future(self._tick_then_read(argv, clock))
                task.add_done_callback(lambda t: out.set_result(t.result()))
            else:  # no leader confirmed it: retry, waiting for a leader
                task = asyncio.ensure_future(self._read_slow(argv))
                task.add_done_callback(lambda t: out.set_result(t.result()))

        index.add_done_callback(done)
        return out

    async def _read_slow(self, argv: Sequence[bytes]) -> bytes:
        kv = self.server.kv
        try:
            await self.node.read(lambda _: None, self.server.limits.timeout)
        except PyxosError as exc:
            return self.error_reply(exc)
        clock = now_ms()
        if read_needs_tick(kv, argv, self.db, clock):
            return await self._tick_then_read(argv, clock)
        return kv.read(argv, self.protocol, self.db, clock)

    async def _tick_then_read(self, argv: Sequence[bytes], clock: int) -> bytes:
        """The read touches a key that is past its time by this node's clock but not yet by
        the replicated one: put a clock tick through the log first (which deletes the key
        on every replica), then answer. No node can report the key present after this."""
        try:
            await self.node.submit(clock_tick(clock), self.server.limits.timeout)
        except PyxosError as exc:
            return self.error_reply(exc)
        return self.server.kv.read(argv, self.protocol, self.db, clock)

    def _reply_bytes(self, future: asyncio.Future[bytes], argv: Sequence[bytes] = ()) -> bytes:
        """The RESP bytes for a finished write future: its reply, or the error for why not."""
        exc = future.exception()
        if exc is not None:
            return self.error_reply(exc)
        reply = future.result()
        return resp3_reply(argv, reply) if self.protocol == 3 else reply

    def error_reply(self, exc: BaseException) -> bytes:
        if isinstance(exc, Unavailable):
            return self._fail("NOLEADER", f"no leader reachable, command not applied ({exc})")
        if isinstance(exc, UnknownOutcome):
            return self._fail("TIMEOUT", f"outcome unknown, the command may still apply ({exc})")
        if isinstance(exc, NodeFailed):
            return self._fail("NODEFAILED", f"this node stopped: {exc}")
        log.error("unexpected error serving a command: %r", exc)
        self.server.stats.unexpected_errors += 1
        return self._fail("ERR", f"internal error: {exc!r}")

    def _fail(self, code: str, text: str) -> bytes:
        self.node.metrics.client_errors.labels(code.lower()).inc()
        return error(f"{code} {text}")
