"""Exactly-once application of retried requests, for any state machine.

A client that timed out cannot know whether its request was applied, so it retries with
the same ``(client_id, seq)``. This wrapper keeps, inside the replicated state, each
client's last sequence number and reply: a retry gets the cached reply instead of being
applied twice. Sessions expire by log position (commands applied), never by wall clock,
so every replica expires the same sessions at the same point.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from pyxos.core.statemachine import StateMachine


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
    """Wraps ``inner`` so that each ``(client_id, seq)`` is applied at most once."""

    def __init__(
        self, inner: StateMachine, *, max_sessions: int = 100_000, idle_limit: int = 1_000_000
    ) -> None:
        self.inner = inner
        self.max_sessions = max_sessions
        self.idle_limit = idle_limit
        self.applied = 0
        # client_id -> (seq, reply, last_used); ordered by last use for deterministic LRU.
        self._sessions: OrderedDict[int, tuple[int, bytes, int]] = OrderedDict()

    def apply(self, command: bytes) -> bytes:
        self.applied += 1
        try:
            request = _decoder.decode(command)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self.inner.apply(command)
        if request.client_id == 0:
            return self.inner.apply(request.payload)
        session = self._sessions.get(request.client_id)
        if session is not None:
            last_seq, reply, _ = session
            if request.seq == last_seq:
                self._touch(request.client_id, last_seq, reply)
                return reply
            if request.seq < last_seq:
                return STALE_REPLY
        reply = self.inner.apply(request.payload)
        self._touch(request.client_id, request.seq, reply)
        self._expire()
        return reply

    def _touch(self, client_id: int, seq: int, reply: bytes) -> None:
        self._sessions[client_id] = (seq, reply, self.applied)
        self._sessions.move_to_end(client_id)

    def _expire(self) -> None:
        sessions = self._sessions
        while sessions:
            client_id, (_, _, last_used) = next(iter(sessions.items()))
            if len(sessions) > self.max_sessions or self.applied - last_used > self.idle_limit:
                del sessions[client_id]
            else:
                break

    def snapshot(self) -> bytes:
        sessions = [(c, s, r, u) for c, (s, r, u) in self._sessions.items()]
        return _encoder.encode(_Snapshot(self.applied, sessions, self.inner.snapshot()))

    def restore(self, data: bytes) -> None:
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        self.applied = snap.applied
        self._sessions = OrderedDict((c, (s, r, u)) for c, s, r, u in snap.sessions)
        self.inner.restore(snap.inner)
