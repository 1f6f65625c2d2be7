"""Running one Lua script deterministically, with Redis 7.0's API and conversion rules.

Each script runs in a Lua 5.1 state of its own (``lupa.lua51``, the Lua version Redis embeds),
created for that one call and thrown away after it. So no script can leave anything behind
for the next one, and a replica that restored a snapshot runs every later script exactly as
the replicas that ran all the earlier ones: same memory accounting, same table order, same
garbage collection. Creating a state costs tens of microseconds; the environment
(:file:`lua_prelude.lua`) is compiled once and loaded as bytecode.

Bounded: the state may allocate at most ``max_memory`` bytes, and the script may run at most
``max_instructions`` Lua instructions (counted by a debug hook that pcall and coroutines
cannot escape); both limits end the script with an error reply, on every replica alike, at
the same point. Writes it made before that stay, as after any script error in Redis.

Conversions follow Redis (``script_lua.c``): a Lua number becomes an integer (truncated), a
string a bulk string, ``true`` 1, ``false`` and ``nil`` a null, a table an array up to its
first nil, ``{err=...}`` an error and ``{ok=...}`` a status; command replies become Lua values
the other way round (a null is ``false``, a status ``{ok=...}``, an error ``{err=...}``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Callable
from importlib import resources
from typing import Any

from lupa import lua51

from pyxos.kv.reply import ErrorReply, Reply, SimpleString

__all__ = ["ScriptError", "compile_check", "run_script"]

log = logging.getLogger("pyxos.lua")

LLONG_MIN, LLONG_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 500
_LOG_LEVELS = (logging.DEBUG, logging.DEBUG, logging.INFO, logging.WARNING)
_JSON_NULL = object()
"""``cjson.null``: what JSON's null decodes to (a userdata in Lua, as in Redis)."""


class ScriptError(Exception):
    """A script that cannot run (does not compile); carries Redis's error reply."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(reply)
        self.reply = reply


class _Raise(Exception):
    """redis.call's error reply, raised through Lua as a Python exception."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(reply)
        self.reply = reply


class _Message(Exception):
    """A library error (cjson, bit): Lua reports it as a message at the script's line."""


class _Library:
    """A Lua library implemented in Python (bit, cjson): its public methods, nothing else."""

    names: frozenset[str] = frozenset()


def _attribute_filter(obj: object, name: object, is_setting: bool) -> object:
    # Scripts see Python objects only as the functions and libraries handed to them;
    # anything else (``__class__``, ``__globals__``...) would reach the interpreter.
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if not is_setting and isinstance(obj, _Library) and name in type(obj).names:
        return name
    raise AttributeError("not accessible from a script")


def _new_runtime(max_memory: int | None) -> Any:
    return lua51.LuaRuntime(
        encoding=None,
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        max_memory=max_memory,
        attribute_filter=_attribute_filter,
    )


def _load_prelude() -> bytes:
    source = resources.files("pyxos.kv").joinpath("lua_prelude.lua").read_bytes()
    rt = _new_runtime(None)
    dump = rt.eval("function(src) return string.dump(assert(loadstring(src, '=pyxos'))) end")
    data: bytes = dump(source)
    return data


_PRELUDE = _load_prelude()


def compile_check(body: bytes) -> None:
    """Raise :class:`ScriptError` with Redis's message when ``body`` does not compile."""
    rt = _new_runtime(None)
    try:
        rt.compile(body, name="@user_script")
    except lua51.LuaSyntaxError as exc:
        raise ScriptError(
            ErrorReply(f"ERR Error compiling script (new function): {_text(exc.args[0])}")
        ) from None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


# --- Redis replies to Lua values ---------------------------------------------------------------


def _to_lua(rt: Any, value: Reply, depth: int = 0) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, bytes | int):
        return value
    if value is None:
        return False
    if isinstance(value, SimpleString):
        return rt.table_from({b"ok": value.encode("utf-8", "surrogateescape")})
    if isinstance(value, ErrorReply):
        return rt.table_from({b"err": value.encode("utf-8", "surrogateescape")})
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, dict):
        flat: list[Any] = []
        for k, v in value.items():
            flat += [_to_lua(rt, k, depth + 1), _to_lua(rt, v, depth + 1)]
        return rt.table_from(flat)
    if isinstance(value, list | tuple):
        return rt.table_from([_to_lua(rt, v, depth + 1) for v in value])
    return False


# --- Lua values to Redis replies ---------------------------------------------------------------


def _integer(number: float) -> int:
    """C's ``(long long)`` cast as x86-64 does it: truncation, LLONG_MIN when out of range."""
    if math.isnan(number) or not LLONG_MIN <= number < 2**63:
        return LLONG_MIN
    return int(number)


def _from_lua(value: Any, depth: int = 0) -> Reply:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return 1 if value else None
    if isinstance(value, int):
        return value if LLONG_MIN <= value <= LLONG_MAX else LLONG_MIN
    if isinstance(value, float):
        return _integer(value)
    if lua51.lua_type(value) != "table":
        return None
    if depth > _MAX_DEPTH:
        return ErrorReply("ERR reached lua stack limit")
    err = value[b"err"]
    if isinstance(err, bytes):
        return ErrorReply(_text(err))
    ok = value[b"ok"]
    if isinstance(ok, bytes):
        return SimpleString(_text(ok))
    items: list[Reply] = []
    index = 1
    while True:
        item = value[index]
        if item is None:
            return items
        items.append(_from_lua(item, depth + 1))
        index += 1


def _error_reply(err: Any, sha: str) -> ErrorReply:
    """The reply for a script that raised: Redis's ``-<msg> script: <sha>, on <src>:<line>.``"""
    if lua51.lua_type(err) != "table":
        text = _text(err) if err is not None else "unknown error"
        if "not enough memory" in text:
            return ErrorReply("ERR script ran out of memory (the Lua memory limit was reached)")
        return ErrorReply(f"ERR Error running script {sha}, {text[:100]}")
    msg, source, line = err[b"err"], err[b"source"], err[b"line"]
    text = _text(msg) if isinstance(msg, bytes) else "ERR unknown error"
    if source is not None and line is not None:
        text += f" script: {sha}, on {_text(source)}:{int(line)}."
    return ErrorReply(text)


# --- the helpers the prelude calls -------------------------------------------------------------


def _bit_arg(args: tuple[Any, ...], i: int, name: str) -> int:
    v = args[i] if i < len(args) else None
    if isinstance(v, bytes):
        try:
            v = float(v)
        except ValueError:
            v = None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise _Message(f"bad argument #{i + 1} to '{name}' (number expected, got {_type(v)})")
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


class _Bit(_Library):
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
    if v is None or v is _JSON_NULL:
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


class _Json(_Library):
    """lua-cjson's encode and decode, with its rules for arrays, sparse tables and errors."""

    names = frozenset(("encode", "decode", "null"))
    null = _JSON_NULL

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    def encode(self, *a: Any) -> bytes:
        if len(a) != 1:
            raise _Message("bad argument #1 to 'encode' (expected 1 argument)")
        try:
            return _json_encode(a[0])
        except ValueError as exc:
            raise _Message(str(exc)) from None

    def decode(self, *a: Any) -> Any:
        if len(a) != 1 or not isinstance(a[0], bytes):
            raise _Message("bad argument #1 to 'decode' (string expected)")
        try:
            return self._to_lua(json.loads(a[0].decode("utf-8", "surrogateescape")))
        except json.JSONDecodeError as exc:
            raise _Message(
                f"Expected value but found invalid token at character {exc.pos + 1}"
            ) from None
        except RecursionError:
            raise _Message("Found too many nested data structures") from None

    def _to_lua(self, value: Any) -> Any:
        if value is None:
            return _JSON_NULL
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


class _RedisLib(_Library):
    """The parts of Lua's ``redis`` table that can fail: Python callables (C functions to
    Lua), so that their errors name the script's line even in a tail call."""

    names = frozenset(("sha1hex", "log", "setresp", "set_repl"))

    def __init__(self, sha: str) -> None:
        self.sha = sha

    def sha1hex(self, *a: Any) -> bytes:
        if len(a) != 1:
            raise _Raise(ErrorReply("ERR wrong number of arguments"))
        value = a[0]
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = b"%.14g" % value
        if not isinstance(value, bytes):
            raise _Raise(ErrorReply("ERR wrong number of arguments"))
        return hashlib.sha1(value).hexdigest().encode()

    def log(self, *a: Any) -> None:
        if len(a) < 2:
            raise _Raise(ErrorReply("ERR redis.log() requires two arguments or more."))
        level = a[0]
        if not isinstance(level, int | float) or isinstance(level, bool) or not 0 <= level <= 3:
            raise _Raise(ErrorReply("ERR Invalid debug level."))
        words = [_text(w) if isinstance(w, bytes) else str(w) for w in a[1:]]
        log.log(_LOG_LEVELS[int(level)], "script %s: %s", self.sha, " ".join(words))

    def setresp(self, *a: Any) -> None:
        if len(a) != 1 or a[0] not in (2, 3):
            raise _Raise(ErrorReply("ERR RESP version must be 2 or 3."))

    def set_repl(self, *a: Any) -> None:
        if len(a) != 1 or a[0] not in (0, 1, 2, 3):
            raise _Raise(
                ErrorReply(
                    "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or"
                    " REPL_NONE."
                )
            )


_BIT = _Bit()


def _command_args(args: tuple[Any, ...]) -> list[bytes]:
    """redis.call's arguments as command words: strings as they are, numbers as ``%.17g``."""
    if not args:
        raise _Raise(ErrorReply("ERR Please specify at least one argument for this redis lib call"))
    words = []
    for a in args:
        if isinstance(a, bytes):
            words.append(a)
        elif isinstance(a, int | float) and not isinstance(a, bool):
            words.append(b"%.17g" % float(a))
        else:
            raise _Raise(
                ErrorReply("ERR Lua redis lib command arguments must be strings or integers")
            )
    return words


def run_script(
    body: bytes,
    sha: str,
    keys: list[bytes],
    args: list[bytes],
    call: Callable[[list[bytes]], tuple[bool, Reply]],
    seed: int,
    max_memory: int,
    max_instructions: int,
) -> Reply:
    """Run one script; its reply. ``call`` runs a redis.call and says whether it failed.

    Raises:
        ScriptError: the script does not compile.
    """
    rt = _new_runtime(max_memory)
    rng = random.Random(seed)

    def py_call(*args: Any) -> Any:
        failed, reply = call(_command_args(args))
        if failed:
            assert isinstance(reply, ErrorReply)
            raise _Raise(reply)
        return _to_lua(rt, reply)

    def py_pcall(*args: Any) -> Any:
        try:
            return _to_lua(rt, call(_command_args(args))[1])
        except _Raise as exc:
            return _to_lua(rt, exc.reply)

    def py_unwrap(e: Any, uncaught: bool) -> Any:
        if isinstance(e, _Raise):
            return _to_lua(rt, e.reply) if uncaught else str(e.reply).encode()
        if isinstance(e, _Message):
            return str(e).encode()
        if isinstance(e, BaseException):
            return _to_lua(rt, ErrorReply(f"ERR {type(e).__name__}: {e}"))
        return None

    def py_random(nargs: int, a: Any = None) -> Any:
        if nargs == -1:
            rng.seed(int(a) if isinstance(a, int | float) else 0)
            return None
        return rng.random()

    try:
        internals = rt.execute(
            _PRELUDE,
            py_call,
            py_pcall,
            py_unwrap,
            _RedisLib(sha),
            py_random,
            _BIT,
            _Json(rt),
            max_instructions,
            rt.table_from(keys),
            rt.table_from(args),
        )
        try:
            function = rt.compile(body, name="@user_script")
        except lua51.LuaSyntaxError as exc:
            raise ScriptError(
                ErrorReply(f"ERR Error compiling script (new function): {_text(exc.args[0])}")
            ) from None
        ok, result = internals[b"run"](function)
        if not ok:
            return _error_reply(result, sha)
        return _from_lua(result)
    except lua51.LuaMemoryError:
        return ErrorReply("ERR script ran out of memory (the Lua memory limit was reached)")
    except lua51.LuaError as exc:
        return ErrorReply(f"ERR Error running script {sha}, {_text(exc.args[0])[:100]}")
