"""RESP3 replies of the container commands, from their RESP2 replies and their arguments.

The state machine answers in RESP2 (those bytes are what the exactly-once cache keeps), and
for strings RESP3 differs only in null (:func:`pyxos.resp.replies.to_resp3`). The container
commands differ more, in ways only the command tells: a score is a bulk string in RESP2
and a double (``,1.5``) in RESP3; HGETALL is a flat array or a map; SMEMBERS an array or a
set (``~``); ZRANGE ... WITHSCORES a flat array or an array of ``[member, score]`` pairs.
:func:`resp3_reply` rebuilds the RESP3 form from the RESP2 bytes and the command's words.
Redis 7.0 prints a double with ``%.17g`` in both protocols, so the score text carries over
unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyxos.kv.commands import string2ll
from pyxos.resp.replies import (
    ErrorReply,
    Reply,
    RespSet,
    SimpleString,
    decode_reply,
    encode_resp3,
    to_resp3,
)

__all__ = ["needs_resp3", "resp3_reply"]


class _Double(bytes):
    """A score's text, to be sent as a RESP3 double."""

    __slots__ = ()


def _encode(value: object, out: list[bytes]) -> None:
    if type(value) is _Double:
        out.append(b"," + value + b"\r\n")
    elif type(value) is list:
        assert isinstance(value, list)
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode(item, out)
    elif type(value) is RespSet:
        assert isinstance(value, list)
        out.append(b"~%d\r\n" % len(value))
        for item in value:
            _encode(item, out)
    elif type(value) is dict:
        assert isinstance(value, dict)
        out.append(b"%%%d\r\n" % len(value))
        for k, v in value.items():
            _encode(k, out)
            _encode(v, out)
    else:
        out.append(encode_resp3(value))  # type: ignore[arg-type]


def _double(value: Reply) -> object:
    return _Double(value) if isinstance(value, bytes) else value


def _doubles(value: Reply) -> object:
    return [_double(v) for v in value] if isinstance(value, list) else value


def _set(value: Reply) -> object:
    return RespSet(value) if isinstance(value, list) else value


def _map(value: Reply) -> object:
    if not isinstance(value, list):
        return value
    return {value[i]: value[i + 1] for i in range(0, len(value), 2)}


def _pairs(value: Reply, score: bool) -> object:
    if not isinstance(value, list):
        return value
    return [
        [value[i], _double(value[i + 1]) if score else value[i + 1]]
        for i in range(0, len(value), 2)
    ]


def _has(argv: Sequence[bytes], word: bytes) -> bool:
    return any(a.lower() == word for a in argv[2:])


def _zpop(argv: Sequence[bytes], value: Reply) -> object:
    if len(argv) > 2:
        return _pairs(value, True)
    if isinstance(value, list) and len(value) == 2:
        return [value[0], _double(value[1])]
    return value


def _bzpop(argv: Sequence[bytes], value: Reply) -> object:
    if isinstance(value, list) and len(value) == 3:
        return [value[0], value[1], _double(value[2])]
    return value


_Shape = Callable[[Sequence[bytes], Reply], object]


def _withscores(argv: Sequence[bytes], value: Reply) -> object:
    return _pairs(value, True) if _has(argv, b"withscores") else value


_SHAPES: dict[bytes, _Shape] = {
    b"zscore": lambda argv, v: _double(v),
    b"zincrby": lambda argv, v: _double(v),
    b"zadd": lambda argv, v: _double(v) if _has(argv, b"incr") else v,
    b"zmscore": lambda argv, v: _doubles(v),
    b"smembers": lambda argv, v: _set(v),
    b"sinter": lambda argv, v: _set(v),
    b"sunion": lambda argv, v: _set(v),
    b"sdiff": lambda argv, v: _set(v),
    b"spop": lambda argv, v: _set(v) if len(argv) > 2 else v,
    b"hgetall": lambda argv, v: _map(v),
    b"hrandfield": lambda argv, v: _pairs(v, False) if _has(argv, b"withvalues") else v,
    b"zrandmember": _withscores,
    b"zrange": _withscores,
    b"zrangebyscore": _withscores,
    b"zrevrange": _withscores,
    b"zrevrangebyscore": _withscores,
    b"zpopmin": _zpop,
    b"zpopmax": _zpop,
    b"bzpopmin": _bzpop,
    b"bzpopmax": _bzpop,
}


def needs_resp3(argv: Sequence[bytes]) -> bool:
    """Whether ``argv``'s RESP3 reply differs from its RESP2 one beyond null."""
    return bool(argv) and argv[0].lower() in _SHAPES


_RESP3_ONLY = frozenset(b"_,%~#=(|>")


def _is_resp3(reply: bytes) -> bool:
    """Whether ``reply`` (one complete reply) uses a type RESP2 does not have."""
    pos, end = 0, len(reply)
    while pos < end:
        kind = reply[pos]
        if kind in _RESP3_ONLY:
            return True
        eol = reply.find(b"\r\n", pos)
        if eol < 0:
            return False
        header = reply[pos + 1 : eol]
        pos = eol + 2
        if kind == 0x24:  # '$': skip the blob, which may hold anything
            n = string2ll(header)
            if n is None:
                return False
            if n >= 0:
                pos += n + 2
    return False


def resp3_reply(argv: Sequence[bytes], reply: bytes) -> bytes:
    """The RESP3 form of ``reply``, the RESP2 reply the state machine gave to ``argv``.

    Without ``argv`` (the command is not known where the reply is sent), a reply that is
    already RESP3 is returned unchanged, so converting twice does no harm."""
    shape = _SHAPES.get(argv[0].lower()) if argv else None
    if shape is None:
        if b"-1\r\n" not in reply or _is_resp3(reply):
            return reply
        return to_resp3(reply)
    if reply[:1] in (b"-", b"+", b":"):
        return to_resp3(reply)
    value = decode_reply(reply)
    if isinstance(value, ErrorReply | SimpleString):
        return to_resp3(reply)
    out: list[bytes] = []
    _encode(shape(argv, value), out)
    return b"".join(out)
