"""The replicated command encoding: what goes into a log slot for one client command.

A command carries its session identity so that a retried command can be recognised and
answered from the cache instead of executed twice (docs/DESIGN.md section 3, rule 4). msgpack via
msgspec: compact, fast, and a fixed schema, so a corrupt or hostile entry fails to decode
cleanly instead of producing a half-valid object.

Besides the command words, a request carries what the state machine may not take from its
own surroundings, because every replica must compute the same result:

- ``time``: the wall clock (milliseconds since the epoch) of the node that took the
  command from its client. The state machine's clock is the largest stamp applied so far
  (:mod:`pyxos.kv.keyspace`), which is how expiry stays deterministic. Commands whose
  result cannot depend on time (a plain ``SET k v``) carry none, so the hot path costs
  nothing extra;
- ``db``: the database the client's connection has selected;
- ``watch``: the connection's WATCH registration (WATCH, UNWATCH, EXEC);
- ``multi``: the queued commands of an EXEC, applied as one atomic entry.

Only the fields that differ from their defaults are encoded (trailing defaults are left
off), so a plain command is the same three-element array it always was, and entries written
before these fields existed still decode.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = ["NO_SESSION", "Request", "decode_request", "encode_request"]

NO_SESSION = 0
"""``client_id`` of a command without exactly-once tracking (e.g. plain redis-cli)."""


class Request(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """One client command as stored in the log.

    Encoded as the msgpack array ``[client_id, seq, [arg, ...], time, db, watch, multi]``,
    trailing defaults omitted. Extra fields are refused rather than ignored: replicas
    running different versions must not silently read the same entry differently.

    Attributes:
        client_id: the client's session; ``0`` means no session and no deduplication.
        seq: the client's request number, increasing per client (gaps are allowed); a
            retry reuses the number of the request it retries. Ignored when
            ``client_id`` is 0.
        argv: the command words, name first, as the client sent them. Empty in a clock
            tick (a request that only advances the clock, expiring what is due).
        time: milliseconds since the epoch on the node that received the command; 0 when
            the command does not need a clock.
        db: the selected database, 0 to 15.
        watch: the WATCH registration of the client's connection, 0 for none.
        multi: for EXEC, the queued commands (each an argv).
    """

    client_id: int
    seq: int
    argv: list[bytes]
    time: int = 0
    db: int = 0
    watch: int = 0
    multi: list[list[bytes]] | None = None


class _Plain(msgspec.Struct, array_like=True, frozen=True):
    """The encoding of the most common request: no clock, database 0 (what SET k v is)."""

    client_id: int
    seq: int
    argv: list[bytes]


class _Timed(msgspec.Struct, array_like=True, frozen=True):
    """The next most common: stamped with the time, database 0."""

    client_id: int
    seq: int
    argv: list[bytes]
    time: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Request)


def encode_request(
    argv: Sequence[bytes],
    client_id: int = NO_SESSION,
    seq: int = 0,
    time: int = 0,
    db: int = 0,
    watch: int = 0,
    multi: Sequence[Sequence[bytes]] | None = None,
) -> bytes:
    """Encode one command for proposing to the log."""
    if not db and multi is None and not watch:
        if time:
            return _encoder.encode(_Timed(client_id, seq, list(argv), time))
        return _encoder.encode(_Plain(client_id, seq, list(argv)))
    if multi is not None:
        queued = [list(words) for words in multi]
        return _encoder.encode((client_id, seq, list(argv), time, db, watch, queued))
    if watch:
        return _encoder.encode((client_id, seq, list(argv), time, db, watch))
    return _encoder.encode((client_id, seq, list(argv), time, db))


def decode_request(data: bytes) -> Request:
    """Decode a log entry made by :func:`encode_request`.

    Raises:
        msgspec.DecodeError: ``data`` is not a valid encoded request (``msgspec.ValidationError``
            is a subclass, raised for well-formed msgpack of the wrong shape).
    """
    return _decoder.decode(data)
