"""COMMAND and its subcommands: what clients and redis-cli learn about the command set.

Only commands pyxos implements are listed. Their facts (arity, flags, ACL categories, key
specs, subcommands, release, arguments) are Redis 7.0's (:mod:`pyxos.server.command_table`),
so a client that plans around them behaves as with Redis; the summaries are pyxos's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pyxos.kv.commands import COMMANDS, SUBCOMMANDS, CommandSpec, arity_error, check, lookup
from pyxos.kv.glob import compile_pattern
from pyxos.resp.replies import ErrorReply, Reply, RespSet, SimpleString, encode
from pyxos.server.command_table import DOCS as REDIS_DOCS
from pyxos.server.command_table import INFO as REDIS_INFO

__all__ = ["command_reply"]

SUMMARIES = {
    "append": "Append a value to a key's string",
    "auth": "Authenticate the connection",
    "bitcount": "Count set bits in a string",
    "bitop": "Bitwise operation between strings, stored in a key",
    "bitpos": "Find the first set or clear bit in a string",
    "blmove": "LMOVE, waiting for an element",
    "blpop": "Pop the first element of the first non-empty list, waiting for one",
    "brpop": "Pop the last element of the first non-empty list, waiting for one",
    "bzpopmax": "ZPOPMAX on the first non-empty sorted set, waiting for one",
    "bzpopmin": "ZPOPMIN on the first non-empty sorted set, waiting for one",
    "cas": "pyxos: replace a key's value only if it equals an expected value",
    "paxos": "pyxos: the cluster's members and leader (list, add, promote, remove, transfer)",
    "client": "Inspect and control client connections",
    "command": "Describe the commands this server implements",
    "config": "Read or change server parameters",
    "copy": "Copy a key's value and TTL to another key, perhaps in another database",
    "dbsize": "Number of keys in the selected database",
    "debug": "Refused: debugging commands are disabled",
    "decr": "Decrement an integer value by one",
    "decrby": "Decrement an integer value by a number",
    "del": "Delete keys",
    "discard": "Drop the commands queued since MULTI",
    "echo": "Return the given string",
    "eval": "Run a Lua script, replicated as the invocation",
    "eval_ro": "Run a read-only Lua script",
    "evalsha": "Run a cached Lua script by its SHA1",
    "evalsha_ro": "Run a cached read-only Lua script by its SHA1",
    "exec": "Apply the queued commands as one atomic log entry",
    "exists": "Count how many of the given keys exist",
    "expire": "Set a key's time to live in seconds",
    "expireat": "Set a key's expiry as a Unix time in seconds",
    "expiretime": "A key's expiry as a Unix time in seconds",
    "flushall": "Delete every key of every database",
    "flushdb": "Delete every key of the selected database",
    "get": "Get a key's value",
    "getbit": "Get one bit of a string",
    "getdel": "Get a key's value and delete it",
    "getex": "Get a key's value and change its expiry",
    "getrange": "Get a substring of a key's value",
    "getset": "Set a key's value, returning the old one",
    "hdel": "Delete hash fields",
    "hello": "Choose the protocol version, authenticate, name the connection",
    "hexists": "Whether a hash field exists",
    "hget": "Get a hash field",
    "hgetall": "Fields and values of a hash",
    "hincrby": "Increment a hash field by an integer",
    "hincrbyfloat": "Increment a hash field by a float",
    "hkeys": "Fields of a hash",
    "hlen": "Number of fields of a hash",
    "hmget": "Get several hash fields",
    "hmset": "Set fields of a hash (answers OK)",
    "hrandfield": "Random fields of a hash, drawn from the log position",
    "hscan": "Iterate a hash's fields with a cursor",
    "hset": "Set fields of a hash",
    "hsetnx": "Set a hash field only if it does not exist",
    "hstrlen": "Length of a hash field's value",
    "hvals": "Values of a hash",
    "incr": "Increment an integer value by one",
    "incrby": "Increment an integer value by a number",
    "incrbyfloat": "Increment a number value by a floating point number",
    "info": "Server information and statistics",
    "keys": "Keys matching a glob pattern",
    "lastsave": "Unix time of the last snapshot",
    "lcs": "Longest common subsequence of two keys' values",
    "lindex": "An element of a list by index",
    "linsert": "Insert before or after an element of a list",
    "llen": "Length of a list",
    "lmove": "Pop from one list and push onto another",
    "lpop": "Remove and return the first elements of a list",
    "lpos": "Positions of an element in a list",
    "lpush": "Prepend elements to a list",
    "lpushx": "Prepend to a list that exists",
    "lrange": "A range of a list",
    "lrem": "Remove elements equal to a value from a list",
    "lset": "Set a list element by index",
    "ltrim": "Keep only a range of a list",
    "memory": "Memory introspection",
    "mget": "Get the values of several keys",
    "move": "Move a key to another database",
    "mset": "Set several keys",
    "msetnx": "Set several keys only if none of them exists",
    "multi": "Start queueing a transaction",
    "object": "Inspect a key's value",
    "persist": "Remove a key's expiry",
    "pexpire": "Set a key's time to live in milliseconds",
    "pexpireat": "Set a key's expiry as a Unix time in milliseconds",
    "pexpiretime": "A key's expiry as a Unix time in milliseconds",
    "ping": "Check that the server answers",
    "psetex": "Set a key's value with a time to live in milliseconds",
    "pttl": "A key's time to live in milliseconds",
    "quit": "Close the connection",
    "randomkey": "A random key of the selected database",
    "readonly": "Refused: not a Redis Cluster",
    "readwrite": "Refused: not a Redis Cluster",
    "rename": "Rename a key",
    "renamenx": "Rename a key only if the new name is free",
    "reset": "Reset the connection to its initial state",
    "rpop": "Remove and return the last elements of a list",
    "rpoplpush": "Pop the tail of one list onto the head of another",
    "rpush": "Append elements to a list",
    "rpushx": "Append to a list that exists",
    "sadd": "Add members to a set",
    "scan": "Iterate over the keys with a cursor",
    "scard": "Number of members of a set",
    "script": "Manage the replicated script cache",
    "sdiff": "Difference of sets",
    "sdiffstore": "Store the difference of sets",
    "select": "Select a database, 0 to 15",
    "set": "Set a key's value, with options for existence and expiry",
    "setbit": "Set one bit of a string",
    "setex": "Set a key's value with a time to live in seconds",
    "setnx": "Set a key's value only if it does not exist",
    "setrange": "Overwrite part of a string at an offset",
    "sinter": "Intersection of sets",
    "sintercard": "Size of the intersection of sets",
    "sinterstore": "Store the intersection of sets",
    "sismember": "Whether a member is in a set",
    "smembers": "Members of a set",
    "smismember": "Whether each member is in a set",
    "smove": "Move a member between sets",
    "spop": "Remove and return random members, drawn from the log position",
    "srandmember": "Random members of a set",
    "srem": "Remove members from a set",
    "sscan": "Iterate a set's members with a cursor",
    "strlen": "Length of a key's value",
    "substr": "Get a substring of a key's value",
    "sunion": "Union of sets",
    "sunionstore": "Store the union of sets",
    "swapdb": "Swap two databases",
    "time": "The server's clock",
    "touch": "Count how many of the given keys exist",
    "ttl": "A key's time to live in seconds",
    "type": "The type of a key's value",
    "unlink": "Delete keys",
    "unwatch": "Forget the watched keys",
    "watch": "Abort the next EXEC if any of these keys changes",
    "zadd": "Add members to a sorted set or update their scores",
    "zcard": "Number of members of a sorted set",
    "zcount": "Members within a score range",
    "zdiffstore": "Store the difference of sorted sets",
    "zincrby": "Increment a member's score",
    "zinterstore": "Store the intersection of sorted sets",
    "zlexcount": "Members within a lexicographic range",
    "zmscore": "Scores of several members",
    "zpopmax": "Remove and return the highest scored members",
    "zpopmin": "Remove and return the lowest scored members",
    "zrandmember": "Random members of a sorted set",
    "zrange": "A range of a sorted set by rank, score or member",
    "zrangebylex": "Members within a lexicographic range",
    "zrangebyscore": "Members within a score range",
    "zrangestore": "Store a range of a sorted set",
    "zrank": "A member's rank, lowest score first",
    "zrem": "Remove members from a sorted set",
    "zremrangebylex": "Remove members within a lexicographic range",
    "zremrangebyrank": "Remove members within a rank range",
    "zremrangebyscore": "Remove members within a score range",
    "zrevrange": "A range by rank, highest score first",
    "zrevrangebylex": "Members within a lexicographic range, in reverse",
    "zrevrangebyscore": "Members within a score range, highest first",
    "zrevrank": "A member's rank, highest score first",
    "zscan": "Iterate a sorted set's members with a cursor",
    "zscore": "A member's score",
    "zunionstore": "Store the union of sorted sets",
}

_CAS_INFO: list[Reply] = [
    b"cas", 4, RespSet([SimpleString("write"), SimpleString("fast")]), 1, 1, 1,
    RespSet([SimpleString("@write"), SimpleString("@string"), SimpleString("@fast")]),
    RespSet([]),
    RespSet([{
        b"flags": RespSet([SimpleString("RW"), SimpleString("update")]),
        b"begin_search": {b"type": b"index", b"spec": {b"index": 1}},
        b"find_keys": {b"type": b"range", b"spec": {b"lastkey": 0, b"keystep": 1, b"limit": 0}},
    }]),
    RespSet([]),
]  # fmt: skip


def _paxos_row(name: str, arity: int, categories: tuple[str, ...]) -> list[Reply]:
    return [
        name.encode(),
        arity,
        RespSet([SimpleString("admin"), SimpleString("noscript"), SimpleString("loading")]),
        0,
        0,
        0,
        RespSet([SimpleString("@" + c) for c in categories]),
        RespSet([b"nondeterministic_output"]),
        RespSet([]),
        RespSet([]),
    ]


_ADMIN = ("admin", "slow", "dangerous")
_PAXOS_SUBS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("members", 2, ("slow",)),
    ("add", -4, _ADMIN),
    ("promote", 3, _ADMIN),
    ("remove", 3, _ADMIN),
    ("transfer", 3, _ADMIN),
    ("help", 2, ("slow",)),
)
_PAXOS_SUMMARIES = {
    "members": "Every member: id, peer address, role, caught up, leader mark",
    "add": "Add a node as a learner that votes once caught up (or stays one: LEARNER)",
    "promote": "Make a caught-up learner a voter",
    "remove": "Remove a node from the cluster",
    "transfer": "Hand leadership to another voter",
    "help": "Show helpful text about the different subcommands",
}
_PAXOS_INFO = _paxos_row("paxos", -2, _ADMIN)
_PAXOS_INFO[9] = [_paxos_row(f"paxos|{n}", a, c) for n, a, c in _PAXOS_SUBS]
INFO: dict[str, list[Reply]] = {**REDIS_INFO, "paxos": _PAXOS_INFO}
"""Redis's facts, and pyxos's own ``PAXOS`` (an admin command, as ``CLUSTER`` is)."""
DOCS: dict[str, dict[Reply, Reply]] = {
    **REDIS_DOCS,
    "paxos": {
        b"since": b"0.1.0",
        b"group": b"cluster",
        b"subcommands": {
            f"paxos|{n}".encode(): {
                b"summary": _PAXOS_SUMMARIES[n].encode(),
                b"since": b"0.1.0",
                b"group": b"cluster",
            }
            for n, _, _ in _PAXOS_SUBS
        },
    },
}
_HELP = [
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Describe every command this server implements.",
    "COUNT",
    "    Number of commands.",
    "INFO [<command-name> ...]",
    "    Describe the given commands (all without names).",
    "DOCS [<command-name> ...]",
    "    Documentation of the given commands (all without names).",
    "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
    "    Names of the commands, optionally filtered.",
    "GETKEYS <full-command>",
    "    The keys of a full command.",
    "GETKEYSANDFLAGS <full-command>",
    "    The keys of a full command and their flags.",
    "HELP",
    "    Print this help.",
]


def _names() -> list[str]:
    return sorted(spec.name for spec in COMMANDS.values())


def _info(spec: CommandSpec) -> list[Reply]:
    if spec.name == "cas":
        return _CAS_INFO
    row = list(INFO[spec.name])
    subs = SUBCOMMANDS.get(spec.name.encode())
    if subs is not None:
        # Only the subcommands pyxos has; Redis's set order.
        known = {sub.name for sub in subs.values()}
        row[9] = [r for r in row[9] if isinstance(r, list) and r[0].decode() in known]  # type: ignore[union-attr]
    return row


def _docs(spec: CommandSpec) -> dict[Reply, Reply]:
    doc: dict[Reply, Reply] = {b"summary": SUMMARIES.get(spec.name, "").encode()}
    facts = DOCS.get(spec.name, {b"since": b"0.1.0", b"group": b"string"})
    subs = SUBCOMMANDS.get(spec.name.encode())
    for key, value in facts.items():
        if key == b"subcommands" and isinstance(value, dict):
            known = {sub.name.encode() for sub in (subs or {}).values()}
            doc[key] = {k: v for k, v in value.items() if k in known}
        else:
            doc[key] = value
    return doc


def _lookup_all(names: Iterable[bytes]) -> list[CommandSpec | None]:
    out: list[CommandSpec | None] = []
    for raw in names:
        name = raw.lower()
        if b"|" in name:
            parent, _, sub = name.partition(b"|")
            out.append(SUBCOMMANDS.get(parent, {}).get(sub))
        else:
            out.append(lookup(name))
    return out


def _sub_info(spec: CommandSpec) -> list[Reply]:
    parent = spec.name.split("|")[0]
    for row in INFO[parent][9]:  # type: ignore[union-attr]
        if isinstance(row, list) and row[0] == spec.name.encode():
            return row
    return [spec.name.encode(), spec.arity, RespSet([]), 0, 0, 0, RespSet([]), RespSet([]),
            RespSet([]), RespSet([])]  # fmt: skip


def _reply(args: Sequence[bytes]) -> Reply:
    if not args:
        return [_info(COMMANDS[n.encode()]) for n in _names()]
    sub = args[0].lower()
    if sub == b"count":
        return len(COMMANDS)
    if sub == b"info":
        specs = _lookup_all(args[1:]) if len(args) > 1 else [COMMANDS[n.encode()] for n in _names()]
        return [None if s is None else (_sub_info(s) if "|" in s.name else _info(s)) for s in specs]
    if sub == b"docs":
        specs = _lookup_all(args[1:]) if len(args) > 1 else [COMMANDS[n.encode()] for n in _names()]
        return {s.name.encode(): _docs(s) for s in specs if s is not None and "|" not in s.name}
    if sub == b"list":
        return _list(args[1:])
    if sub in (b"getkeys", b"getkeysandflags"):
        return _getkeys(args[1:], with_flags=sub == b"getkeysandflags")
    return [SimpleString(line) for line in _HELP]


def _list(args: Sequence[bytes]) -> Reply:
    names = _names()
    if not args:
        return [n.encode() for n in names]
    if len(args) != 3 or args[0].lower() != b"filterby":
        return ErrorReply("ERR syntax error")
    kind, value = args[1].lower(), args[2]
    if kind == b"module":
        return []
    if kind == b"aclcat":
        wanted = "@" + value.decode("utf-8", "replace").lower()
        return [n.encode() for n in names if wanted in _info(COMMANDS[n.encode()])[6]]  # type: ignore[operator]
    if kind == b"pattern":
        match = compile_pattern(value)
        return [n.encode() for n in names if match(n.encode())]
    return ErrorReply("ERR syntax error")


def _getkeys(argv: Sequence[bytes], with_flags: bool) -> Reply:
    spec = lookup(argv[0])
    if spec is None:
        return ErrorReply("ERR Invalid command specified")
    checked = check(argv)
    if isinstance(checked, ErrorReply):
        return arity_error("command|getkeysandflags" if with_flags else "command|getkeys")
    keys = checked.keys(argv)
    name = checked.name
    if name in ("eval", "evalsha", "eval_ro", "evalsha_ro"):
        from pyxos.kv.commands import string2ll

        count = string2ll(argv[2])
        if count is None or count < 0 or count > len(argv) - 3:
            return ErrorReply("ERR Invalid arguments specified for command")
        keys = list(argv[3 : 3 + count])
    if not keys:
        return ErrorReply("ERR The command has no key arguments")
    if not with_flags:
        return list(keys)
    info = _sub_info(checked) if "|" in name else _info(checked)
    specs = info[8]
    flags = specs[0][b"flags"] if isinstance(specs, list) and specs else RespSet([])  # type: ignore[index,call-overload]
    return [[k, flags] for k in keys]


def command_reply(args: Sequence[bytes], protocol: int) -> bytes:
    """The reply to ``COMMAND args...``."""
    return encode(_reply(args), protocol)
