"""Exactly-once application of retried requests, for any state machine.

A client that timed out cannot know whether its request was applied, so it retries with
the same ``(client_id, seq)``. This wrapper keeps, inside the replicated state, a
:class:`~pyxos.session_table.SessionTable` of each client's last sequence number and reply:
a retry gets the cached reply instead of being applied twice. Sessions expire by log
position (commands applied), never by wall clock, so every replica expires the same
sessions at the same point.
"""

from __future__ import annotations

import msgspec

from pyxos.core.statemachine import StateMachine
from pyxos.session_table import DEFAULT_IDLE_LIMIT, DEFAULT_MAX_SESSIONS, SessionTable


class SessionRequest(msgspec.Struct, array_like=True, frozen=True):
    """``client_id`` 0 means no session: applied every time it appears."""

    client_id: int
    seq: int
    payload: bytes


class _Snapshot(msgspec.Struct, array_like=True, frozen=True):
    applied: int
    sessions: list[tuple[int, int, bytes, int]]
    inner: bytes


STALE_REPLY = b"\x00stale request sequence"
"""Returned to a request older than its client's newest: its reply is no longer kept."""

_decoder = msgspec.msgpack.Decoder(SessionRequest)
_encoder = msgspec.msgpack.Encoder()


def encode_request(client_id: int, seq: int, payload: bytes) -> bytes:
    return _encoder.encode(SessionRequest(client_id, seq, payload))


class SessionStateMachine:
    """Wraps ``inner`` so that each ``(client_id, seq)`` is applied at most once.

    The rules are :class:`~pyxos.session_table.SessionTable`'s, the same as the key-value
    state machine's: expiry by log position at every entry, a retry answered from the
    table, least recently used sessions dropped beyond ``max_sessions``.
    """

    def __init__(
        self,
        inner: StateMachine,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_limit: int = DEFAULT_IDLE_LIMIT,
    ) -> None:
        self.inner = inner
        self.applied = 0
        self._sessions = SessionTable(
            stale_reply=STALE_REPLY, max_sessions=max_sessions, idle_limit=idle_limit
        )

    def apply(self, command: bytes) -> bytes:
        self.applied += 1
        self._sessions.expire(self.applied)
        try:
            request = _decoder.decode(command)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self.inner.apply(command)
        if request.client_id == 0:
            return self.inner.apply(request.payload)
        cached = self._sessions.cached(request.client_id, request.seq, self.applied)
        if cached is not None:
            return cached
        reply = self.inner.apply(request.payload)
        self._sessions.record(request.client_id, request.seq, reply, self.applied)
        return reply

    def snapshot(self) -> bytes:
        sessions = [(c, s.seq, s.reply, s.last_used) for c, s in self._sessions.items()]
        return _encoder.encode(_Snapshot(self.applied, sessions, self.inner.snapshot()))

    def restore(self, data: bytes) -> None:
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        self.applied = snap.applied
        self._sessions.load(snap.sessions)
        self.inner.restore(snap.inner)
