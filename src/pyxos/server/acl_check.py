"""The per-command permission check, compiled once per user so that it costs little.

Scripts run inside the state machine, which does not know who sent them, so the commands a
script calls cannot be checked against its sender's rules; rather than let a script do what
its sender may not, a user with any restriction may not run scripts at all.

A connection holds the :class:`Permissions` of its user, or ``None`` when the user may run
every command on every key (the ``default`` user unless an operator restricts it): then the
check on the hot path is one attribute test. Otherwise it is a set lookup of the command's
full name and, for users limited to key patterns, a match of each key against them, with the
access the command's key specs say it needs (``%R~`` patterns allow reading, ``%W~``
writing). Replies and texts are Redis 7.0's (``-NOPERM``; ACL DRYRUN's sentences).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyxos.kv.acl import AclTable
from pyxos.kv.acl_rules import User
from pyxos.kv.glob import compile_pattern
from pyxos.server.acl_catalog import NO_AUTH, key_finder

__all__ = ["KEY_DENIED", "Permissions", "permissions"]

KEY_DENIED = b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
SCRIPTS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro"})
SCRIPT_DENIED = (
    b"-NOPERM pyxos runs scripts only for users that may run every command on every key:"
    b" the commands a script calls are not checked against the user's rules\r\n"
)


def _matcher(pattern: bytes) -> Callable[[bytes], bool]:
    match = compile_pattern(pattern)
    if pattern.strip(b"*"):
        return match
    return lambda key: True  # only stars: matches every key, the empty one included


class Permissions:
    """What one user may run, ready for the check of every command."""

    __slots__ = ("allkeys", "allowed", "firstargs", "patterns")

    def __init__(self, user: User) -> None:
        self.allowed = frozenset(user.allowed) | NO_AUTH
        self.firstargs = {
            name: frozenset(a.lower() for a in args) for name, args in user.firstargs.items()
        }
        self.allkeys = user.allkeys
        self.patterns = tuple((_matcher(p), f) for p, f in user.patterns)

    def denial(self, name: str, argv: Sequence[bytes]) -> tuple[bool, int]:
        """``(command denied, position of the denied key or -1)``; (False, -1): allowed."""
        if name not in self.allowed:
            args = self.firstargs.get(name)
            if args is None or len(argv) < 2 or argv[1].lower() not in args:
                return True, -1
        if not self.allkeys:
            finder = key_finder(name)
            if finder is not None:
                for pos, need in finder(argv):
                    key = argv[pos]
                    if not any(f & need == need and match(key) for match, f in self.patterns):
                        return False, pos
        return False, -1

    def check(self, name: str, argv: Sequence[bytes]) -> bytes | None:
        """The -NOPERM reply if the user may not run ``argv`` (command ``name``), else None."""
        command, key = self.denial(name, argv)
        if command:
            return b"-NOPERM this user has no permissions to run the '%s' command\r\n" % (
                name.encode()
            )
        if key >= 0:
            return KEY_DENIED
        return SCRIPT_DENIED if name in SCRIPTS else None

    def dryrun(self, name: str, argv: Sequence[bytes]) -> bytes | None:
        """ACL DRYRUN's sentence for a denial, or None when allowed."""
        command, key = self.denial(name, argv)
        if command:
            return b"This user has no permissions to run the '%s' command" % name.encode()
        if key >= 0:
            return b"This user has no permissions to access the '%s' key" % argv[key]
        return None


def permissions(table: AclTable, name: bytes) -> Permissions | None:
    """The compiled permissions of user ``name``, None if it may do everything (cached in
    the table until it changes). A user that does not exist may do nothing."""
    cache = table.cache
    if name in cache:
        perms: Permissions | None = cache[name]
        return perms
    user = table.get(name)
    if user is None:
        perms = Permissions(User())
    elif user.allkeys and user.allowed >= table.catalog.all_names:
        perms = None
    else:
        perms = Permissions(user)
    cache[name] = perms
    return perms
