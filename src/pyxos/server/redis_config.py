"""CONFIG GET / SET / RESETSTAT / REWRITE for one node.

CONFIG SET changes what it names or refuses, never answers +OK for nothing: a parameter
pyxos can apply (``maxclients``, ``requirepass``) takes effect on this node at once; setting
any other known parameter to the value it already has is accepted (nothing needs to
change); anything else is refused with Redis's own error for an unknown parameter, an
immutable one, or one whose value cannot be parsed. Settings are per node and are not
replicated or saved (as without a config file, CONFIG REWRITE says so).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pyxos.kv.acl import default_rules
from pyxos.kv.commands import string2ll
from pyxos.kv.glob import compile_pattern
from pyxos.resp.replies import OK, ErrorReply, Reply, SimpleString, encode

if TYPE_CHECKING:
    from pyxos.server.port_state import ClientPort

__all__ = ["RedisConfig"]

_FIXED = {
    "appendonly": "yes",
    "appendfsync": "always",
    "save": "",
    "maxmemory": "0",
    "maxmemory-policy": "noeviction",
    "maxmemory-samples": "5",
    "timeout": "0",
    "tcp-keepalive": "300",
    "hz": "10",
    "loglevel": "notice",
    "dbfilename": "dump.rdb",
    "notify-keyspace-events": "",
    "slowlog-log-slower-than": "10000",
    "slowlog-max-len": "128",
    "lua-time-limit": "5000",
    "busy-reply-threshold": "5000",
    "lazyfree-lazy-expire": "no",
    "lazyfree-lazy-eviction": "no",
    "latency-tracking": "no",
    "protected-mode": "no",
    "io-threads": "1",
    "replica-read-only": "yes",
    "cluster-enabled": "no",
}
_IMMUTABLE = ("databases", "port", "bind", "dir", "enable-debug-command", "cluster-enabled")


_HELP = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value> (this node only).",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Refused: pyxos nodes take their settings from the command line.",
    "HELP",
    "    Print this help.",
]


def _failed(name: str, why: str) -> ErrorReply:
    return ErrorReply(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")


class RedisConfig:
    """The parameters of one node's client port."""

    def __init__(self, server: ClientPort) -> None:
        self.server = server

    def values(self) -> dict[str, str]:
        server = self.server
        password = server.password
        values = {
            "databases": "16",
            "port": str(server.port),
            "bind": server.host,
            "dir": str(server.node.config.data_dir),
            "enable-debug-command": "no",
            "maxclients": str(server.limits.max_clients),
            "requirepass": password.decode("utf-8", "surrogateescape") if password else "",
            "proto-max-bulk-len": str(server.limits.max_bulk_len),
        }
        values.update(_FIXED)
        return values

    def command(self, args: Sequence[bytes], protocol: int) -> bytes:
        return encode(self._reply(args), protocol)

    def _reply(self, args: Sequence[bytes]) -> Reply:
        sub = args[0].lower()
        if sub == b"get":
            values = self.values()
            out: dict[Reply, Reply] = {}
            for pattern in args[1:]:
                match = compile_pattern(pattern.lower())
                for name in sorted(values):
                    if match(name.encode()) and name.encode() not in out:
                        out[name.encode()] = values[name].encode()
            return out
        if sub == b"set":
            return self._set(args[1:])
        if sub == b"resetstat":
            self.server.stats.reset()
            return OK
        if sub == b"rewrite":
            return ErrorReply("ERR The server is running without a config file")
        return [SimpleString(line) for line in _HELP]

    def _set(self, args: Sequence[bytes]) -> Reply:
        if len(args) % 2:
            return ErrorReply("ERR wrong number of arguments for 'config|set' command")
        values = self.values()
        changes: list[Callable[[], None]] = []
        seen: set[str] = set()
        for raw_name, raw_value in zip(args[::2], args[1::2], strict=True):
            name = raw_name.decode("utf-8", "surrogateescape").lower()
            value = raw_value.decode("utf-8", "surrogateescape")
            if name not in values:
                return ErrorReply(
                    "ERR Unknown option or number of arguments for CONFIG SET - "
                    f"'{raw_name.decode('utf-8', 'surrogateescape')}'"
                )
            if name in seen:
                return _failed(name, "duplicate parameter")
            seen.add(name)
            if name in _IMMUTABLE:
                return _failed(name, "can't set immutable config")
            change = self._change(name, raw_value)
            if isinstance(change, ErrorReply):
                return change
            if change is not None:
                changes.append(change)
            elif value != values[name]:
                return _failed(name, f"pyxos cannot change it (it stays '{values[name]}')")
        for change in changes:  # all or nothing, as in Redis 7
            change()
        return OK

    def _change(self, name: str, value: bytes) -> Callable[[], None] | ErrorReply | None:
        server = self.server
        if name == "maxclients":
            n = string2ll(value)
            if n is None:
                return _failed(name, "argument couldn't be parsed into an integer")
            if n < 1:
                return _failed(name, "argument must be between 1 and 2147483647 inclusive")
            limits = dataclasses.replace(server.limits, max_clients=n)
            return lambda: setattr(server, "limits", limits)
        if name == "requirepass":
            return lambda: set_default_password(server, value or None)
        return None


def set_default_password(server: ClientPort, password: bytes | None) -> None:
    """CONFIG SET requirepass: this node's base ``default`` user gets the new password (a
    ``default`` user set with ACL SETUSER is replicated and stays as it was set)."""
    server.password = password or None
    table = server.kv.acl
    table.configure(table.catalog, {**table.base, b"default": default_rules(server.password)})
