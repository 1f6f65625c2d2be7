"""One ACL user in Redis 7.0's model: its state, the ACL SETUSER rules that change it, and the
description ACL LIST prints.

A user is what Redis keeps for its root selector: on/off and the payload-sanitizing flag,
password hashes (SHA-256 hex, never the passwords), key patterns with read and/or write
permission, channel patterns, and the set of commands it may run, with the "first
arguments" Redis still allows for commands without subcommands (``+select|0``). Which
commands a ``+@category`` rule covers comes from an :class:`AclCatalog`, which the server
builds from its command table (this package does not know Redis's categories itself).

How users are written out (ACL LIST, and the stored form) is :mod:`pyxos.kv.acl_describe`.

Everything here is deterministic: replicas apply the same rules to the same users and must
end with the same users and replies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BOTH",
    "CATEGORIES",
    "READ",
    "WRITE",
    "AclCatalog",
    "AclRuleError",
    "CatalogCommand",
    "User",
    "hash_password",
    "new_user",
    "user_from_rules",
]

CATEGORIES = (
    "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
    "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking",
    "dangerous", "connection", "transaction", "scripting",
)  # fmt: skip
"""Redis 7.0's command categories, in its order (ACL CAT, and the description's search)."""

READ = 1
WRITE = 2
BOTH = READ | WRITE
_HEX = frozenset(b"0123456789abcdef")

# Texts of Redis's errno-based reasons (ACLSetUserStringError).
_UNKNOWN = "Unknown command or category name in ACL"
_SYNTAX = "Syntax error"
_KEYS_AFTER_ALL = (
    "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not"
    " have any effect. Try 'resetkeys' to start with an empty list of patterns"
)
_CHANNELS_AFTER_ALL = (
    "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does"
    " not have any effect. Try 'resetchannels' to start with an empty list of channels"
)
_NO_SUCH_PASSWORD = "The password you are trying to remove from the user does not exist"
_BAD_HASH = (
    "The password hash must be exactly 64 characters and contain only lowercase hexadecimal"
    " characters"
)
_SUBCOMMAND_FIRSTARG = "Allowing first-arg of a subcommand is not supported"
_SELECTORS = "Selectors are not supported by pyxos"


class AclRuleError(Exception):
    """A rule ACL SETUSER cannot apply; ``reason`` is Redis's text for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CatalogCommand:
    """A command as ACLs see it: its full name (``config|get``), categories, subcommands."""

    name: str
    categories: frozenset[str]
    subcommands: tuple[CatalogCommand, ...] = ()


class AclCatalog:
    """The commands and categories ACL rules speak of, in a fixed order."""

    def __init__(self, commands: Iterable[CatalogCommand]) -> None:
        self.commands = tuple(sorted(commands, key=lambda c: c.name))
        self.by_name: dict[str, CatalogCommand] = {}
        for cmd in self.commands:
            self.by_name[cmd.name] = cmd
            for sub in cmd.subcommands:
                self.by_name[sub.name] = sub
        self.all_names = frozenset(self.by_name)
        self.parent = {s.name: c for c in self.commands for s in c.subcommands}

    def lookup(self, name: str) -> CatalogCommand | None:
        """A command or ``container|sub`` by name in any letter case (Redis's lookup)."""
        return self.by_name.get(name.lower())

    def in_category(self, category: str) -> list[CatalogCommand]:
        """Commands and subcommands of a category, in the order a rule applies to them."""
        out: list[CatalogCommand] = []
        for cmd in self.commands:
            if category in cmd.categories:
                out.append(cmd)
            out.extend(s for s in cmd.subcommands if category in s.categories)
        return out


@dataclass
class User:
    """One user's state (Redis's ``user`` with its root selector)."""

    enabled: bool = False
    nopass: bool = False
    sanitize: str = ""  # "", "skip-sanitize-payload" or "sanitize-payload"
    passwords: list[str] = field(default_factory=list)
    allkeys: bool = False
    patterns: list[tuple[bytes, int]] = field(default_factory=list)  # (pattern, READ|WRITE)
    allchannels: bool = False
    channels: list[bytes] = field(default_factory=list)
    allowed: set[str] = field(default_factory=set)
    future: bool = False
    """Set by +@all: the user may also run commands the catalog does not have yet."""
    firstargs: dict[str, list[bytes]] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    """The command rules as given since the last +@all or -@all, later ones replacing earlier
    ones for the same command or category: what the user is stored as, so that a category
    keeps its meaning when the catalog gains commands."""

    def copy(self) -> User:
        return User(
            self.enabled,
            self.nopass,
            self.sanitize,
            list(self.passwords),
            self.allkeys,
            list(self.patterns),
            self.allchannels,
            list(self.channels),
            set(self.allowed),
            self.future,
            {k: list(v) for k, v in self.firstargs.items()},
            list(self.rules),
        )

    # ---- rules

    def apply(self, rule: bytes, catalog: AclCatalog) -> None:
        """Apply one ACL SETUSER rule (Redis's ACLSetUser and ACLSetSelector).

        Raises:
            AclRuleError: with Redis's reason; the user may then be half changed, so apply
                rules to a :meth:`copy` and keep it only if all of them succeed.
        """
        op = rule.lower()
        if op == b"on":
            self.enabled = True
        elif op == b"off":
            self.enabled = False
        elif op in (b"skip-sanitize-payload", b"sanitize-payload"):
            self.sanitize = op.decode()
        elif op == b"nopass":
            self.nopass = True
            self.passwords.clear()
        elif op == b"resetpass":
            self.nopass = False
            self.passwords.clear()
        elif op == b"reset":
            for step in (b"resetpass", b"resetkeys", b"resetchannels", b"off"):
                self.apply(step, catalog)
            self.sanitize = "sanitize-payload"
            self.apply(b"-@all", catalog)
        elif op == b"clearselectors":
            pass  # pyxos users have no selectors besides the root one
        elif rule[:1] in (b">", b"#"):
            digest = hash_password(rule[1:]) if rule[:1] == b">" else _checked_hash(rule[1:])
            if digest not in self.passwords:
                self.passwords.append(digest)
            self.nopass = False
        elif rule[:1] in (b"<", b"!"):
            digest = hash_password(rule[1:]) if rule[:1] == b"<" else _checked_hash(rule[1:])
            if digest not in self.passwords:
                raise AclRuleError(_NO_SUCH_PASSWORD)
            self.passwords.remove(digest)
        elif rule[:1] == b"(" or op == b")":
            raise AclRuleError(_SELECTORS)
        else:
            self._apply_selector(rule, op, catalog)

    def _apply_selector(self, rule: bytes, op: bytes, catalog: AclCatalog) -> None:
        if op in (b"allkeys", b"~*", b"resetkeys"):  # all or none: either way no patterns
            self.allkeys = op != b"resetkeys"
            self.patterns.clear()
        elif rule[:1] in (b"~", b"%"):
            self._add_key_pattern(rule)
        elif op in (b"allchannels", b"&*", b"resetchannels"):
            self.allchannels = op != b"resetchannels"
            self.channels.clear()
        elif rule[:1] == b"&":
            if self.allchannels:
                raise AclRuleError(_CHANNELS_AFTER_ALL)
            if rule[1:] not in self.channels:
                self.channels.append(rule[1:])
        elif op in (b"allcommands", b"+@all", b"nocommands", b"-@all"):
            everything = op in (b"allcommands", b"+@all")
            self.allowed = set(catalog.all_names) if everything else set()
            self.future = everything  # commands added later follow
            self.firstargs.clear()
            self.rules.clear()
        elif rule[:2] in (b"+@", b"-@"):
            category = op[2:].decode("utf-8", "replace")
            if category not in CATEGORIES:
                raise AclRuleError(_UNKNOWN)
            for member in catalog.in_category(category):
                self._change(member, rule[:1] == b"+")
            self._record("@" + category, rule[:1] == b"+")
        elif rule[:1] == b"+":
            self._allow(rule[1:], catalog)
        elif rule[:1] == b"-":
            self._set_command(rule[1:].decode("utf-8", "replace"), catalog, False)
        else:
            raise AclRuleError(_SYNTAX)

    def _add_key_pattern(self, rule: bytes) -> None:
        if self.allkeys:
            raise AclRuleError(_KEYS_AFTER_ALL)
        flags, offset = BOTH, 1
        if rule[:1] == b"%":
            flags = 0
            while True:
                if offset >= len(rule):
                    raise AclRuleError(_SYNTAX)
                c = rule[offset : offset + 1].upper()
                offset += 1
                if c == b"R" and not flags & READ:
                    flags |= READ
                elif c == b"W" and not flags & WRITE:
                    flags |= WRITE
                elif c == b"~" and flags:
                    break
                else:
                    raise AclRuleError(_SYNTAX)
        pattern = rule[offset:]
        if pattern == b"*" and flags == BOTH:
            self.allkeys = True
            self.patterns.clear()
            return
        for i, (known, old) in enumerate(self.patterns):
            if known == pattern:
                self.patterns[i] = (pattern, old | flags)
                return
        self.patterns.append((pattern, flags))

    def _allow(self, name: bytes, catalog: AclCatalog) -> None:
        text = name.decode("utf-8", "replace")
        if "|" not in text:
            self._set_command(text, catalog, True)
            return
        head, _, sub = text.rpartition("|")
        cmd = catalog.lookup(head) if head.count("|") == 0 else None
        if cmd is None:
            if catalog.lookup(head) is not None:  # "config|get|x": a subcommand's first arg
                raise AclRuleError(_SUBCOMMAND_FIRSTARG)
            raise AclRuleError(_UNKNOWN)
        if not sub:
            raise AclRuleError(_SYNTAX)
        if cmd.subcommands:
            self._set_command(text, catalog, True)
            return
        args = self.firstargs.setdefault(cmd.name, [])
        wanted = name[name.rindex(b"|") + 1 :]
        if all(a.lower() != wanted.lower() for a in args):
            args.append(wanted)
            self._record(text.lower(), True)  # (a repeat keeps its place, as in the list)

    def _set_command(self, name: str, catalog: AclCatalog, allow: bool) -> None:
        """``+name`` or ``-name`` for a command or a subcommand (``config|get``)."""
        cmd = catalog.lookup(name)
        if cmd is None:
            raise AclRuleError(_UNKNOWN)
        self._change(cmd, allow)
        self._record(cmd.name, allow)

    def _record(self, rule: str, allow: bool) -> None:
        """Redis 7.2's ACLUpdateCommandRules: drop earlier rules for the same command (and
        its subcommands) or category, then append this one."""
        self.rules = [r for r in self.rules if r[1:] != rule and not r[1:].startswith(rule + "|")]
        self.rules.append(("+" if allow else "-") + rule)

    def _change(self, cmd: CatalogCommand, allow: bool) -> None:
        """Redis's ACLChangeSelectorPerm: the command and all its subcommands."""
        if allow:
            self.allowed.add(cmd.name)
            self.allowed.update(s.name for s in cmd.subcommands)
        else:
            self.allowed.discard(cmd.name)
            self.allowed.difference_update(s.name for s in cmd.subcommands)
        self.firstargs.pop(cmd.name, None)


def new_user() -> User:
    """A user as ACL SETUSER creates it: off, no passwords, keys, channels or commands."""
    return User()


def hash_password(password: bytes) -> str:
    """SHA-256 hex of a password: all that is ever stored of it (as in Redis)."""
    return hashlib.sha256(password).hexdigest()


def _checked_hash(text: bytes) -> str:
    if len(text) != 64 or not set(text) <= _HEX:
        raise AclRuleError(_BAD_HASH)
    return text.decode()


def user_from_rules(rules: Sequence[bytes], catalog: AclCatalog) -> User:
    """A new user with ``rules`` applied (AclRuleError if one is invalid)."""
    user = new_user()
    for rule in rules:
        user.apply(rule, catalog)
    return user
