"""ACL and its subcommands on a client connection, and the server's side of the user table.

ACL SETUSER and ACL DELUSER change replicated state, so they go through the log (and apply
in :mod:`pyxos.kv.acl`). Before proposing, ``>password`` and ``<password`` are replaced by
the ``#hash`` and ``!hash`` rules that do the same: no password reaches the log, a snapshot
or another node. ACL LIST, USERS, GETUSER and DRYRUN answer from this node's table after a
read index, so they see every change acknowledged before they were sent. Replies and errors
are Redis 7.0's.

:func:`attach` installs the command catalog and this node's base users in the table and
keeps every connection's permissions current: when a user changes, the connections
authenticated as it get its new permissions; when it is deleted, they are closed.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence

from pyxos.kv import encode_request
from pyxos.kv.acl import AclTable, default_rules
from pyxos.kv.acl_describe import describe_channels, describe_commands, describe_keys, flag_names
from pyxos.kv.acl_rules import CATEGORIES, hash_password
from pyxos.kv.commands import COMMANDS, SUBCOMMANDS, string2ll
from pyxos.resp.replies import Reply, RespSet, SimpleString
from pyxos.runtime.errors import PyxosError
from pyxos.server.acl_catalog import arity, catalog
from pyxos.server.acl_check import permissions
from pyxos.server.acl_file import load_acl_file
from pyxos.server.connection_base import (
    OK,
    ConnectionBase,
    Reply_,
    ServerPort,
    arg_text,
    bulk,
    error,
)

__all__ = ["AclConnectionCommands", "attach"]

NO_ACL_FILE = error(
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify"
    " users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a"
    " Redis configuration file set) in order to store users in the Redis configuration."
)
ACL_FILE_AT_START = error(
    "ERR pyxos reads the ACL file at start only: users are replicated state, change them"
    " with ACL SETUSER and ACL DELUSER"
)
_HELP = [
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
]


def attach(server: ServerPort) -> None:
    """Install the catalog and this node's base users in ``server.kv.acl``, and follow its
    changes on ``server``'s connections."""
    table = server.kv.acl
    base = {b"default": default_rules(server.password)}
    if server.aclfile is not None:
        base.update(load_acl_file(server.aclfile))
    table.configure(catalog(), base)
    ref = weakref.ref(server)

    def changed(deleted: frozenset[bytes]) -> None:
        live = ref()
        if live is None:
            table.listeners.remove(changed)
            return
        for conn in live.connections():
            if isinstance(conn, AclConnectionCommands):
                conn.user_changed(deleted)

    table.listeners.append(changed)


class AclConnectionCommands(ConnectionBase):
    """ACL, as a mixin of the connection."""

    def acl_table(self) -> AclTable:
        return self.server.kv.acl

    def login(self, user: bytes) -> None:
        """Authenticated as ``user`` from now on (AUTH, HELLO AUTH)."""
        self.user = user
        self.perms = permissions(self.acl_table(), user)
        self.authenticated = True
        self.parser.require_auth = False

    def logout(self) -> None:
        """Back to the ``default`` user, authenticated only if it needs no password (RESET)."""
        table = self.acl_table()
        self.user = b"default"
        self.perms = permissions(table, self.user)
        self.authenticated = not table.default_requires_auth()
        self.parser.require_auth = not self.authenticated

    def user_changed(self, deleted: frozenset[bytes]) -> None:
        if self.user in deleted:
            self.close_after_reply()
            return
        self.perms = permissions(self.acl_table(), self.user)

    def c_acl(self, argv: Sequence[bytes]) -> Reply_:
        sub = argv[1].lower()
        if sub == b"setuser":
            return self._acl_setuser(argv)
        if sub == b"deluser":
            return self.submit(encode_request(list(argv), db=self.db))
        if sub in (b"list", b"users", b"getuser", b"dryrun"):
            return self.after_read_index(lambda: self._acl_read(sub, argv))
        if sub == b"whoami":
            return bulk(self.user)
        if sub == b"cat":
            return self._acl_cat(argv)
        if sub == b"genpass":
            return self._acl_genpass(argv)
        if sub == b"help":
            return self.encode([SimpleString(line) for line in _HELP])
        if sub in (b"save", b"load"):
            return NO_ACL_FILE if self.server.aclfile is None else ACL_FILE_AT_START
        return error("ERR ACL LOG is not supported by pyxos (denials are counted in metrics)")

    def _acl_setuser(self, argv: Sequence[bytes]) -> Reply_:
        words = list(argv)
        renamed: dict[bytes, bytes] = {}
        for i in range(3, len(words)):
            rule = words[i]
            if rule[:1] in (b">", b"<"):
                words[i] = (b"#" if rule[:1] == b">" else b"!") + hash_password(rule[1:]).encode()
                renamed[words[i]] = rule
        future = self.submit(encode_request(words, db=self.db))
        if not renamed:
            return future

        async def reply() -> bytes:
            out = await future
            prefix = b"-ERR Error in ACL SETUSER modifier '"
            for hashed, rule in renamed.items():
                if out.startswith(prefix + hashed + b"'"):
                    shown = rule.split(b"\0")[0].replace(b"\r", b" ").replace(b"\n", b" ")
                    return prefix + shown + out[len(prefix) + len(hashed) :]
            return out

        return reply()

    async def after_read_index(self, answer: Callable[[], Reply_]) -> bytes:
        try:
            await self.node.read(lambda _: None, self.server.limits.timeout)
        except PyxosError as exc:
            return self.error_reply(exc)
        reply = answer()
        if isinstance(reply, bytes):
            return reply
        return await reply

    def _acl_read(self, sub: bytes, argv: Sequence[bytes]) -> bytes:
        table = self.acl_table()
        if sub == b"users":
            return self.encode(list[Reply](table.names()))
        if sub == b"list":
            users = table.users
            return self.encode([table.line(name, users[name]) for name in table.names()])
        if sub == b"getuser":
            user = table.get(argv[2])
            if user is None:
                return self.encode(None)
            return self.encode(
                {
                    b"flags": RespSet([f.encode() for f in flag_names(user)]),
                    b"passwords": [p.encode() for p in user.passwords],
                    b"commands": describe_commands(user, table.catalog).encode(),
                    b"keys": describe_keys(user),
                    b"channels": describe_channels(user),
                    b"selectors": [],
                }
            )
        return self._acl_dryrun(table, argv)

    def _acl_dryrun(self, table: AclTable, argv: Sequence[bytes]) -> bytes:
        if table.get(argv[2]) is None:
            return error(f"ERR User '{arg_text(argv[2])}' not found")
        command = argv[3:]
        spec = COMMANDS.get(command[0].lower())
        if spec is not None and spec.subcommands and len(command) > 1:
            spec = SUBCOMMANDS[spec.name.encode()].get(command[1].lower())
        if spec is None:
            return error(f"ERR Command '{arg_text(command[0])}' not found")
        expected = arity(spec.name, spec.arity)
        if len(command) != expected if expected > 0 else len(command) < -expected:
            return error(f"ERR wrong number of arguments for '{spec.name}' command")
        perms = permissions(table, argv[2])
        denied = perms.dryrun(spec.name, command) if perms is not None else None
        return OK if denied is None else bulk(denied)

    def _acl_cat(self, argv: Sequence[bytes]) -> bytes:
        if len(argv) == 2:
            return self.encode([c.encode() for c in CATEGORIES])
        if len(argv) > 3:
            return _wrong_arguments(argv[1])
        category = argv[2].lower().decode("utf-8", "replace")
        if category not in CATEGORIES:
            return error(f"ERR Unknown category '{arg_text(argv[2])}'")
        return self.encode([c.name.encode() for c in catalog().in_category(category)])

    def _acl_genpass(self, argv: Sequence[bytes]) -> bytes:
        bits = 256
        if len(argv) == 3:
            value = string2ll(argv[2])
            if value is None:
                return error("ERR value is not an integer or out of range")
            if not 0 < value <= 4096:
                return error(
                    "ERR ACL GENPASS argument must be the number of bits for the output"
                    " password, a positive number up to 4096"
                )
            bits = value
        elif len(argv) > 3:
            return _wrong_arguments(argv[1])
        chars = (bits + 3) // 4
        return bulk(os.urandom((chars + 1) // 2).hex()[:chars].encode())


def _wrong_arguments(sub: bytes) -> bytes:
    return error(
        f"ERR unknown subcommand or wrong number of arguments for '{arg_text(sub)}'. Try ACL HELP."
    )
