"""Connection and node commands the server answers itself: PING, ECHO, AUTH, HELLO, SELECT,
INFO, CONFIG, COMMAND, DEBUG, TIME, LASTSAVE, READONLY, READWRITE, RESET, QUIT.

None of these touch the replicated state, so none goes through the log. AUTH checks the
user and password against this node's copy of the replicated user table
(:mod:`pyxos.kv.acl`). Replies and errors are Redis 7.0's (checked against a real
redis-server in the tests).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pyxos.kv.commands import string2ll
from pyxos.kv.keyspace import NUM_DBS
from pyxos.server.command_info import command_reply
from pyxos.server.connection_base import (
    EMPTY_ARRAY,
    OK,
    PONG,
    SYNTAX,
    ConnectionBase,
    Reply_,
    arg_text,
    bulk,
    error,
)
from pyxos.server.info import REDIS_VERSION, info_text

__all__ = ["LocalCommands"]

WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
NO_PASSWORD = (
    b"-ERR AUTH <password> called without any password configured for the default user."
    b" Are you sure your configuration is correct?\r\n"
)
HELLO_NOAUTH = (
    b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the"
    b" HELLO AUTH <user> <pass> option can be used to authenticate the client and"
    b" select the RESP protocol version at the same time\r\n"
)
DEBUG_REFUSED = error(
    'ERR DEBUG command not allowed. If the enable-debug-command option is set to "local",'
    " you can run it from a local connection, otherwise you need to set this option in the"
    " configuration file, and then restart the server."
)
NO_CLUSTER = error("ERR This instance has cluster support disabled")


class LocalCommands(ConnectionBase):
    """The connection commands, as a mixin of the connection."""

    def c_ping(self, argv: Sequence[bytes]) -> bytes:
        if len(argv) > 2:
            return b"-ERR wrong number of arguments for 'ping' command\r\n"
        return bulk(argv[1]) if len(argv) == 2 else PONG

    def c_echo(self, argv: Sequence[bytes]) -> bytes:
        return bulk(argv[1])

    def c_quit(self, argv: Sequence[bytes]) -> bytes:
        self.closing = True
        return OK

    def c_auth(self, argv: Sequence[bytes], wait: bool = True) -> Reply_:
        args = argv[1:]
        if len(args) > 2:
            return SYNTAX
        if wait:
            # Users are replicated: answer once this node has applied every change
            # acknowledged before now, so that a user just created elsewhere can log in and
            # one just deleted (or given a new password) cannot.
            return self.after_read_index(lambda: self.c_auth(argv, False))
        table = self.server.kv.acl
        if len(args) == 1:
            default = table.get(b"default")
            if default is not None and default.nopass:
                return NO_PASSWORD
            args = [b"default", args[0]]
        if not table.authenticate(args[0], args[1]):
            return WRONGPASS
        self.login(args[0])
        return OK

    def c_hello(self, argv: Sequence[bytes], wait: bool = True) -> Reply_:
        args = argv[1:]
        protocol = self.protocol
        i = 0
        if args:
            version = string2ll(args[0])
            if version is None:
                return b"-ERR Protocol version is not an integer or out of range\r\n"
            if version not in (2, 3):
                return b"-NOPROTO unsupported protocol version\r\n"
            protocol = version
            i = 1
        name: bytes | None = None
        while i < len(args):
            opt = args[i].lower()
            if opt == b"auth" and i + 2 < len(args):
                if wait:  # as AUTH: with every acknowledged change to users applied
                    return self.after_read_index(lambda: self.c_hello(argv, False))
                if not self.server.kv.acl.authenticate(args[i + 1], args[i + 2]):
                    return WRONGPASS
                self.login(args[i + 1])
                i += 3
            elif opt == b"setname" and i + 1 < len(args):
                name = args[i + 1]
                if any(c < 0x21 or c > 0x7E for c in name):
                    return error(
                        "ERR Client names cannot contain spaces, newlines or special characters."
                    )
                i += 2
            else:
                return error(f"ERR Syntax error in HELLO option '{arg_text(args[i])}'")
        if not self.authenticated and self.server.kv.acl.default_requires_auth():
            return HELLO_NOAUTH
        if name is not None:
            self.name = name
        self.protocol = protocol
        fields: list[tuple[bytes, bytes]] = [
            (b"server", bulk(b"redis")),
            (b"version", bulk(REDIS_VERSION.encode())),
            (b"proto", b":%d\r\n" % protocol),
            (b"id", b":%d\r\n" % self.id),
            (b"mode", bulk(b"standalone")),
            (b"role", bulk(b"master")),
            (b"modules", EMPTY_ARRAY),
        ]
        head = b"%%%d\r\n" % len(fields) if protocol == 3 else b"*%d\r\n" % (2 * len(fields))
        return head + b"".join(bulk(k) + v for k, v in fields)

    def c_select(self, argv: Sequence[bytes]) -> bytes:
        index = string2ll(argv[1])
        if index is None or not -(2**31) <= index < 2**31:
            return b"-ERR value is not an integer or out of range\r\n"
        if not 0 <= index < NUM_DBS:
            return b"-ERR DB index is out of range\r\n"
        self.db = index
        return OK

    def c_info(self, argv: Sequence[bytes]) -> bytes:
        text = info_text(self.node, self.server, [arg_text(a) for a in argv[1:]])
        return self.encode_verbatim(text.encode())

    def encode_verbatim(self, text: bytes) -> bytes:
        if self.protocol == 3:
            body = b"txt:" + text
            return b"=%d\r\n%s\r\n" % (len(body), body)
        return bulk(text)

    def c_command(self, argv: Sequence[bytes]) -> bytes:
        return command_reply(argv[1:], self.protocol)

    def c_config(self, argv: Sequence[bytes]) -> bytes:
        return self.server.config.command(argv[1:], self.protocol)

    def c_debug(self, argv: Sequence[bytes]) -> bytes:
        return DEBUG_REFUSED

    def c_time(self, argv: Sequence[bytes]) -> bytes:
        now = time.time_ns() // 1000
        secs, usecs = divmod(now, 1_000_000)
        return self.encode([b"%d" % secs, b"%d" % usecs])

    def c_lastsave(self, argv: Sequence[bytes]) -> bytes:
        return b":%d\r\n" % self.server.last_save

    def c_readonly(self, argv: Sequence[bytes]) -> bytes:
        return NO_CLUSTER

    c_readwrite = c_readonly

    def c_reset(self, argv: Sequence[bytes]) -> bytes:
        self.multi = None
        self.drop_watch()
        self.protocol = 2
        self.db = 0
        self.name = b""
        self.reply_off = False
        self.skip_replies = 0
        self.quiet = False
        self.no_evict = False
        self.logout()
        return b"+RESET\r\n"
