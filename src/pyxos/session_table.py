"""The exactly-once session table: each client's last request number and its reply.

A client that timed out cannot know whether its request was applied, so it retries with the
same ``(client_id, seq)``. Kept inside the replicated state, this table lets every replica
answer the retry with the reply of the first application instead of applying it twice.
The key-value state machine (:class:`pyxos.kv.KVStateMachine`, for ``RID``) and the wrapper
for any state machine (:class:`pyxos.runtime.sessions.SessionStateMachine`, for library
mode) both keep one; it is pure (no I/O, no clock, no randomness, ordered iteration only) so
that every replica holding the same log holds the same table.

The rules, in the order a replica applies an entry:

1. :meth:`SessionTable.expire` at every applied entry: a session unused for more than
   ``idle_limit`` applied entries is dropped. Time is the log position, never the wall
   clock, because the replicas' clocks disagree and the table must not.
2. :meth:`SessionTable.cached`: a request numbered like the client's last one gets that
   reply back; an older one gets ``stale_reply`` (its own reply is no longer kept); either
   counts as a use of the session. A new client whose first number is not positive gets
   ``invalid_reply`` when one is set.
3. :meth:`SessionTable.record` after applying a new request: its number and reply replace
   the client's last ones; beyond ``max_sessions`` the least recently used session goes.

Sessions are kept in order of last use, so both kinds of expiry look only at the front.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

__all__ = ["DEFAULT_IDLE_LIMIT", "DEFAULT_MAX_SESSIONS", "Session", "SessionTable"]

DEFAULT_IDLE_LIMIT = 1_000_000
"""Applied log entries after which an unused client session is dropped."""
DEFAULT_MAX_SESSIONS = 100_000
"""Most client sessions kept; the least recently used is dropped beyond this."""


class Session:
    """The exactly-once record of one client: last sequence applied, its reply, and the
    log position of its last use (for expiry)."""

    __slots__ = ("last_used", "reply", "seq")

    def __init__(self, seq: int, reply: bytes, last_used: int) -> None:
        self.seq = seq
        self.reply = reply
        self.last_used = last_used


class SessionTable:
    """The sessions of one replicated state machine; see the module docstring for the rules.

    ``max_sessions`` and ``idle_limit`` shape the replicated state, so they must be equal on
    all replicas, like the rest of the cluster configuration.
    """

    __slots__ = ("_sessions", "idle_limit", "invalid_reply", "max_sessions", "stale_reply")

    def __init__(
        self,
        *,
        stale_reply: bytes,
        invalid_reply: bytes | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_limit: int = DEFAULT_IDLE_LIMIT,
    ) -> None:
        if max_sessions < 1 or idle_limit < 1:
            raise ValueError("max_sessions and idle_limit must be positive")
        self.stale_reply = stale_reply
        self.invalid_reply = invalid_reply
        self.max_sessions = max_sessions
        self.idle_limit = idle_limit
        self._sessions: OrderedDict[int, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def expire(self, now: int) -> None:
        """Drop the sessions unused for more than ``idle_limit`` entries as of entry ``now``."""
        sessions = self._sessions
        if not sessions:
            return
        horizon = now - self.idle_limit
        while sessions:
            if next(iter(sessions.values())).last_used >= horizon:
                break
            sessions.popitem(last=False)

    def cached(self, client_id: int, seq: int, now: int) -> bytes | None:
        """The reply for ``(client_id, seq)`` without applying it, or ``None`` when it is a
        new request that must be applied (and then passed to :meth:`record`)."""
        session = self._sessions.get(client_id)
        if session is None:
            return self.invalid_reply if seq <= 0 else None
        if seq > session.seq:
            return None
        session.last_used = now
        self._sessions.move_to_end(client_id)
        return session.reply if seq == session.seq else self.stale_reply

    def record(self, client_id: int, seq: int, reply: bytes, now: int) -> None:
        """Remember ``reply`` as the answer to the client's newest request ``seq``."""
        sessions = self._sessions
        session = sessions.get(client_id)
        if session is None:
            sessions[client_id] = Session(seq, reply, now)
            if len(sessions) > self.max_sessions:
                sessions.popitem(last=False)
        else:
            session.seq = seq
            session.reply = reply
            session.last_used = now
            sessions.move_to_end(client_id)

    def items(self) -> Iterator[tuple[int, Session]]:
        """``(client_id, session)`` from the least to the most recently used (what a
        snapshot must keep, since the order decides which session is dropped first)."""
        return iter(self._sessions.items())

    def load(self, records: Iterable[tuple[int, int, bytes, int]]) -> None:
        """Replace the table with ``(client_id, seq, reply, last_used)`` records, least
        recently used first, as :meth:`items` gave them."""
        self._sessions = OrderedDict(
            (client_id, Session(seq, reply, last_used))
            for client_id, seq, reply, last_used in records
        )
