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

import math
import random
from collections.abc import Callable
from importlib import resources
from typing import Any

from lupa import lua51

from pyxos.kv.lua_libs import Bit, Json, Message, Raise, RedisLib, attribute_filter
from pyxos.resp.replies import ErrorReply, Reply, SimpleString

__all__ = ["ScriptError", "compile_check", "run_script"]


LLONG_MIN, LLONG_MAX = -(2**63), 2**63 - 1
_MAX_DEPTH = 500


class ScriptError(Exception):
    """A script that cannot run (does not compile); carries Redis's error reply."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(reply)
        self.reply = reply


def _new_runtime(max_memory: int | None) -> Any:
    return lua51.LuaRuntime(
        encoding=None,
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        max_memory=max_memory,
        attribute_filter=attribute_filter,
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


_BIT = Bit()


def _command_args(args: tuple[Any, ...]) -> list[bytes]:
    """redis.call's arguments as command words: strings as they are, numbers as ``%.17g``."""
    if not args:
        raise Raise(ErrorReply("ERR Please specify at least one argument for this redis lib call"))
    words = []
    for a in args:
        if isinstance(a, bytes):
            words.append(a)
        elif isinstance(a, int | float) and not isinstance(a, bool):
            words.append(b"%.17g" % float(a))
        else:
            raise Raise(
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
            raise Raise(reply)
        return _to_lua(rt, reply)

    def py_pcall(*args: Any) -> Any:
        try:
            return _to_lua(rt, call(_command_args(args))[1])
        except Raise as exc:
            return _to_lua(rt, exc.reply)

    def py_unwrap(e: Any, uncaught: bool) -> Any:
        if isinstance(e, Raise):
            return _to_lua(rt, e.reply) if uncaught else str(e.reply).encode()
        if isinstance(e, Message):
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
            RedisLib(sha),
            py_random,
            _BIT,
            Json(rt),
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
