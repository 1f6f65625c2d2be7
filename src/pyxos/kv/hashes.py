"""Hash commands (HSET, HGET, HINCRBY, HRANDFIELD, HSCAN...), with the checks and replies of
Redis's ``t_hash.c``. A hash is a :class:`~pyxos.kv.values.Hash` (insertion order)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from pyxos.kv.commands import arity_error
from pyxos.kv.errors import ERR_NOT_INTEGER
from pyxos.kv.longdouble import add_ld, format_ld, parse_ld
from pyxos.kv.strings import incremented
from pyxos.kv.subscan import ScanView, scan_container
from pyxos.kv.typed_keyspace import TypedKeyspace
from pyxos.kv.values import ERR_NOT_FLOAT, Hash, encoding_name
from pyxos.resp.integers import LLONG_MAX, string2ll
from pyxos.resp.replies import OK, ErrorReply, Reply

__all__ = ["HashCommands"]

ERR_HASH_NOT_INTEGER = ErrorReply("ERR hash value is not an integer")
ERR_HASH_NOT_FLOAT = ErrorReply("ERR hash value is not a float")
ERR_NAN_OR_INF = ErrorReply("ERR increment would produce NaN or Infinity")
ERR_INCR_NAN_OR_INF = ErrorReply("ERR value is NaN or Infinity")
_LONG_MAX = LLONG_MAX


def _scan_view(h: Hash) -> ScanView:
    return list(h), h.__getitem__, encoding_name(h) == "listpack"


def _with_values(h: Hash, fields: list[bytes], withvalues: bool) -> Reply:
    """HRANDFIELD's reply: the fields drawn, each followed by its value WITHVALUES."""
    if not withvalues:
        return list(fields)
    out: list[Reply] = []
    for f in fields:
        out += [f, h[f]]
    return out


class HashCommands(TypedKeyspace):
    """The hash commands, as a mixin over :class:`~pyxos.kv.typed_keyspace.TypedKeyspace`."""

    def _hash_for_write(self, key: bytes) -> Hash:
        h = self.value_of(key, Hash)
        return h if h is not None else self.create(key, Hash())

    def c_hset(self, argv: Sequence[bytes]) -> Reply:
        if len(argv) % 2 == 1:
            return arity_error(argv[0].lower().decode("utf-8", "replace"))
        h = self._hash_for_write(argv[1])
        before = len(h)
        for i in range(2, len(argv), 2):
            h[argv[i]] = argv[i + 1]
        self.changed(argv[1], h)
        return len(h) - before

    def c_hmset(self, argv: Sequence[bytes]) -> Reply:
        reply = self.c_hset(argv)
        return reply if isinstance(reply, ErrorReply) else OK

    def c_hsetnx(self, argv: Sequence[bytes]) -> Reply:
        h = self._hash_for_write(argv[1])
        if argv[2] in h:
            return 0
        h[argv[2]] = argv[3]
        self.changed(argv[1], h)
        return 1

    def c_hget(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        return None if h is None else h.get(argv[2])

    def c_hmget(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        if h is None:
            return [None] * (len(argv) - 2)
        return [h.get(f) for f in argv[2:]]

    def c_hdel(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        if h is None:
            return 0
        deleted = 0
        for f in argv[2:]:
            if h.pop(f, None) is not None:
                deleted += 1
        if deleted:
            self.changed(argv[1], h)
        return deleted

    def c_hexists(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        return int(h is not None and argv[2] in h)

    def c_hlen(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        return 0 if h is None else len(h)

    def c_hstrlen(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        return 0 if h is None else len(h.get(argv[2], b""))

    def c_hkeys(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        return [] if h is None else list(h)

    def c_hvals(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        return [] if h is None else list(h.values())

    def c_hgetall(self, argv: Sequence[bytes]) -> Reply:
        h = self.value_of(argv[1], Hash)
        return {} if h is None else dict(h)  # type: ignore[arg-type]

    def c_hincrby(self, argv: Sequence[bytes]) -> Reply:
        incr = string2ll(argv[3])
        if incr is None:
            return ERR_NOT_INTEGER
        h = self.value_of(argv[1], Hash)
        value = incremented(None if h is None else h.get(argv[2]), incr, ERR_HASH_NOT_INTEGER)
        if isinstance(value, ErrorReply):
            return value
        if h is None:
            h = self.create(argv[1], Hash())
        h[argv[2]] = b"%d" % value
        self.changed(argv[1], h)
        return value

    def c_hincrbyfloat(self, argv: Sequence[bytes]) -> Reply:
        incr = parse_ld(argv[3])
        if incr is None:
            return ERR_NOT_FLOAT
        if isinstance(incr, tuple):
            return ERR_INCR_NAN_OR_INF
        h = self.value_of(argv[1], Hash)
        old = None if h is None else h.get(argv[2])
        value = Fraction(0) if old is None else parse_ld(old)
        if value is None:
            return ERR_HASH_NOT_FLOAT
        total = add_ld(value, incr)
        if total is None or isinstance(total, tuple):
            return ERR_NAN_OR_INF
        new = format_ld(total)
        if h is None:
            h = self.create(argv[1], Hash())
        h[argv[2]] = new
        self.changed(argv[1], h)
        return new

    def c_hrandfield(self, argv: Sequence[bytes]) -> Reply:
        return self.random_members(argv, Hash, b"withvalues", list, _with_values)

    def c_hscan(self, argv: Sequence[bytes]) -> Reply:
        return scan_container(argv, lambda key: self.value_of(key, Hash), _scan_view)
