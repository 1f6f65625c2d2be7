"""The replicated command encoding: what goes into a log slot for one client command.

A command carries its session identity so that a retried command can be recognised and
answered from the cache instead of executed twice (DESIGN.md section 3, rule 4). msgpack via
msgspec: compact, fast, and a fixed schema, so a corrupt or hostile entry fails to decode
cleanly instead of producing a half-valid object.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = ["NO_SESSION", "Request", "decode_request", "encode_request"]

NO_SESSION = 0
"""``client_id`` of a command without exactly-once tracking (e.g. plain redis-cli)."""


class Request(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """One client command as stored in the log.

    Encoded as the msgpack array ``[client_id, seq, [arg, ...]]``. Extra fields are refused
    rather than ignored: replicas running different versions must not silently read the
    same entry differently.

    Attributes:
        client_id: the client's session; ``0`` means no session and no deduplication.
        seq: the client's request number, increasing per client (gaps are allowed); a
            retry reuses the number of the request it retries. Ignored when
            ``client_id`` is 0.
        argv: the command words, name first, as the client sent them.
    """

    client_id: int
    seq: int
    argv: list[bytes]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Request)


def encode_request(argv: Sequence[bytes], client_id: int = NO_SESSION, seq: int = 0) -> bytes:
    """Encode one command for proposing to the log."""
    return _encoder.encode(Request(client_id, seq, list(argv)))


def decode_request(data: bytes) -> Request:
    """Decode a log entry made by :func:`encode_request`.

    Raises:
        msgspec.DecodeError: ``data`` is not a valid encoded request (``msgspec.ValidationError``
            is a subclass, raised for well-formed msgpack of the wrong shape).
    """
    return _decoder.decode(data)
