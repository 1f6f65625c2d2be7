"""MULTI/EXEC and WATCH inside the replicated state.

A transaction is one log entry: the server queues a connection's commands between MULTI and
EXEC and proposes them together, as the ``multi`` field of one request, so every replica
applies all of them back to back, with nothing in between: atomic everywhere.

WATCH is Redis's own design made replicated. A WATCH is itself a log entry that registers
the connection's keys (under a registration id the connection's node chose at random) in
the replicated state; from that point on, every change to one of those keys, by any client
on any node, expiry and FLUSHDB included, marks the registration dirty
(:meth:`~pyxos.kv.keyspace.Keyspace.touch`). EXEC carries the id; it runs only if the
registration exists and is clean, and removes it either way. A registration whose
connection vanished without UNWATCH (its node crashed) is dropped after ``session_timeout``
applied entries, or beyond ``max_sessions`` registrations, oldest first; an EXEC that comes
later still is aborted, which is the safe answer.

Queued connection commands: SELECT, PING and ECHO are answered here (SELECT changes the
database of the commands after it); the server answers the other connection commands
itself and places their replies in the EXEC array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyxos.kv.commands import string2ll
from pyxos.kv.errors import ERR_DB_RANGE, ERR_MALFORMED, ERR_NOT_INTEGER
from pyxos.kv.keyspace import NUM_DBS, Keyspace, Watch
from pyxos.kv.request import Request
from pyxos.resp.replies import OK, SimpleString, encode_resp2

__all__ = ["NULL_ARRAY", "TransactionCommands"]

NULL_ARRAY = b"*-1\r\n"
"""EXEC's reply when a watched key changed (RESP3 clients get ``_``)."""
_OK = encode_resp2(OK)
_PONG = encode_resp2(SimpleString("PONG"))


def select_index(arg: bytes) -> int | None:
    """The database SELECT names, or None when it is not an ``int`` (range unchecked)."""
    value = string2ll(arg)
    return value if value is not None and -(2**31) <= value < 2**31 else None


class TransactionCommands(Keyspace):
    """EXEC and WATCH registrations, as a mixin over :class:`~pyxos.kv.keyspace.Keyspace`."""

    session_timeout: int
    max_sessions: int
    _applied: int
    _execute: Callable[[Sequence[bytes]], bytes]

    def transaction(self, request: Request) -> bytes:
        """Apply a WATCH, UNWATCH or EXEC request; returns the RESP2 reply."""
        name = request.argv[0].lower() if request.argv else b""
        wid = request.watch
        if name == b"watch" and wid:
            self._register(wid, request.db, request.argv[1:])
            return _OK
        if name == b"unwatch":
            self.unregister(wid)
            return _OK
        if name == b"exec" and request.multi is not None:
            if wid:
                watch = self.watchers.get(wid)
                self.unregister(wid)
                if watch is None or watch.dirty:
                    return NULL_ARRAY
            return self._exec(request.multi)
        return encode_resp2(ERR_MALFORMED)

    def _exec(self, queued: list[list[bytes]]) -> bytes:
        self.random_draws = 0
        out = [b"*%d\r\n" % len(queued)]
        for argv in queued:
            name = argv[0].lower() if argv else b""
            if name == b"select" and len(argv) == 2:
                index = select_index(argv[1])
                if index is None:
                    out.append(encode_resp2(ERR_NOT_INTEGER))
                elif not 0 <= index < NUM_DBS:
                    out.append(encode_resp2(ERR_DB_RANGE))
                else:
                    self.select(index)
                    out.append(_OK)
            elif name == b"ping" and len(argv) <= 2:
                out.append(encode_resp2(argv[1]) if len(argv) == 2 else _PONG)
            elif name == b"echo" and len(argv) == 2:
                out.append(encode_resp2(argv[1]))
            else:
                out.append(self._execute(argv))
        return b"".join(out)

    def _register(self, wid: int, db_index: int, keys: Sequence[bytes]) -> None:
        watch = self.watchers.get(wid)
        if watch is None:
            watch = self.watchers[wid] = Watch(self._applied)
            if len(self.watchers) > self.max_sessions:
                self.unregister(next(iter(self.watchers)))
        db = self.dbs[db_index]
        for key in keys:
            entry = (db_index, key)
            if entry in watch.keys:
                continue
            watch.keys.append(entry)
            db.watched.setdefault(key, []).append(wid)

    def unregister(self, wid: int) -> None:
        """Forget a WATCH registration and its keys (no-op when unknown)."""
        watch = self.watchers.pop(wid, None)
        if watch is None:
            return
        for db_index, key in watch.keys:
            watched = self.dbs[db_index].watched
            ids = watched.get(key)
            if ids is not None:
                ids.remove(wid)
                if not ids:
                    del watched[key]

    def expire_watchers(self) -> None:
        """Drop registrations older than ``session_timeout`` applied entries (their
        connection is most likely gone; an EXEC after this is aborted)."""
        horizon = self._applied - self.session_timeout
        watchers = self.watchers
        while watchers:
            wid, oldest = next(iter(watchers.items()))
            if oldest.since >= horizon:
                break
            self.unregister(wid)
