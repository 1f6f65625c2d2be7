"""The replicated user table: ACL SETUSER and ACL DELUSER applied through the log.

Users are replicated state. ACL SETUSER and ACL DELUSER are log entries like any write, so
every replica applies them in the same order and ends with the same users; the table is in
the snapshot, so a node that restarts, or installs a snapshot, has them too.

Each node also has *base* users from its own configuration: the ``default`` user (with
``--password`` as its password, or ``nopass``) and those of an ACL file. The replicated part
is kept as changes over that base: a user set with ACL SETUSER is stored as the rules that
recreate it (password hashes, never passwords; its command rules as given, so that
``+@hash`` still means every hash command after an upgrade adds some), a base user deleted
with ACL DELUSER as a tombstone. The base must therefore be the same on every node,
like the rest of the cluster's configuration.

Stored descriptions are turned back into users lazily, with the catalog of commands the
server installs before it serves (a snapshot can be restored before that). The server is
told of every change through :attr:`AclTable.listeners`, to recompute the permissions of
its connections and close those of deleted users.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pyxos.kv.acl_describe import describe, stored_form
from pyxos.kv.acl_rules import (
    AclCatalog,
    AclRuleError,
    User,
    hash_password,
    new_user,
    user_from_rules,
)
from pyxos.resp.replies import OK, ErrorReply, Reply

__all__ = ["AclCommands", "AclTable", "acl_spec", "default_rules"]

_SPACES = frozenset(b" \t\n\v\f\r\0")


def default_rules(password: bytes | None) -> bytes:
    """The ``default`` user's rules for a node started with (or without) ``--password``."""
    secret = b"#" + hash_password(password).encode() if password else b"nopass"
    return b"on " + secret + b" ~* &* +@all"


class AclTable:
    """Every user of the cluster: the node's base users overlaid with the replicated changes."""

    def __init__(self, catalog: AclCatalog | None = None) -> None:
        self.catalog = catalog if catalog is not None else AclCatalog(())
        self.base: dict[bytes, bytes] = {b"default": default_rules(None)}
        self.changes: dict[bytes, bytes | None] = {}
        """Replicated: a user's description, or None for a deleted base user."""
        self._users: dict[bytes, User] | None = None
        self.listeners: list[Callable[[frozenset[bytes]], None]] = []
        """Called after every change with the names of users that no longer exist."""
        self.cache: dict[bytes, Any] = {}
        """What the server derives from users (compiled permissions), emptied on changes."""

    def configure(self, catalog: AclCatalog, base: dict[bytes, bytes]) -> None:
        """Install the command catalog and the node's base users (before serving)."""
        self.catalog = catalog
        self.base = dict(base)
        self.base.setdefault(b"default", default_rules(None))
        self._users = None
        self._changed(frozenset())

    # ---- reading

    @property
    def users(self) -> dict[bytes, User]:
        users = self._users
        if users is None:
            users = {}
            for name, rules in self.base.items():
                users[name] = self._parse(rules)
            for name, text in self.changes.items():
                if text is None:
                    users.pop(name, None)
                else:
                    users[name] = self._parse(text)
            self._users = users
        return users

    def _parse(self, text: bytes) -> User:
        try:
            return user_from_rules(text.split(), self.catalog)
        except AclRuleError:
            return new_user()  # a rule this catalog does not know: the user may do nothing

    def get(self, name: bytes) -> User | None:
        return self.users.get(name)

    def names(self) -> list[bytes]:
        """User names in Redis's order (byte order)."""
        return sorted(self.users)

    def line(self, name: bytes, user: User) -> bytes:
        return b"user " + name + b" " + describe(user, self.catalog)

    def authenticate(self, name: bytes, password: bytes) -> bool:
        """Whether AUTH ``name`` ``password`` succeeds (Redis's ACLCheckUserCredentials)."""
        user = self.users.get(name)
        if user is None or not user.enabled:
            return False
        if user.nopass:
            return True
        digest = hash_password(password)
        ok = False
        for known in user.passwords:  # compare with every hash, in constant time each
            ok |= hmac.compare_digest(known, digest)
        return ok

    def default_requires_auth(self) -> bool:
        user = self.users.get(b"default")
        return user is None or not (user.nopass and user.enabled)

    # ---- replicated changes (applied by the state machine)

    def setuser(self, name: bytes, rules: Sequence[bytes]) -> Reply:
        if any(c in _SPACES for c in name):
            return ErrorReply("ERR Usernames can't contain spaces or null characters")
        users = self.users
        known = users.get(name)
        user = known.copy() if known is not None else new_user()
        for rule in rules:
            try:
                user.apply(rule, self.catalog)
            except AclRuleError as exc:
                text = rule.split(b"\0")[0].decode("utf-8", "surrogateescape")
                message = f"ERR Error in ACL SETUSER modifier '{text}': {exc.reason}"
                return ErrorReply(message.replace("\r", " ").replace("\n", " "))
        self.changes[name] = stored_form(user)
        users[name] = user
        self._changed(frozenset())
        return OK

    def deluser(self, names: Iterable[bytes]) -> Reply:
        names = list(names)
        if b"default" in names:
            return ErrorReply("ERR The 'default' user cannot be removed")
        users = self.users
        deleted = set()
        for name in names:
            if users.pop(name, None) is None:
                continue
            deleted.add(name)
            if name in self.base:
                self.changes[name] = None
            else:
                self.changes.pop(name, None)
        if deleted:
            self._changed(frozenset(deleted))
        return len(deleted)

    # ---- snapshots

    def records(self) -> list[tuple[bytes, bytes | None]]:
        return list(self.changes.items())

    def load(self, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Replace the replicated changes with a snapshot's."""
        before = set(self.users) if self._users is not None else set(self.base)
        self.changes = dict(records)
        self._users = None
        self._changed(frozenset(before - set(self.users)))

    def _changed(self, deleted: frozenset[bytes]) -> None:
        self.cache.clear()
        for listener in list(self.listeners):
            listener(deleted)


class AclCommands:
    """ACL SETUSER and DELUSER in the state machine, as a mixin of it."""

    acl: AclTable

    def c_acl(self, argv: Sequence[bytes]) -> Reply:
        sub = argv[1].lower() if len(argv) > 1 else b""
        if sub == b"setuser" and len(argv) >= 3:
            return self.acl.setuser(argv[2], argv[3:])
        if sub == b"deluser" and len(argv) >= 3:
            return self.acl.deluser(argv[2:])
        return ErrorReply(
            "ERR 'acl' is a connection command and cannot be applied to the replicated state"
        )


def acl_spec(spec_type: Any, local: Any) -> Any:
    """The ACL command's spec, built with the command table's own types (passed in, so
    that the table can register it without an import cycle)."""
    subs = (
        ("cat", -2), ("deluser", -3), ("dryrun", -4), ("genpass", -2), ("getuser", 3),
        ("help", 2), ("list", 2), ("load", 2), ("log", -2), ("save", 2), ("setuser", -3),
        ("users", 2), ("whoami", 2),
    )  # fmt: skip
    return spec_type(
        "acl",
        -2,
        local,
        subcommands=tuple(spec_type(f"acl|{name}", arity, local) for name, arity in subs),
    )
