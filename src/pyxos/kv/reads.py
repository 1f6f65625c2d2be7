"""Answering reads from local state: the read API the server uses after a read index.

A read never goes through the log and never changes the replicated state; it runs the
command's handler against the current state, in the client's database, with the reading
node's clock for TTL countdowns. :meth:`LocalReads.due` tells the server when a read would
meet a key whose time has come by that clock but not yet by the replicated one: then the
server puts a clock tick through the log first (see :mod:`pyxos.kv.keyspace`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyxos.kv.commands import COMMANDS, CommandKind, CommandSpec, check
from pyxos.kv.errors import ERR_EMPTY
from pyxos.kv.keyspace import NUM_DBS, Keyspace
from pyxos.kv.resp3 import needs_resp3, resp3_reply
from pyxos.kv.values import WRONGTYPE, WrongTypeError
from pyxos.resp.replies import ErrorReply, Reply, encode

__all__ = ["LocalReads"]

_Handler = Callable[[Sequence[bytes]], Reply]


class LocalReads(Keyspace):
    """The read API, as a mixin of the state machine."""

    _dispatch: dict[bytes, tuple[CommandSpec, _Handler]]

    def _checked(self, argv: Sequence[bytes]) -> tuple[CommandSpec, _Handler] | ErrorReply:
        raise NotImplementedError  # the state machine's

    def read(
        self, argv: Sequence[bytes], protocol: int = 2, db: int = 0, clock: int | None = None
    ) -> bytes:
        """Answer a READ command from the current state, without changing anything.

        For linearizable reads the caller must first make sure this replica has applied
        everything up to the read index (and, when :meth:`due` says so, a clock tick). ``db``
        is the client's database; ``clock`` the reading node's time in ms, which TTL replies
        count down from (the replicated clock when it is later, or when None). A write or
        connection command gets an error reply.
        """
        value = self.read_value(argv, db, clock)
        if protocol == 3 and needs_resp3(argv):
            return resp3_reply(argv, encode(value, 2))
        return encode(value, protocol)

    def read_value(self, argv: Sequence[bytes], db: int = 0, clock: int | None = None) -> Reply:
        """:meth:`read`, returning the reply value instead of encoded bytes."""
        if not argv:
            return ERR_EMPTY
        if db != self.db_index:
            if not 0 <= db < NUM_DBS:
                return ErrorReply("ERR DB index is out of range")
            self.select(db)
        entry = self._dispatch.get(argv[0])
        if entry is None:
            entry = self._dispatch.get(argv[0].lower())
        if entry is None or entry[0].kind is not CommandKind.READ:
            checked = self._checked(argv)
            if isinstance(checked, ErrorReply):
                return checked
            return ErrorReply(
                f"ERR '{checked[0].name}' changes the replicated state and must go through the log"
            )
        spec, handler = entry
        if spec.subcommands or not spec.arity_ok(len(argv)):
            checked = self._checked(argv)
            if isinstance(checked, ErrorReply):
                return checked
        try:
            if clock is not None and clock > self.now:
                self.clock = clock
                try:
                    return handler(argv)
                finally:
                    self.clock = self.now
            return handler(argv)
        except WrongTypeError:
            return WRONGTYPE

    def due(self, argv: Sequence[bytes], db: int, clock: int) -> bool:
        """Whether this read touches a key whose expiry time ``clock`` has reached but the
        replicated clock has not: then the server first puts a clock tick through the log,
        so that the key is deleted everywhere before any node reports it gone (no read can
        see it again afterwards). Keyless reads (DBSIZE, KEYS, SCAN...) look at every key."""
        heap_top = self.next_expiry()
        if heap_top is None or heap_top > clock:
            return False
        spec = COMMANDS.get(argv[0].lower())
        if spec is None or not 0 <= db < NUM_DBS:
            return False
        if spec.subcommands and len(argv) > 1:
            checked = check(argv)
            if isinstance(checked, ErrorReply):
                return False
            spec = checked
        if spec.first_key == 0:
            return True
        expires = self.dbs[db].expires
        for key in spec.keys(argv):
            at = expires.get(key)
            if at is not None and at <= clock:
                return True
        return False

    @property
    def expiring(self) -> bool:
        """Whether any key has (or recently had) a TTL: reads must then check :meth:`due`."""
        return self.next_expiry() is not None

    def keyspace_info(self) -> list[tuple[int, int, int, int]]:
        """``(db, keys, keys with a TTL, average TTL ms)`` for each non-empty database."""
        rows = []
        for index, db in enumerate(self.dbs):
            if db.data:
                expires = db.expires
                avg = (
                    sum(max(at - self.now, 0) for at in expires.values()) // len(expires)
                    if expires
                    else 0
                )
                rows.append((index, len(db.data), len(expires), avg))
        return rows
