"""String commands: GET, SET and its options, counters (INCRBYFLOAT in long double), APPEND,
ranges, LCS.

Each ``c_<name>`` method answers one command for an ``argv`` whose arity was already checked,
returning a reply value (:mod:`pyxos.resp.replies`). Option parsing and the order of checks
follow Redis's ``t_string.c``, so the same inputs give the same errors.

``SET k v`` and ``GET k`` are the hot path: a database with no TTLs, WATCHes or SCAN index
stores with one dict assignment and reads with one dict lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from pyxos.kv.errors import (
    ERR_DECR_OVERFLOW,
    ERR_NOT_FLOAT,
    ERR_NOT_INTEGER,
    ERR_OVERFLOW,
    ERR_SYNTAX,
    ERR_TOO_BIG,
    expire_time_error,
)
from pyxos.kv.keyspace import Keyspace
from pyxos.kv.lcs import lcs
from pyxos.kv.longdouble import add_ld, format_ld, parse_ld
from pyxos.kv.values import WrongTypeError, as_string
from pyxos.resp.integers import LLONG_MAX, LLONG_MIN, string2ll
from pyxos.resp.replies import OK, ErrorReply, Reply

__all__ = ["StringCommands", "incremented", "parse_expire_option"]

_EX, _PX, _EXAT, _PXAT = b"ex", b"px", b"exat", b"pxat"
_EXPIRY_OPTIONS = (_EX, _PX, _EXAT, _PXAT)
ERR_OFFSET_RANGE = ErrorReply("ERR offset is out of range")
ERR_NAN_OR_INF = ErrorReply("ERR increment would produce NaN or Infinity")
ERR_LCS_TYPE = ErrorReply("ERR The specified keys must contain string values")


class _Options:
    __slots__ = ("expiry", "expiry_arg", "get", "keepttl", "nx", "persist", "xx")

    def __init__(self) -> None:
        self.nx = self.xx = self.get = self.keepttl = self.persist = False
        self.expiry: bytes | None = None
        self.expiry_arg = b""


def _parse_options(argv: Sequence[bytes], start: int, for_getex: bool) -> _Options | ErrorReply:
    """Redis's parseExtendedStringArgumentsOrReply for SET (``for_getex`` False) or GETEX."""
    o = _Options()
    argc = len(argv)
    j = start
    while j < argc:
        opt = argv[j].lower()
        has_next = j + 1 < argc
        if opt == b"nx" and not o.xx and not for_getex:
            o.nx = True
        elif opt == b"xx" and not o.nx and not for_getex:
            o.xx = True
        elif opt == b"get" and not for_getex:
            o.get = True
        elif opt == b"keepttl" and o.expiry is None and not for_getex:
            o.keepttl = True
        elif opt == b"persist" and for_getex and o.expiry is None:
            o.persist = True
        elif (
            opt in _EXPIRY_OPTIONS
            and not o.keepttl
            and not o.persist
            and (o.expiry is None or o.expiry == opt)
            and has_next
        ):
            o.expiry = opt
            o.expiry_arg = argv[j + 1]
            j += 1
        else:
            return ERR_SYNTAX
        j += 1
    return o


def parse_expire_option(now: int, option: bytes, arg: bytes, command: str) -> int | ErrorReply:
    """An EX/PX/EXAT/PXAT argument as an absolute time in ms (getExpireMillisecondsOrReply):
    positive, and neither the unit conversion nor adding ``now`` may overflow."""
    value = string2ll(arg)
    if value is None:
        return ERR_NOT_INTEGER
    seconds = option in (_EX, _EXAT)
    if value <= 0 or (seconds and value > LLONG_MAX // 1000):
        return expire_time_error(command)
    if seconds:
        value *= 1000
    if option in (_EX, _PX):
        value += now
        if value > LLONG_MAX:  # C's signed addition wraps negative, which Redis refuses
            return expire_time_error(command)
    return value


def incremented(old: bytes | None, incr: int, not_integer: ErrorReply) -> int | ErrorReply:
    """INCRBY's (and HINCRBY's) new value: ``old`` (0 when absent) plus ``incr``;
    ``not_integer`` when ``old`` is not an integer, an overflow error when the sum does not
    fit a signed 64-bit integer (both operands do, so only a sum of like signs can leave)."""
    if old is None:
        value = 0
    else:
        parsed = string2ll(old)
        if parsed is None:
            return not_integer
        value = parsed
    if (incr < 0 and value < 0 and incr < LLONG_MIN - value) or (
        incr > 0 and value > 0 and incr > LLONG_MAX - value
    ):
        return ERR_OVERFLOW
    return value + incr


class StringCommands(Keyspace):
    """The string commands, as a mixin over :class:`~pyxos.kv.keyspace.Keyspace`."""

    max_value_len: int

    def c_get(self, argv: Sequence[bytes]) -> Reply:
        value = self.db.data.get(argv[1])
        if value is None or type(value) is bytes:
            return value
        raise WrongTypeError

    def c_set(self, argv: Sequence[bytes]) -> Reply:
        if len(argv) == 3:
            db = self.db
            if db.expires or db.watched or db.scan is not None:
                self.put(argv[1], argv[2])
            else:
                db.data[argv[1]] = argv[2]
            return OK
        options = _parse_options(argv, 3, for_getex=False)
        if isinstance(options, ErrorReply):
            return options
        at = None
        if options.expiry is not None:
            parsed = parse_expire_option(self.now, options.expiry, options.expiry_arg, "set")
            if isinstance(parsed, ErrorReply):
                return parsed
            at = parsed
        key = argv[1]
        old = as_string(self.db.data.get(key))
        if (options.nx and old is not None) or (options.xx and old is None):
            return old if options.get else None
        self.put(key, argv[2], keep_ttl=options.keepttl)
        if at is not None:
            self.expire_at(key, at)
        return old if options.get else OK

    def _set_with_ttl(self, argv: Sequence[bytes], option: bytes, command: str) -> Reply:
        at = parse_expire_option(self.now, option, argv[2], command)
        if isinstance(at, ErrorReply):
            return at
        self.put(argv[1], argv[3])
        self.expire_at(argv[1], at)
        return OK

    def c_setex(self, argv: Sequence[bytes]) -> Reply:
        return self._set_with_ttl(argv, _EX, "setex")

    def c_psetex(self, argv: Sequence[bytes]) -> Reply:
        return self._set_with_ttl(argv, _PX, "psetex")

    def c_getex(self, argv: Sequence[bytes]) -> Reply:
        options = _parse_options(argv, 2, for_getex=True)
        if isinstance(options, ErrorReply):
            return options
        key = argv[1]
        value = as_string(self.db.data.get(key))
        if value is None:
            return None
        if options.expiry is not None:
            at = parse_expire_option(self.now, options.expiry, options.expiry_arg, "getex")
            if isinstance(at, ErrorReply):
                return at
            self.expire_at(key, at)
        elif options.persist:
            self.persist(key)
        return value

    def c_setnx(self, argv: Sequence[bytes]) -> Reply:
        if argv[1] in self.db.data:
            return 0
        self.put(argv[1], argv[2])
        return 1

    def c_getset(self, argv: Sequence[bytes]) -> Reply:
        old = as_string(self.db.data.get(argv[1]))
        self.put(argv[1], argv[2])
        return old

    def c_getdel(self, argv: Sequence[bytes]) -> Reply:
        value = as_string(self.db.data.get(argv[1]))
        if value is not None:
            self.delete(argv[1])
        return value

    def c_mget(self, argv: Sequence[bytes]) -> Reply:
        get = self.db.data.get
        values = [get(key) for key in argv[1:]]
        return [v if v is None or type(v) is bytes else None for v in values]

    def c_mset(self, argv: Sequence[bytes]) -> Reply:
        db = self.db
        if db.expires or db.watched or db.scan is not None:
            for i in range(1, len(argv), 2):
                self.put(argv[i], argv[i + 1])
        else:
            data = db.data
            for i in range(1, len(argv), 2):
                data[argv[i]] = argv[i + 1]
        return OK

    def c_msetnx(self, argv: Sequence[bytes]) -> Reply:
        data = self.db.data
        if any(argv[i] in data for i in range(1, len(argv), 2)):
            return 0
        for i in range(1, len(argv), 2):
            self.put(argv[i], argv[i + 1])
        return 1

    # --- counters ----------------------------------------------------------------------------

    def _incr_by(self, key: bytes, incr: int) -> Reply:
        value = incremented(as_string(self.db.data.get(key)), incr, ERR_NOT_INTEGER)
        if isinstance(value, ErrorReply):
            return value
        self.update(key, b"%d" % value)
        return value

    def c_incr(self, argv: Sequence[bytes]) -> Reply:
        return self._incr_by(argv[1], 1)

    def c_decr(self, argv: Sequence[bytes]) -> Reply:
        return self._incr_by(argv[1], -1)

    def c_incrby(self, argv: Sequence[bytes]) -> Reply:
        incr = string2ll(argv[2])
        if incr is None:
            return ERR_NOT_INTEGER
        return self._incr_by(argv[1], incr)

    def c_decrby(self, argv: Sequence[bytes]) -> Reply:
        incr = string2ll(argv[2])
        if incr is None:
            return ERR_NOT_INTEGER
        if incr == LLONG_MIN:
            return ERR_DECR_OVERFLOW
        return self._incr_by(argv[1], -incr)

    # --- appending and ranges -------------------------------------------------------------

    def c_append(self, argv: Sequence[bytes]) -> Reply:
        old = as_string(self.db.data.get(argv[1])) or b""
        if len(old) + len(argv[2]) > self.max_value_len:
            return ERR_TOO_BIG
        new = old + argv[2]
        self.update(argv[1], new)
        return len(new)

    def c_strlen(self, argv: Sequence[bytes]) -> Reply:
        return len(as_string(self.db.data.get(argv[1])) or b"")

    def c_getrange(self, argv: Sequence[bytes]) -> Reply:
        start, end = string2ll(argv[2]), string2ll(argv[3])
        if start is None or end is None:
            return ERR_NOT_INTEGER
        value = as_string(self.db.data.get(argv[1])) or b""
        n = len(value)
        if start < 0 and end < 0 and start > end:
            return b""
        if start < 0:
            start += n
        if end < 0:
            end += n
        start, end = max(start, 0), min(max(end, 0), n - 1)
        if start > end or n == 0:
            return b""
        return value[start : end + 1]

    c_substr = c_getrange

    def c_setrange(self, argv: Sequence[bytes]) -> Reply:
        offset = string2ll(argv[2])
        if offset is None:
            return ERR_NOT_INTEGER
        if offset < 0:
            return ERR_OFFSET_RANGE
        key, patch = argv[1], argv[3]
        old = as_string(self.db.data.get(key))
        if not patch:
            return 0 if old is None else len(old)
        if offset + len(patch) > self.max_value_len:
            return ERR_TOO_BIG
        base = old or b""
        if len(base) < offset:
            base += bytes(offset - len(base))
        new = base[:offset] + patch + base[offset + len(patch) :]
        self.update(key, new)
        return len(new)

    def c_incrbyfloat(self, argv: Sequence[bytes]) -> Reply:
        key = argv[1]
        old = as_string(self.db.data.get(key))
        value = Fraction(0) if old is None else parse_ld(old)
        incr = parse_ld(argv[2])
        if value is None or incr is None:
            return ERR_NOT_FLOAT
        total = add_ld(value, incr)
        if total is None or isinstance(total, tuple):
            return ERR_NAN_OR_INF
        new = format_ld(total)
        self.update(key, new)
        return new

    def c_lcs(self, argv: Sequence[bytes]) -> Reply:
        data = self.db.data
        va, vb = data.get(argv[1], b""), data.get(argv[2], b"")
        if type(va) is not bytes or type(vb) is not bytes:
            return ERR_LCS_TYPE
        a, b = va, vb
        length_only = idx = with_len = False
        min_match = 0
        j = 3
        while j < len(argv):
            opt = argv[j].lower()
            if opt == b"idx":
                idx = True
            elif opt == b"len":
                length_only = True
            elif opt == b"withmatchlen":
                with_len = True
            elif opt == b"minmatchlen" and j + 1 < len(argv):
                n = string2ll(argv[j + 1])
                if n is None:
                    return ERR_NOT_INTEGER
                min_match = max(n, 0)
                j += 1
            else:
                return ERR_SYNTAX
            j += 1
        if length_only and idx:
            return ErrorReply("ERR If you want both the length and indexes, please just use IDX.")
        return lcs(a, b, length_only, idx, min_match, with_len, self.max_value_len)

    def c_cas(self, argv: Sequence[bytes]) -> Reply:
        # pyxos: CAS key expected new -> 1 swapped (as SET: the TTL goes), 0 not. A missing
        # key never matches, even an empty expected value: CAS only replaces.
        key = argv[1]
        current = as_string(self.db.data.get(key))
        if current is None or current != argv[2]:
            return 0
        self.put(key, argv[3])
        return 1
