"""Which commands exist: each one's arity, kind (write, read or local) and key positions.

Arity and key positions are Redis 7's (COMMAND INFO) for every command pyxos implements.
:mod:`pyxos.kv.commands` routes each request by this table before anything is replicated,
and the state machine dispatches by it. Pure data and lookups, no state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyxos.kv.acl import acl_spec

__all__ = ["COMMANDS", "SUBCOMMANDS", "CommandKind", "CommandSpec", "lookup"]


class CommandKind(enum.Enum):
    """How a command is executed."""

    WRITE = "write"
    """Changes replicated state: must be proposed and applied through the log."""
    READ = "read"
    """Only reads replicated state: served by ``KVStateMachine.read`` after a read index."""
    LOCAL = "local"
    """Concerns only the connection (or the node): answered by the server, never logged."""
    INVALID = "invalid"
    """Unknown command or wrong arity: answer ``Classification.error`` and stop."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command, with Redis's conventions.

    ``arity`` counts the command name: ``2`` means exactly ``GET key``; a negative value
    ``-n`` means at least ``n`` words. ``first_key`` / ``last_key`` / ``step`` locate the
    keys in argv as in Redis's COMMAND output (``last_key == -1``: up to the last argument),
    so a future sharded or routed server can find them; all zero for keyless commands.

    ``untimed_argc``: a write with at most this many words cannot depend on the clock (a
    plain ``SET k v`` overwrites whatever was there), so the server does not stamp it with
    the time; 0 means always stamp. ``subcommands`` makes this a container command
    (``OBJECT ENCODING``...): each subcommand has a spec of its own named ``object|encoding``.
    """

    name: str
    arity: int
    kind: CommandKind
    first_key: int = 0
    last_key: int = 0
    step: int = 0
    untimed_argc: int = 0
    subcommands: tuple[CommandSpec, ...] = ()

    def arity_ok(self, argc: int) -> bool:
        """Whether ``argc`` words (including the name) satisfy the arity."""
        arity = self.arity
        return argc == arity if arity > 0 else argc >= -arity

    def keys(self, argv: Sequence[bytes]) -> list[bytes]:
        """The key arguments of ``argv`` (assumed to have valid arity)."""
        if self.first_key == 0:
            return []
        last = len(argv) + self.last_key if self.last_key < 0 else self.last_key
        return list(argv[self.first_key : last + 1 : self.step])


_W = CommandKind.WRITE
_R = CommandKind.READ
_L = CommandKind.LOCAL
_ALWAYS = 1 << 30
"""``untimed_argc`` of writes that never depend on the clock, whatever their arguments."""


def _subs(parent: str, kind: CommandKind, *subs: tuple[str, int, int]) -> tuple[CommandSpec, ...]:
    """Subcommand specs ``(name, arity, first_key)`` of a container command."""
    return tuple(
        CommandSpec(f"{parent}|{name}", arity, kind, key, key, 1 if key else 0)
        for name, arity, key in subs
    )


_SPECS = [
    # Replicated writes. Arity and key positions as in Redis 7 (COMMAND INFO).
    CommandSpec("set", -3, _W, 1, 1, 1, untimed_argc=3),
    CommandSpec("setnx", 3, _W, 1, 1, 1),
    CommandSpec("setex", 4, _W, 1, 1, 1),
    CommandSpec("psetex", 4, _W, 1, 1, 1),
    CommandSpec("getex", -2, _W, 1, 1, 1),
    CommandSpec("getset", 3, _W, 1, 1, 1),
    CommandSpec("getdel", 2, _W, 1, 1, 1),
    CommandSpec("del", -2, _W, 1, -1, 1),
    CommandSpec("unlink", -2, _W, 1, -1, 1),
    CommandSpec("incr", 2, _W, 1, 1, 1),
    CommandSpec("incrby", 3, _W, 1, 1, 1),
    CommandSpec("decr", 2, _W, 1, 1, 1),
    CommandSpec("decrby", 3, _W, 1, 1, 1),
    CommandSpec("mset", -3, _W, 1, -1, 2, untimed_argc=_ALWAYS),
    CommandSpec("msetnx", -3, _W, 1, -1, 2),
    CommandSpec("incrbyfloat", 3, _W, 1, 1, 1),
    CommandSpec("append", 3, _W, 1, 1, 1),
    CommandSpec("setbit", 4, _W, 1, 1, 1),
    CommandSpec("bitop", -4, _W, 2, -1, 1),
    CommandSpec("setrange", 4, _W, 1, 1, 1),
    CommandSpec("cas", 4, _W, 1, 1, 1),  # pyxos: CAS key expected new -> 1 swapped, 0 not
    CommandSpec("expire", -3, _W, 1, 1, 1),
    CommandSpec("pexpire", -3, _W, 1, 1, 1),
    CommandSpec("expireat", -3, _W, 1, 1, 1),
    CommandSpec("pexpireat", -3, _W, 1, 1, 1),
    CommandSpec("persist", 2, _W, 1, 1, 1),
    CommandSpec("rename", 3, _W, 1, 2, 1),
    CommandSpec("renamenx", 3, _W, 1, 2, 1),
    CommandSpec("copy", -3, _W, 1, 2, 1),
    CommandSpec("move", 3, _W, 1, 1, 1),
    CommandSpec("swapdb", 3, _W),
    CommandSpec("eval", -3, _W),
    CommandSpec("evalsha", -3, _W),
    CommandSpec("eval_ro", -3, _W),
    CommandSpec("evalsha_ro", -3, _W),
    CommandSpec(
        "script",
        -2,
        _W,
        subcommands=_subs(
            "script",
            _W,
            ("debug", 3, 0),
            ("exists", -3, 0),
            ("flush", -2, 0),
            ("help", 2, 0),
            ("kill", 2, 0),
            ("load", 3, 0),
        ),
    ),
    CommandSpec("flushdb", -1, _W, untimed_argc=_ALWAYS),
    CommandSpec("flushall", -1, _W, untimed_argc=_ALWAYS),
    # Reads of replicated state.
    CommandSpec("get", 2, _R, 1, 1, 1),
    CommandSpec("mget", -2, _R, 1, -1, 1),
    CommandSpec("exists", -2, _R, 1, -1, 1),
    CommandSpec("touch", -2, _R, 1, -1, 1),
    CommandSpec("strlen", 2, _R, 1, 1, 1),
    CommandSpec("getrange", 4, _R, 1, 1, 1),
    CommandSpec("substr", 4, _R, 1, 1, 1),
    CommandSpec("getbit", 3, _R, 1, 1, 1),
    CommandSpec("bitcount", -2, _R, 1, 1, 1),
    CommandSpec("bitpos", -3, _R, 1, 1, 1),
    CommandSpec("lcs", -3, _R, 1, 2, 1),
    CommandSpec("dbsize", 1, _R),
    CommandSpec("type", 2, _R, 1, 1, 1),
    CommandSpec("ttl", 2, _R, 1, 1, 1),
    CommandSpec("pttl", 2, _R, 1, 1, 1),
    CommandSpec("expiretime", 2, _R, 1, 1, 1),
    CommandSpec("pexpiretime", 2, _R, 1, 1, 1),
    CommandSpec("keys", 2, _R),
    CommandSpec("scan", -2, _R),
    CommandSpec("randomkey", 1, _R),
    CommandSpec(
        "object",
        -2,
        _R,
        subcommands=_subs(
            "object",
            _R,
            ("encoding", 3, 2),
            ("freq", 3, 2),
            ("idletime", 3, 2),
            ("refcount", 3, 2),
            ("help", 2, 0),
        ),
    ),
    CommandSpec(
        "memory", -2, _R, subcommands=_subs("memory", _R, ("usage", -3, 2), ("help", 2, 0))
    ),
    # Containers: hashes, lists, sets, sorted sets (pyxos.kv.values and the type modules).
    CommandSpec("hset", -4, _W, 1, 1, 1),
    CommandSpec("hsetnx", 4, _W, 1, 1, 1),
    CommandSpec("hmset", -4, _W, 1, 1, 1),
    CommandSpec("hdel", -3, _W, 1, 1, 1),
    CommandSpec("hincrby", 4, _W, 1, 1, 1),
    CommandSpec("hincrbyfloat", 4, _W, 1, 1, 1),
    CommandSpec("hget", 3, _R, 1, 1, 1),
    CommandSpec("hmget", -3, _R, 1, 1, 1),
    CommandSpec("hexists", 3, _R, 1, 1, 1),
    CommandSpec("hlen", 2, _R, 1, 1, 1),
    CommandSpec("hstrlen", 3, _R, 1, 1, 1),
    CommandSpec("hkeys", 2, _R, 1, 1, 1),
    CommandSpec("hvals", 2, _R, 1, 1, 1),
    CommandSpec("hgetall", 2, _R, 1, 1, 1),
    CommandSpec("hrandfield", -2, _R, 1, 1, 1),
    CommandSpec("hscan", -3, _R, 1, 1, 1),
    CommandSpec("lpush", -3, _W, 1, 1, 1),
    CommandSpec("rpush", -3, _W, 1, 1, 1),
    CommandSpec("lpushx", -3, _W, 1, 1, 1),
    CommandSpec("rpushx", -3, _W, 1, 1, 1),
    CommandSpec("lpop", -2, _W, 1, 1, 1),
    CommandSpec("rpop", -2, _W, 1, 1, 1),
    CommandSpec("lset", 4, _W, 1, 1, 1),
    CommandSpec("lrem", 4, _W, 1, 1, 1),
    CommandSpec("ltrim", 4, _W, 1, 1, 1),
    CommandSpec("linsert", 5, _W, 1, 1, 1),
    CommandSpec("lmove", 5, _W, 1, 2, 1),
    CommandSpec("rpoplpush", 3, _W, 1, 2, 1),
    CommandSpec("blpop", -3, _W, 1, -2, 1),
    CommandSpec("brpop", -3, _W, 1, -2, 1),
    CommandSpec("blmove", 6, _W, 1, 2, 1),
    CommandSpec("llen", 2, _R, 1, 1, 1),
    CommandSpec("lindex", 3, _R, 1, 1, 1),
    CommandSpec("lrange", 4, _R, 1, 1, 1),
    CommandSpec("lpos", -3, _R, 1, 1, 1),
    CommandSpec("sadd", -3, _W, 1, 1, 1),
    CommandSpec("srem", -3, _W, 1, 1, 1),
    CommandSpec("spop", -2, _W, 1, 1, 1),
    CommandSpec("smove", 4, _W, 1, 2, 1),
    CommandSpec("sinterstore", -3, _W, 1, -1, 1),
    CommandSpec("sunionstore", -3, _W, 1, -1, 1),
    CommandSpec("sdiffstore", -3, _W, 1, -1, 1),
    CommandSpec("smembers", 2, _R, 1, 1, 1),
    CommandSpec("sismember", 3, _R, 1, 1, 1),
    CommandSpec("smismember", -3, _R, 1, 1, 1),
    CommandSpec("scard", 2, _R, 1, 1, 1),
    CommandSpec("srandmember", -2, _R, 1, 1, 1),
    CommandSpec("sinter", -2, _R, 1, -1, 1),
    CommandSpec("sintercard", -3, _R, 0, 0, 0),
    CommandSpec("sunion", -2, _R, 1, -1, 1),
    CommandSpec("sdiff", -2, _R, 1, -1, 1),
    CommandSpec("sscan", -3, _R, 1, 1, 1),
    CommandSpec("zadd", -4, _W, 1, 1, 1),
    CommandSpec("zincrby", 4, _W, 1, 1, 1),
    CommandSpec("zrem", -3, _W, 1, 1, 1),
    CommandSpec("zrangestore", -5, _W, 1, 2, 1),
    CommandSpec("zremrangebyrank", 4, _W, 1, 1, 1),
    CommandSpec("zremrangebyscore", 4, _W, 1, 1, 1),
    CommandSpec("zremrangebylex", 4, _W, 1, 1, 1),
    CommandSpec("zpopmin", -2, _W, 1, 1, 1),
    CommandSpec("zpopmax", -2, _W, 1, 1, 1),
    CommandSpec("bzpopmin", -3, _W, 1, -2, 1),
    CommandSpec("bzpopmax", -3, _W, 1, -2, 1),
    CommandSpec("zunionstore", -4, _W, 1, 1, 1),
    CommandSpec("zinterstore", -4, _W, 1, 1, 1),
    CommandSpec("zdiffstore", -4, _W, 1, 1, 1),
    CommandSpec("zscore", 3, _R, 1, 1, 1),
    CommandSpec("zmscore", -3, _R, 1, 1, 1),
    CommandSpec("zrank", 3, _R, 1, 1, 1),
    CommandSpec("zrevrank", 3, _R, 1, 1, 1),
    CommandSpec("zcard", 2, _R, 1, 1, 1),
    CommandSpec("zcount", 4, _R, 1, 1, 1),
    CommandSpec("zlexcount", 4, _R, 1, 1, 1),
    CommandSpec("zrange", -4, _R, 1, 1, 1),
    CommandSpec("zrangebyscore", -4, _R, 1, 1, 1),
    CommandSpec("zrevrange", -4, _R, 1, 1, 1),
    CommandSpec("zrevrangebyscore", -4, _R, 1, 1, 1),
    CommandSpec("zrangebylex", -4, _R, 1, 1, 1),
    CommandSpec("zrevrangebylex", -4, _R, 1, 1, 1),
    CommandSpec("zscan", -3, _R, 1, 1, 1),
    CommandSpec("zrandmember", -2, _R, 1, 1, 1),
    # Connection / node commands the server answers itself. Listed here for their arity
    # and so that classify() can route them; the state machine refuses them.
    CommandSpec("ping", -1, _L),
    CommandSpec("echo", 2, _L),
    CommandSpec("hello", -1, _L),
    CommandSpec("auth", -2, _L),
    CommandSpec("select", 2, _L),
    CommandSpec(
        "command",
        -1,
        _L,
        subcommands=_subs(
            "command",
            _L,
            ("count", 2, 0),
            ("docs", -2, 0),
            ("getkeys", -3, 0),
            ("getkeysandflags", -3, 0),
            ("help", 2, 0),
            ("info", -2, 0),
            ("list", -2, 0),
        ),
    ),
    CommandSpec("info", -1, _L),
    CommandSpec("quit", -1, _L),
    CommandSpec("reset", 1, _L),
    CommandSpec("readonly", 1, _L),
    CommandSpec("readwrite", 1, _L),
    CommandSpec("time", 1, _L),
    CommandSpec("lastsave", 1, _L),
    CommandSpec(  # pyxos: membership and leadership (pyxos.server.paxos_commands)
        "paxos",
        -2,
        _L,
        subcommands=_subs(
            "paxos",
            _L,
            ("members", 2, 0),
            ("add", -4, 0),
            ("promote", 3, 0),
            ("remove", 3, 0),
            ("transfer", 3, 0),
            ("help", 2, 0),
        ),
    ),
    CommandSpec("debug", -2, _L),
    CommandSpec("multi", 1, _L),
    CommandSpec("exec", 1, _L),
    CommandSpec("discard", 1, _L),
    CommandSpec("watch", -2, _L, 1, -1, 1),
    CommandSpec("unwatch", 1, _L),
    CommandSpec(
        "client",
        -2,
        _L,
        subcommands=_subs(
            "client",
            _L,
            ("caching", 3, 0),
            ("getname", 2, 0),
            ("getredir", 2, 0),
            ("help", 2, 0),
            ("id", 2, 0),
            ("info", 2, 0),
            ("kill", -3, 0),
            ("list", -2, 0),
            ("no-evict", 3, 0),
            ("pause", -3, 0),
            ("reply", 3, 0),
            ("setname", 3, 0),
            ("tracking", -3, 0),
            ("trackinginfo", 2, 0),
            ("unblock", -3, 0),
            ("unpause", 2, 0),
        ),
    ),
    CommandSpec(
        "config",
        -2,
        _L,
        subcommands=_subs(
            "config",
            _L,
            ("get", -3, 0),
            ("set", -4, 0),
            ("resetstat", 2, 0),
            ("rewrite", 2, 0),
            ("help", 2, 0),
        ),
    ),
    acl_spec(CommandSpec, _L),
]

COMMANDS: Mapping[bytes, CommandSpec] = {spec.name.encode(): spec for spec in _SPECS}
"""Every known command, keyed by lower-case name."""

SUBCOMMANDS: Mapping[bytes, Mapping[bytes, CommandSpec]] = {
    spec.name.encode(): {sub.name.split("|")[1].encode(): sub for sub in spec.subcommands}
    for spec in _SPECS
    if spec.subcommands
}
"""Subcommands of each container command, keyed by lower-case names."""


def lookup(name: bytes) -> CommandSpec | None:
    """The spec of a command name in any letter case, or ``None`` if unknown."""
    spec = COMMANDS.get(name)
    if spec is None:
        spec = COMMANDS.get(name.lower())
    return spec
