"""Protocol-neutral reply values and their RESP2 / RESP3 encodings.

Why this lives in :mod:`pyxos.resp`, below ``kv``, ``server`` and ``client``: the replicated
state machine must return RESP bytes from ``apply`` (the server writes them straight to the
client), the server encodes its own replies, and the client decodes them, so the codec is
one module they all import and that imports none of them.

A reply is built from plain Python values, so handlers stay readable and one value can be
encoded for either protocol version:

=====================  ==========================  ===========================
Python value           RESP2                       RESP3
=====================  ==========================  ===========================
``None``               ``$-1`` (null bulk)         ``_``
``bool``               ``:1`` / ``:0``             ``#t`` / ``#f``
``int``                ``:n``                      ``:n``
``float``              bulk string of ``repr``     ``,repr`` (``inf``, ``nan``)
``bytes``, ``str``     bulk string (``str`` UTF-8)  bulk string
:class:`SimpleString`  ``+text``                   ``+text``
:class:`ErrorReply`    ``-CODE text``              ``-CODE text``
:class:`Verbatim`      bulk string                 ``=len\\r\\ntxt:...``
``list``, ``tuple``    array                       array
:class:`Push`          array                       ``>`` push
``dict``               flat array k1 v1 k2 v2 ...  ``%`` map
=====================  ==========================  ===========================

Dicts are encoded in their insertion order, which is deterministic in Python; nothing here
iterates a set.
"""

from __future__ import annotations

import math
from typing import TypeAlias

__all__ = [
    "CRLF",
    "NULL_RESP2",
    "NULL_RESP3",
    "OK",
    "ErrorReply",
    "Push",
    "Reply",
    "ReplyDecodeError",
    "RespSet",
    "SimpleString",
    "Verbatim",
    "decode_reply",
    "encode",
    "encode_resp2",
    "encode_resp3",
    "error",
    "split_array",
    "to_resp3",
]

CRLF = b"\r\n"


class SimpleString(str):
    """A RESP simple string (``+OK``): a status line, not data, so clients show it bare."""

    __slots__ = ()


class ErrorReply(str):
    """A RESP error. The text includes the error code, e.g. ``"ERR syntax error"``.

    Kept as a ``str`` subclass so error constants compare and print naturally in tests.
    """

    __slots__ = ()

    @property
    def code(self) -> str:
        """The first word (``ERR``, ``WRONGTYPE``...), which clients map to exception types."""
        return self.split(" ", 1)[0]


class Verbatim:
    """RESP3 verbatim string (``=``), what Redis uses for human-readable text like INFO.

    RESP2 has no such type and gets a plain bulk string of ``text``.
    """

    __slots__ = ("format", "text")

    def __init__(self, text: bytes | str, format: str = "txt") -> None:
        if len(format) != 3:
            raise ValueError("verbatim format must be exactly 3 characters")
        self.text = text.encode() if isinstance(text, str) else bytes(text)
        self.format = format

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Verbatim) and self.text == other.text and self.format == other.format
        )

    def __hash__(self) -> int:
        return hash((self.text, self.format))

    def __repr__(self) -> str:
        return f"Verbatim({self.text!r}, format={self.format!r})"


class Push(list["Reply"]):
    """A RESP3 out-of-band push message (``>``); an ordinary array in RESP2."""

    __slots__ = ()


class RespSet(list["Reply"]):
    """A RESP3 set (``~``), as COMMAND INFO sends its flags; an ordinary array in RESP2."""

    __slots__ = ()


Reply: TypeAlias = (
    "bool | int | float | bytes | str | Verbatim | list[Reply] | tuple[Reply, ...]"
    " | dict[Reply, Reply] | None"
)

OK = SimpleString("OK")
NULL_RESP2 = b"$-1\r\n"
NULL_RESP3 = b"_\r\n"


def error(message: str, code: str = "ERR") -> ErrorReply:
    """Build an error reply the way Redis's ``addReplyError`` does: ``CODE message``."""
    return ErrorReply(f"{code} {message}")


_LINE_SAFE = str.maketrans("\r\n", "  ")


def _line(text: str) -> bytes:
    # A simple string or error must stay on one line or the stream desynchronises;
    # Redis maps CR and LF to spaces (sdsmapchars) for the same reason.
    return text.translate(_LINE_SAFE).encode("utf-8", "surrogateescape")


def _float_text(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return repr(value).encode()


def _encode_into(value: object, out: list[bytes], resp3: bool) -> None:
    # Exact type checks first (fast, and bool must win over int, str subclasses over str).
    t = type(value)
    if t is bytes:
        assert isinstance(value, bytes)
        out.append(b"$%d\r\n%b\r\n" % (len(value), value))
    elif value is None:
        out.append(NULL_RESP3 if resp3 else NULL_RESP2)
    elif t is SimpleString:
        assert isinstance(value, str)
        out.append(b"+" + _line(value) + CRLF)
    elif t is ErrorReply:
        assert isinstance(value, str)
        out.append(b"-" + _line(value) + CRLF)
    elif t is bool:
        if resp3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif t is int:
        assert isinstance(value, int)
        out.append(b":%d\r\n" % value)
    elif t is str:
        assert isinstance(value, str)
        data = value.encode("utf-8", "surrogateescape")
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif t is list or t is tuple:
        assert isinstance(value, list | tuple)
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif t is dict:
        assert isinstance(value, dict)
        out.append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(value) * (1 if resp3 else 2)))
        for k, v in value.items():
            _encode_into(k, out, resp3)
            _encode_into(v, out, resp3)
    elif t is float:
        assert isinstance(value, float)
        text = _float_text(value)
        if resp3:
            out.append(b"," + text + CRLF)
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(text), text))
    elif t is Push or t is RespSet:
        assert isinstance(value, list)
        marker = (b">%d\r\n" if t is Push else b"~%d\r\n") if resp3 else b"*%d\r\n"
        out.append(marker % len(value))
        for item in value:
            _encode_into(item, out, resp3)
    elif t is Verbatim:
        assert isinstance(value, Verbatim)
        if resp3:
            body = value.format.encode() + b":" + value.text
            out.append(b"=%d\r\n%b\r\n" % (len(body), body))
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(value.text), value.text))
    elif isinstance(value, bytearray | memoryview):
        data = bytes(value)
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif isinstance(value, bool):  # subclasses of the exact types above
        _encode_into(bool(value), out, resp3)
    elif isinstance(value, int):
        _encode_into(int(value), out, resp3)
    elif isinstance(value, float):
        _encode_into(float(value), out, resp3)
    elif isinstance(value, str):
        _encode_into(str(value), out, resp3)
    elif isinstance(value, list | tuple):
        _encode_into(list(value), out, resp3)
    elif isinstance(value, dict):
        _encode_into(dict(value), out, resp3)
    else:
        raise TypeError(f"cannot encode {t.__name__} as a RESP reply")


def encode_resp2(value: Reply | bytearray | memoryview) -> bytes:
    """Encode a reply value for a RESP2 client (the default protocol of every client)."""
    if type(value) is bytes:  # the common GET reply, without building a list
        return b"$%d\r\n%b\r\n" % (len(value), value)
    out: list[bytes] = []
    _encode_into(value, out, False)
    return out[0] if len(out) == 1 else b"".join(out)


def encode_resp3(value: Reply | bytearray | memoryview) -> bytes:
    """Encode a reply value for a client that switched to RESP3 with ``HELLO 3``."""
    out: list[bytes] = []
    _encode_into(value, out, True)
    return out[0] if len(out) == 1 else b"".join(out)


def encode(value: Reply | bytearray | memoryview, protocol: int = 2) -> bytes:
    """Encode ``value`` for protocol version 2 or 3."""
    if protocol == 3:
        return encode_resp3(value)
    if protocol == 2:
        return encode_resp2(value)
    raise ValueError(f"unsupported RESP protocol version {protocol}")


class ReplyDecodeError(ValueError):
    """Raised by :func:`decode_reply` for bytes that are not exactly one complete reply."""


def _read_line(buf: bytes, pos: int) -> tuple[bytes, int]:
    end = buf.find(CRLF, pos)
    if end < 0:
        raise ReplyDecodeError("incomplete reply: missing CRLF")
    return buf[pos:end], end + 2


def _read_int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise ReplyDecodeError(f"bad length or integer {text!r}") from None


def _read_blob(buf: bytes, pos: int, length: int) -> tuple[bytes, int]:
    end = pos + length
    if length < 0 or end + 2 > len(buf) or buf[end : end + 2] != CRLF:
        raise ReplyDecodeError("incomplete or malformed blob")
    return buf[pos:end], end + 2


def _decode_at(buf: bytes, pos: int) -> tuple[Reply, int]:
    if pos >= len(buf):
        raise ReplyDecodeError("incomplete reply: no type byte")
    kind = buf[pos : pos + 1]
    line, after = _read_line(buf, pos + 1)
    if kind == b"+":
        return SimpleString(line.decode("utf-8", "surrogateescape")), after
    if kind == b"-":
        return ErrorReply(line.decode("utf-8", "surrogateescape")), after
    if kind in (b":", b"("):
        return _read_int(line), after
    if kind == b"$":
        n = _read_int(line)
        if n == -1:
            return None, after
        return _read_blob(buf, after, n)
    if kind in (b"*", b">", b"~"):
        n = _read_int(line)
        if n == -1 and kind == b"*":
            return None, after
        if n < 0:
            raise ReplyDecodeError("negative aggregate length")
        items: list[Reply] = Push() if kind == b">" else []
        for _ in range(n):
            item, after = _decode_at(buf, after)
            items.append(item)
        return items, after
    if kind == b"%":
        n = _read_int(line)
        if n < 0:
            raise ReplyDecodeError("negative map length")
        mapping: dict[Reply, Reply] = {}
        for _ in range(n):
            key, after = _decode_at(buf, after)
            val, after = _decode_at(buf, after)
            try:
                mapping[key] = val
            except TypeError:
                raise ReplyDecodeError("unhashable map key") from None
        return mapping, after
    if kind == b"_":
        if line:
            raise ReplyDecodeError("null with payload")
        return None, after
    if kind == b"#":
        if line not in (b"t", b"f"):
            raise ReplyDecodeError(f"bad boolean {line!r}")
        return line == b"t", after
    if kind == b",":
        try:
            return float(line), after
        except ValueError:
            raise ReplyDecodeError(f"bad double {line!r}") from None
    if kind == b"=":
        body, after = _read_blob(buf, after, _read_int(line))
        if len(body) < 4 or body[3:4] != b":":
            raise ReplyDecodeError("verbatim string without format prefix")
        return Verbatim(body[4:], body[:3].decode("ascii", "replace")), after
    raise ReplyDecodeError(f"unknown reply type byte {kind!r}")


def decode_reply(data: bytes) -> Reply:
    """Decode exactly one complete RESP2 or RESP3 reply (the inverse of :func:`encode`).

    Used to translate stored RESP2 replies to RESP3 and by tests; not a streaming parser.
    ``$-1`` and ``*-1`` both decode to ``None``.
    """
    value, end = _decode_at(bytes(data), 0)
    if end != len(data):
        raise ReplyDecodeError(f"{len(data) - end} trailing bytes after the reply")
    return value


def split_array(data: bytes) -> list[bytes]:
    """The raw bytes of each element of one complete RESP array reply (EXEC's), so that
    elements can be placed or translated one by one without re-encoding the others.

    Raises:
        ReplyDecodeError: ``data`` is not exactly one array (an error reply, for example).
    """
    data = bytes(data)
    if not data.startswith(b"*"):
        raise ReplyDecodeError("not an array reply")
    line, pos = _read_line(data, 1)
    count = _read_int(line)
    parts = []
    for _ in range(max(count, 0)):
        _, end = _decode_at(data, pos)
        parts.append(data[pos:end])
        pos = end
    if count < 0 or pos != len(data):
        raise ReplyDecodeError("not exactly one array reply")
    return parts


def to_resp3(reply: bytes) -> bytes:
    """Translate a RESP2-encoded reply (what ``KVStateMachine.apply`` returns) to RESP3.

    For the replies the key-value store produces (status, error, integer, bulk, null and
    arrays of those) the only difference is null: ``$-1`` / ``*-1`` become ``_``. Replies
    without any ``-1\\r\\n`` cannot contain a null, so they are returned unchanged without
    being parsed.
    """
    if b"-1\r\n" not in reply:
        return reply
    return encode_resp3(decode_reply(reply))
