"""TTL commands: EXPIRE and its three siblings (with NX/XX/GT/LT), TTL, PTTL, EXPIRETIME,
PEXPIRETIME, PERSIST. The checks and replies follow Redis's ``expire.c``.

Relative times count from :attr:`Keyspace.now`, the replicated clock, so every replica sets
the same absolute expiry time. TTL and PTTL count down from :attr:`Keyspace.clock`: while
applying that is the same replicated clock; in a read served from local state it is the
reading node's own clock (never earlier than the replicated one), which is what a client
asking "how long is left" wants, and which cannot make a key reappear (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyxos.kv.errors import ERR_NOT_INTEGER, expire_time_error
from pyxos.kv.keyspace import Keyspace
from pyxos.resp.integers import LLONG_MAX, LLONG_MIN, string2ll
from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["ExpiryCommands"]

_NX, _XX, _GT, _LT = 1, 2, 4, 8
_FLAG_OF = {b"nx": _NX, b"xx": _XX, b"gt": _GT, b"lt": _LT}
ERR_NX_AND_OTHERS = ErrorReply(
    "ERR NX and XX, GT or LT options at the same time are not compatible"
)
ERR_GT_AND_LT = ErrorReply("ERR GT and LT options at the same time are not compatible")


def _expire_flags(argv: Sequence[bytes]) -> int | ErrorReply:
    """Redis's parseExtendedExpireArgumentsOrReply: options after ``key time``."""
    flags = 0
    for arg in argv[3:]:
        flag = _FLAG_OF.get(arg.lower())
        if flag is None:
            return ErrorReply("ERR Unsupported option " + arg.decode("utf-8", "surrogateescape"))
        flags |= flag
    if flags & _NX and flags & (_XX | _GT | _LT):
        return ERR_NX_AND_OTHERS
    if flags & _GT and flags & _LT:
        return ERR_GT_AND_LT
    return flags


class ExpiryCommands(Keyspace):
    """The TTL commands, as a mixin over :class:`~pyxos.kv.keyspace.Keyspace`."""

    def _expire(self, argv: Sequence[bytes], base: int, seconds: bool, name: str) -> Reply:
        flags = _expire_flags(argv)
        if isinstance(flags, ErrorReply):
            return flags
        when = string2ll(argv[2])
        if when is None:
            return ERR_NOT_INTEGER
        if seconds:
            if when > LLONG_MAX // 1000 or when < -(-LLONG_MIN // 1000):
                return expire_time_error(name)
            when *= 1000
        if when > LLONG_MAX - base:
            return expire_time_error(name)
        when += base
        key = argv[1]
        if key not in self.db.data:
            return 0
        if flags:
            current = self.db.expires.get(key)
            if flags & _NX and current is not None:
                return 0
            if flags & _XX and current is None:
                return 0
            if flags & _GT and (current is None or when <= current):
                return 0
            if flags & _LT and current is not None and when >= current:
                return 0
        self.expire_at(key, when)
        return 1

    def c_expire(self, argv: Sequence[bytes]) -> Reply:
        return self._expire(argv, self.now, True, "expire")

    def c_pexpire(self, argv: Sequence[bytes]) -> Reply:
        return self._expire(argv, self.now, False, "pexpire")

    def c_expireat(self, argv: Sequence[bytes]) -> Reply:
        return self._expire(argv, 0, True, "expireat")

    def c_pexpireat(self, argv: Sequence[bytes]) -> Reply:
        return self._expire(argv, 0, False, "pexpireat")

    def _ttl(self, key: bytes, ms: bool, absolute: bool) -> Reply:
        if key not in self.db.data:
            return -2
        at = self.db.expires.get(key)
        if at is None:
            return -1
        left = at if absolute else max(at - self.clock, 0)
        return left if ms else (left + 500) // 1000

    def c_ttl(self, argv: Sequence[bytes]) -> Reply:
        return self._ttl(argv[1], ms=False, absolute=False)

    def c_pttl(self, argv: Sequence[bytes]) -> Reply:
        return self._ttl(argv[1], ms=True, absolute=False)

    def c_expiretime(self, argv: Sequence[bytes]) -> Reply:
        return self._ttl(argv[1], ms=False, absolute=True)

    def c_pexpiretime(self, argv: Sequence[bytes]) -> Reply:
        return self._ttl(argv[1], ms=True, absolute=True)

    def c_persist(self, argv: Sequence[bytes]) -> Reply:
        if argv[1] not in self.db.data:
            return 0
        return 1 if self.persist(argv[1]) else 0
