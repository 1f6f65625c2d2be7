"""The Lua libraries of a script that are written in Python: ``bit``, ``cjson`` and the
parts of ``redis`` that can fail, and the rules for what a script may touch of them.

Lua runs a Python callable as a C function, which is what Redis's own libraries are: so
``return cjson.encode(x)`` keeps the script's frame, and an error names the script's line.
Errors travel as Python exceptions (:class:`Raise` for a ``{err=...}`` table, :class:`Message`
for a library message) and the Lua side turns them back into what a Redis script sees.
A script sees Python objects only as these callables: every other attribute (``__class__``,
``__globals__``...) is refused, since it would reach the interpreter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any

from lupa import lua51

from pyxos.resp.replies import ErrorReply

__all__ = [
    "JSON_NULL",
    "Bit",
    "Json",
    "Library",
    "Message",
    "Raise",
    "RedisLib",
    "attribute_filter",
]

log = logging.getLogger("pyxos.lua")

_LOG_LEVELS = (logging.DEBUG, logging.DEBUG, logging.INFO, logging.WARNING)
JSON_NULL = object()
"""``cjson.null``: what JSON's null decodes to (a userdata in Lua, as in Redis)."""


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


class Raise(Exception):
    """redis.call's error reply, raised through Lua as a Python exception."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(reply)
        self.reply = reply


class Message(Exception):
    """A library error (cjson, bit): Lua reports it as a message at the script's line."""


class Library:
    """A Lua library implemented in Python (bit, cjson): its public methods, nothing else."""

    names: frozenset[str] = frozenset()


def attribute_filter(obj: object, name: object, is_setting: bool) -> object:
    # Scripts see Python objects only as the functions and libraries handed to them;
    # anything else (``__class__``, ``__globals__``...) would reach the interpreter.
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if not is_setting and isinstance(obj, Library) and name in type(obj).names:
        return name
    raise AttributeError("not accessible from a script")


def _bit_arg(args: tuple[Any, ...], i: int, name: str) -> int:
    v = args[i] if i < len(args) else None
    if isinstance(v, bytes):
        try:
            v = float(v)
        except ValueError:
            v = None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise Message(f"bad argument #{i + 1} to '{name}' (number expected, got {_type(v)})")
    if math.isnan(v) or math.isinf(v):
        return 0
    return round(v) & 0xFFFFFFFF  # LuaBitOp: round to nearest, keep the low 32 bits


def _type(v: object) -> str:
    if v is None:
        return "no value"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, bytes):
        return "string"
    return str(lua51.lua_type(v) or "userdata")


def _signed(b: int) -> int:
    b &= 0xFFFFFFFF
    return b - 2**32 if b >= 2**31 else b


class Bit(Library):
    """LuaBitOp, the ``bit`` library Redis ships: 32-bit operations on Lua numbers."""

    names = frozenset(
        [
            "tobit",
            "tohex",
            "bnot",
            "band",
            "bor",
            "bxor",
            "lshift",
            "rshift",
            "arshift",
            "rol",
            "ror",
            "bswap",
        ]
    )

    def tobit(self, *a: Any) -> int:
        return _signed(_bit_arg(a, 0, "tobit"))

    def tohex(self, *a: Any) -> bytes:
        b = _bit_arg(a, 0, "tohex")
        n = _bit_arg(a, 1, "tohex") if len(a) > 1 else 8
        n = _signed(n)
        digits = "0123456789ABCDEF" if n < 0 else "0123456789abcdef"
        out = []
        for _ in range(min(abs(n), 8)):
            out.append(digits[b & 15])
            b >>= 4
        return "".join(reversed(out)).encode()

    def bnot(self, *a: Any) -> int:
        return _signed(~_bit_arg(a, 0, "bnot"))

    def _fold(self, a: tuple[Any, ...], name: str) -> int:
        acc = _bit_arg(a, 0, name)
        for i in range(1, len(a)):
            b = _bit_arg(a, i, name)
            acc = acc & b if name == "band" else acc | b if name == "bor" else acc ^ b
        return _signed(acc)

    def band(self, *a: Any) -> int:
        return self._fold(a, "band")

    def bor(self, *a: Any) -> int:
        return self._fold(a, "bor")

    def bxor(self, *a: Any) -> int:
        return self._fold(a, "bxor")

    def lshift(self, *a: Any) -> int:
        return _signed(_bit_arg(a, 0, "lshift") << (_bit_arg(a, 1, "lshift") & 31))

    def rshift(self, *a: Any) -> int:
        return _signed(_bit_arg(a, 0, "rshift") >> (_bit_arg(a, 1, "rshift") & 31))

    def arshift(self, *a: Any) -> int:
        return _signed(_signed(_bit_arg(a, 0, "arshift")) >> (_bit_arg(a, 1, "arshift") & 31))

    def rol(self, *a: Any) -> int:
        b, n = _bit_arg(a, 0, "rol"), _bit_arg(a, 1, "rol") & 31
        return _signed((b << n) | (b >> (32 - n)))

    def ror(self, *a: Any) -> int:
        b, n = _bit_arg(a, 0, "ror"), _bit_arg(a, 1, "ror") & 31
        return _signed((b >> n) | (b << (32 - n)))

    def bswap(self, *a: Any) -> int:
        return _signed(int.from_bytes(_bit_arg(a, 0, "bswap").to_bytes(4, "little"), "big"))


def _json_escape(s: bytes) -> bytes:
    out = bytearray(b'"')
    for c in s:
        if c == 0x22:
            out += b'\\"'
        elif c == 0x5C:
            out += b"\\\\"
        elif c == 0x2F:
            out += b"\\/"
        elif c < 0x20 or c == 0x7F:
            out += {8: b"\\b", 12: b"\\f", 10: b"\\n", 13: b"\\r", 9: b"\\t"}.get(c, b"\\u%04x" % c)
        else:
            out.append(c)
    return bytes(out + b'"')


def _json_number(n: float) -> bytes:
    if math.isnan(n) or math.isinf(n):
        raise ValueError("Cannot serialise number: must not be NaN or Inf")
    return (b"%.14g" % n).replace(b"inf", b"")


def _json_encode(v: Any, depth: int = 0) -> bytes:
    if depth > 1000:
        raise ValueError(f"Cannot serialise, excessive nesting ({depth})")
    if v is None or v is JSON_NULL:
        return b"null"
    if isinstance(v, bool):
        return b"true" if v else b"false"
    if isinstance(v, int | float):
        return _json_number(v)
    if isinstance(v, bytes):
        return _json_escape(v)
    kind = lua51.lua_type(v)
    if kind != "table":
        raise ValueError(f"Cannot serialise {kind}: type not supported")
    items = list(v.items())
    keys = [k for k, _ in items]
    if items and all(
        isinstance(k, int | float) and not isinstance(k, bool) and k >= 1 and k == int(k)
        for k in keys
    ):
        top = int(max(keys))
        if top > 10 and top > 2 * len(items):
            raise ValueError("Cannot serialise table: excessively sparse array")
        by_index = {int(k): val for k, val in items}
        parts = [_json_encode(by_index.get(i), depth + 1) for i in range(1, top + 1)]
        return b"[" + b",".join(parts) + b"]"
    out = []
    for k, val in items:
        if isinstance(k, bytes):
            name = _json_escape(k)
        elif isinstance(k, int | float) and not isinstance(k, bool):
            name = b'"' + _json_number(k) + b'"'
        else:
            kind = "boolean" if isinstance(k, bool) else lua51.lua_type(k) or "userdata"
            raise ValueError(f"Cannot serialise {kind}: table key must be a number or string")
        out.append(name + b":" + _json_encode(val, depth + 1))
    return b"{" + b",".join(out) + b"}"


class Json(Library):
    """lua-cjson's encode and decode, with its rules for arrays, sparse tables and errors."""

    names = frozenset(("encode", "decode", "null"))
    null = JSON_NULL

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def encode(self, *a: Any) -> bytes:
        if len(a) != 1:
            raise Message("bad argument #1 to 'encode' (expected 1 argument)")
        try:
            return _json_encode(a[0])
        except ValueError as exc:
            raise Message(str(exc)) from None

    def decode(self, *a: Any) -> Any:
        if len(a) != 1 or not isinstance(a[0], bytes):
            raise Message("bad argument #1 to 'decode' (string expected)")
        try:
            return self._to_lua(json.loads(a[0].decode("utf-8", "surrogateescape")))
        except json.JSONDecodeError as exc:
            raise Message(
                f"Expected value but found invalid token at character {exc.pos + 1}"
            ) from None
        except RecursionError:
            raise Message("Found too many nested data structures") from None

    def _to_lua(self, value: Any) -> Any:
        if value is None:
            return JSON_NULL
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return float(value) if abs(value) > 2**53 else value
        if isinstance(value, list):
            return self.rt.table_from([self._to_lua(x) for x in value])
        if isinstance(value, dict):
            return self.rt.table_from({self._to_lua(k): self._to_lua(x) for k, x in value.items()})
        return value


class RedisLib(Library):
    """The parts of Lua's ``redis`` table that can fail: Python callables (C functions to
    Lua), so that their errors name the script's line even in a tail call."""

    names = frozenset(("sha1hex", "log", "setresp", "set_repl"))

    def __init__(self, sha: str) -> None:
        self.sha = sha

    def sha1hex(self, *a: Any) -> bytes:
        if len(a) != 1:
            raise Raise(ErrorReply("ERR wrong number of arguments"))
        value = a[0]
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = b"%.14g" % value
        if not isinstance(value, bytes):
            raise Raise(ErrorReply("ERR wrong number of arguments"))
        return hashlib.sha1(value).hexdigest().encode()

    def log(self, *a: Any) -> None:
        if len(a) < 2:
            raise Raise(ErrorReply("ERR redis.log() requires two arguments or more."))
        level = a[0]
        if not isinstance(level, int | float) or isinstance(level, bool) or not 0 <= level <= 3:
            raise Raise(ErrorReply("ERR Invalid debug level."))
        words = [_text(w) if isinstance(w, bytes) else str(w) for w in a[1:]]
        log.log(_LOG_LEVELS[int(level)], "script %s: %s", self.sha, " ".join(words))

    def setresp(self, *a: Any) -> None:
        if len(a) != 1 or a[0] not in (2, 3):
            raise Raise(ErrorReply("ERR RESP version must be 2 or 3."))

    def set_repl(self, *a: Any) -> None:
        if len(a) != 1 or a[0] not in (0, 1, 2, 3):
            raise Raise(
                ErrorReply(
                    "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or"
                    " REPL_NONE."
                )
            )
