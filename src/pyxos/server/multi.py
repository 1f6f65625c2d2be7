"""MULTI, EXEC, DISCARD, WATCH and UNWATCH on a client connection.

Between MULTI and EXEC the connection queues commands here (answering ``+QUEUED``, or the
error that Redis gives at queueing time, which dooms the transaction to ``EXECABORT``).
EXEC sends the queued commands as one log entry (:mod:`pyxos.kv.transactions`), so they
apply atomically on every replica. Connection commands in the queue that the state machine
cannot answer (CLIENT, INFO, CONFIG...) are answered here when the EXEC reply arrives and
put in their places in the reply array.

WATCH registers the keys in the replicated state under a random id of this connection;
EXEC carries the id and the state machine aborts it (a null reply) if any watched key
changed since, on any node. EXEC waits for the replies of this connection's WATCHes first:
if one of them failed, the transaction is aborted without being proposed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from pyxos.kv import Classification, CommandKind, classify, encode_request
from pyxos.kv.resp3 import resp3_reply
from pyxos.kv.transactions import NULL_ARRAY, select_index
from pyxos.resp.replies import ReplyDecodeError, split_array
from pyxos.server.connection_base import OK, ConnectionBase, Reply_, error, now_ms

__all__ = ["MultiCommands"]

QUEUED = b"+QUEUED\r\n"
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
_IN_STATE_MACHINE = (b"select", b"ping", b"echo")
"""Connection commands the state machine answers inside EXEC itself."""
_NOT_QUEUED = (b"exec", b"discard", b"multi", b"watch", b"quit", b"reset")


class MultiCommands(ConnectionBase):
    """The transaction commands, as a mixin of the connection."""

    def local_reply(self, name: bytes, argv: Sequence[bytes]) -> Reply_:  # the connection's
        raise NotImplementedError

    def queues(self, name: bytes) -> bool:
        """Whether a command with this (lower-case) name is queued rather than run now."""
        return self.multi is not None and name not in _NOT_QUEUED

    def queue(self, argv: Sequence[bytes], known: Classification) -> bytes:
        assert self.multi is not None
        if known.error is not None:
            self.multi_error = True
            return known.error
        self.multi.append(list(argv))
        return QUEUED

    def c_multi(self) -> bytes:
        if self.multi is not None:
            return error("ERR MULTI calls can not be nested")
        self.multi = []
        self.multi_error = False
        return OK

    def c_discard(self) -> bytes:
        if self.multi is None:
            return error("ERR DISCARD without MULTI")
        self.multi = None
        self.drop_watch()
        return OK

    def c_watch(self, argv: Sequence[bytes]) -> Reply_:
        if self.multi is not None:
            return error("ERR WATCH inside MULTI is not allowed")
        if not self.watch_id:
            self.watch_id = int.from_bytes(os.urandom(8), "big") >> 1 or 1
        payload = encode_request(argv, 0, 0, now_ms(), self.db, self.watch_id)
        future = self.submit(payload)
        self.watch_pending.append(future)
        return future

    def c_unwatch(self) -> bytes:
        self.drop_watch()
        return OK

    def drop_watch(self) -> None:
        """Forget this connection's WATCH; the registration is removed through the log in
        the background (if that is lost, the state machine drops it later on its own)."""
        wid, self.watch_id = self.watch_id, 0
        self.watch_pending = []
        if wid:
            future = self.submit(encode_request([b"unwatch"], watch=wid))
            future.add_done_callback(lambda f: None)

    def exec_rejected(self, err: bytes) -> bytes:
        """An EXEC refused before it runs (wrong arity) ends the transaction, as in Redis:
        the queue and every WATCH are dropped, inside MULTI or not, and the reason is given
        as an ``EXECABORT`` so a client waiting for EXEC's reply knows nothing ran."""
        self.multi = None
        self.multi_error = False
        self.drop_watch()
        reason = err[1:].rstrip(b"\r\n")
        reason = reason[4:] if reason.startswith(b"ERR ") else reason
        return b"-EXECABORT Transaction discarded because of: " + reason + b"\r\n"

    def c_exec(self, client: int, seq: int) -> Reply_:
        if self.multi is None:
            return error("ERR EXEC without MULTI")
        queued, self.multi = self.multi, None
        wid, self.watch_id = self.watch_id, 0
        pending, self.watch_pending = self.watch_pending, []
        if self.multi_error:
            if wid:
                self.submit(encode_request([b"unwatch"], watch=wid))
            return EXECABORT
        return self._exec(queued, wid, pending, client, seq)

    async def _exec(
        self,
        queued: list[list[bytes]],
        wid: int,
        pending: list[asyncio.Future[bytes]],
        client: int,
        seq: int,
    ) -> bytes:
        for future in pending:
            if not (await future).startswith(OK):
                # A WATCH this transaction depends on is not known to have applied.
                self.submit(encode_request([b"unwatch"], watch=wid))
                return NULL_ARRAY if self.protocol == 2 else b"_\r\n"
        logged, local = [], []
        for argv in queued:
            name = argv[0].lower()
            if name in _IN_STATE_MACHINE or classify(argv).kind is not CommandKind.LOCAL:
                logged.append(argv)
                local.append(False)
            else:
                local.append(True)
        payload = encode_request([b"exec"], client, seq, now_ms(), self.db, wid, logged)
        reply = await self.submit(payload)
        if reply == NULL_ARRAY:
            return reply if self.protocol == 2 else b"_\r\n"
        try:
            parts = split_array(reply)
        except ReplyDecodeError:
            return reply  # an error reply (-TIMEOUT, -NOLEADER...): the outcome is unknown
        out = [b"*%d\r\n" % len(queued)]
        it = iter(parts)
        for argv, is_local in zip(queued, local, strict=True):
            if is_local:
                local_reply = self.local_reply(argv[0].lower(), argv)
                out.append(local_reply if isinstance(local_reply, bytes) else await local_reply)
                continue
            part = next(it)
            if argv[0].lower() == b"select" and part == OK:
                index = select_index(argv[1])
                assert index is not None
                self.db = index
            out.append(resp3_reply(argv, part) if self.protocol == 3 else part)
        return b"".join(out)
