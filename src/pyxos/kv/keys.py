"""Keyspace commands: DEL, EXISTS, TYPE, KEYS, SCAN, RANDOMKEY, RENAME, COPY, MOVE, SWAPDB,
FLUSHDB, TOUCH, OBJECT, MEMORY USAGE. Checks and replies follow Redis's ``db.c`` and
``object.c``.

Everything here is deterministic, since these commands also run inside EXEC and scripts,
on every replica: KEYS lists keys in dict order (the insertion order of the applied history,
which a snapshot preserves), SCAN in hash order (:mod:`pyxos.kv.scan`), and RANDOMKEY draws
from a generator seeded by the log position.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from pyxos.kv.commands import string2ll
from pyxos.kv.errors import (
    ERR_DB_RANGE,
    ERR_INVALID_CURSOR,
    ERR_NO_SUCH_KEY,
    ERR_NOT_INTEGER,
    ERR_SYNTAX,
)
from pyxos.kv.glob import compile_pattern
from pyxos.kv.keyspace import NUM_DBS, Keyspace
from pyxos.kv.scan import ScanIndex, parse_cursor, scan_options
from pyxos.kv.values import (
    Hash,
    ListValue,
    SetValue,
    Value,
    ZSet,
    copy_value,
    encoding_name,
    type_name,
)
from pyxos.resp.replies import OK, ErrorReply, Reply, SimpleString

__all__ = ["KeyCommands", "encoding_of"]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
ERR_SAME_OBJECT = ErrorReply("ERR source and destination objects are the same")
ERR_LFU = ErrorReply(
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note"
    " that when switching between policies at runtime LRU and LFU data will take some time"
    " to adjust."
)
_STRING = SimpleString("string")
_NONE = SimpleString("none")
_SYNC_FLAGS = (b"sync", b"async")
_SHARED_INTEGERS = 10000
_EMBSTR_LIMIT = 44


def encoding_of(value: bytes) -> str:
    """What OBJECT ENCODING reports: ``int``, ``embstr`` or ``raw``, as SET would store it."""
    if len(value) <= 20 and string2ll(value) is not None:
        return "int"
    return "embstr" if len(value) <= _EMBSTR_LIMIT else "raw"


def _int_arg(arg: bytes) -> int | None:
    """A C ``int`` argument (getIntFromObjectOrReply), or None."""
    value = string2ll(arg)
    return value if value is not None and INT_MIN <= value <= INT_MAX else None


class KeyCommands(Keyspace):
    """The keyspace commands, as a mixin over :class:`~pyxos.kv.keyspace.Keyspace`."""

    _applied: int

    def c_del(self, argv: Sequence[bytes]) -> Reply:
        delete = self.delete
        return sum(1 for key in argv[1:] if delete(key))

    c_unlink = c_del

    def c_exists(self, argv: Sequence[bytes]) -> Reply:
        data = self.db.data
        return sum(1 for key in argv[1:] if key in data)

    def c_touch(self, argv: Sequence[bytes]) -> Reply:
        return self.c_exists(argv)

    def c_type(self, argv: Sequence[bytes]) -> Reply:
        value = self.db.data.get(argv[1])
        if value is None:
            return _NONE
        return _STRING if type(value) is bytes else SimpleString(type_name(value))

    def c_dbsize(self, argv: Sequence[bytes]) -> Reply:
        return len(self.db.data)

    def c_flushdb(self, argv: Sequence[bytes]) -> Reply:
        # Redis's getFlushCommandFlags: nothing, SYNC or ASYNC. Sessions survive: they
        # protect clients, not data.
        if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in _SYNC_FLAGS):
            return ERR_SYNTAX
        self.clear(self.db)
        return OK

    def c_flushall(self, argv: Sequence[bytes]) -> Reply:
        if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in _SYNC_FLAGS):
            return ERR_SYNTAX
        for db in self.dbs:
            self.clear(db)
        self._rebuild_heap()
        return OK

    def c_keys(self, argv: Sequence[bytes]) -> Reply:
        data = self.db.data
        if argv[1] == b"*":
            return list(data)
        match = compile_pattern(argv[1])
        return [k for k in data if match(k)]

    def c_scan(self, argv: Sequence[bytes]) -> Reply:
        cursor = parse_cursor(argv[1])
        if cursor is None:
            return ERR_INVALID_CURSOR
        options = scan_options(argv, 2, with_type=True)
        if isinstance(options, ErrorReply):
            return options
        count, pattern, wanted_type = options
        db = self.db
        if db.scan is None or db.scan.stale(len(db.data)):
            db.scan = ScanIndex(db.data)
        cursor, candidates = db.scan.window(cursor, min(count, 1 << 20))
        data = db.data
        seen: set[bytes] = set()
        keys: list[Reply] = []
        match = compile_pattern(pattern) if pattern is not None and pattern != b"*" else None
        for key in candidates:
            if key in data and key not in seen and (match is None or match(key)):
                seen.add(key)
                keys.append(key)
        if wanted_type is not None:
            wanted = wanted_type.decode("utf-8", "replace")
            keys = [k for k in keys if isinstance(k, bytes) and _type_of(data[k]) == wanted]
        return [b"%d" % cursor, keys]

    def c_randomkey(self, argv: Sequence[bytes]) -> Reply:
        data = self.db.data
        if not data:
            return None
        # Seeded by the log position and the draws made since EXEC or a script began (they
        # reset the count), so a script's draws are the same on every replica.
        rng = random.Random(self._applied * 1_000_003 + self.random_draws)
        self.random_draws += 1
        index = rng.randrange(len(data))
        return next(itertools.islice(data, index, None))

    # --- moving keys ------------------------------------------------------------------------

    def _place(self, db_index: int, key: bytes, value: Value, at: int | None) -> None:
        """Store a key (with its expiry time, if any) in another database."""
        here = self.db_index
        self.select(db_index)
        try:
            self.put(key, value)
            if at is not None:
                self.expire_at(key, at)
        finally:
            self.select(here)

    def _rename(self, argv: Sequence[bytes], nx: bool) -> Reply:
        src, dst = argv[1], argv[2]
        value = self.db.data.get(src)
        if value is None:
            return ERR_NO_SUCH_KEY
        if src == dst:
            return 0 if nx else OK
        at = self.db.expires.get(src)
        if dst in self.db.data:
            if nx:
                return 0
            self.delete(dst)
        self.put(dst, value)
        if at is not None:
            self.expire_at(dst, at)
        self.delete(src)
        return 1 if nx else OK

    def c_rename(self, argv: Sequence[bytes]) -> Reply:
        return self._rename(argv, nx=False)

    def c_renamenx(self, argv: Sequence[bytes]) -> Reply:
        return self._rename(argv, nx=True)

    def c_copy(self, argv: Sequence[bytes]) -> Reply:
        replace = False
        target = self.db_index
        j = 3
        while j < len(argv):
            opt = argv[j].lower()
            if opt == b"replace":
                replace = True
            elif opt == b"db" and j + 1 < len(argv):
                index = _int_arg(argv[j + 1])
                if index is None:
                    return ERR_NOT_INTEGER
                if not 0 <= index < NUM_DBS:
                    return ERR_DB_RANGE
                target = index
                j += 1
            else:
                return ERR_SYNTAX
            j += 1
        src, dst = argv[1], argv[2]
        if target == self.db_index and src == dst:
            return ERR_SAME_OBJECT
        value = self.db.data.get(src)
        if value is None:
            return 0
        at = self.db.expires.get(src)
        if dst in self.dbs[target].data:
            if not replace:
                return 0
            here = self.db_index
            self.select(target)
            self.delete(dst)
            self.select(here)
        self._place(target, dst, copy_value(value), at)
        return 1

    def c_move(self, argv: Sequence[bytes]) -> Reply:
        index = _int_arg(argv[2])
        if index is None:
            return ERR_NOT_INTEGER
        if not 0 <= index < NUM_DBS:
            return ERR_DB_RANGE
        if index == self.db_index:
            return ERR_SAME_OBJECT
        key = argv[1]
        value = self.db.data.get(key)
        if value is None or key in self.dbs[index].data:
            return 0
        at = self.db.expires.get(key)
        self._place(index, key, value, at)
        self.delete(key)
        return 1

    def c_swapdb(self, argv: Sequence[bytes]) -> Reply:
        a = _int_arg(argv[1])
        if a is None:
            return ErrorReply("ERR invalid first DB index")
        b = _int_arg(argv[2])
        if b is None:
            return ErrorReply("ERR invalid second DB index")
        if not (0 <= a < NUM_DBS and 0 <= b < NUM_DBS):
            return ERR_DB_RANGE
        if a != b:
            self.swap(a, b)
        return OK

    # --- introspection of keys --------------------------------------------------------------

    def c_object(self, argv: Sequence[bytes]) -> Reply:
        sub = argv[1].lower()
        if sub == b"help":
            return _OBJECT_HELP
        value = self.db.data.get(argv[2])
        if sub == b"freq":
            return None if value is None else ERR_LFU
        if value is None:
            return None
        if type(value) is not bytes:
            if sub == b"encoding":
                return encoding_name(value)
            return 1 if sub == b"refcount" else 0
        if sub == b"encoding":
            return encoding_of(value)
        if sub == b"refcount":
            shared = encoding_of(value) == "int" and 0 <= int(value) < _SHARED_INTEGERS
            return INT_MAX if shared else 1
        # IDLETIME: access times are not replicated (reads never reach the log), so every
        # key reports 0, as a key read a moment ago would.
        return 0

    def c_memory(self, argv: Sequence[bytes]) -> Reply:
        sub = argv[1].lower()
        if sub == b"help":
            return _MEMORY_HELP
        if len(argv) not in (3, 5) or (len(argv) == 5 and argv[3].lower() != b"samples"):
            return ERR_SYNTAX
        if len(argv) == 5 and string2ll(argv[4]) is None:
            return ERR_NOT_INTEGER
        value = self.db.data.get(argv[2])
        if value is None:
            return None
        if type(value) is not bytes:
            return container_usage(argv[2], value)
        return memory_usage(argv[2], value)


def _jemalloc_size(n: int) -> int:
    """jemalloc's size class for an ``n``-byte allocation (what Redis's zmalloc reports)."""
    if n <= 8:
        return 8
    if n <= 128:
        return (n + 15) // 16 * 16
    step = 1 << (n - 1).bit_length() - 3
    return (n + step - 1) // step * step


def _sds_size(length: int) -> int:
    header = 1 if length < 32 else 3 if length < 256 else 5 if length < 65536 else 9
    return _jemalloc_size(header + length + 1)


def memory_usage(key: bytes, value: bytes) -> int:
    """MEMORY USAGE as Redis 7 computes it for a string: the key's sds, the value object
    (an integer lives in the object, a short string is embedded with it, a long one is
    allocated apart) and the dict entry. Python's own overhead differs; this is the figure
    a Redis user sizing a dataset expects."""
    robj, entry = 16, 24
    encoding = encoding_of(value)
    if encoding == "int":
        obj = robj
    elif encoding == "embstr":
        obj = _jemalloc_size(robj + 3 + len(value) + 1)
    else:
        obj = robj + _sds_size(len(value))
    return _sds_size(len(key)) + obj + entry


def _type_of(value: Value) -> str:
    return "string" if type(value) is bytes else type_name(value)


def container_usage(key: bytes, value: Value) -> int:
    """MEMORY USAGE of a container: an estimate in Redis's terms (the key, the object, and
    each element's bytes plus a compact encoding's or a hash table's per-element cost)."""
    if isinstance(value, Hash):
        items = [b for pair in value.items() for b in pair]
    elif isinstance(value, ZSet):
        items = list(value.scores)
    elif isinstance(value, SetValue | ListValue):
        items = list(value)
    else:
        items = [value]
    small = encoding_name(value) in ("listpack", "intset", "quicklist")
    per, table = (2, 0) if small else (24, 64)
    return _sds_size(len(key)) + 16 + 24 + table + sum(len(b) + per for b in items)


_OBJECT_HELP: list[Reply] = [
    SimpleString(line)
    for line in (
        "OBJECT <subcommand> <key>. Subcommands are:",
        "ENCODING <key>",
        "    How the value would be stored by Redis: int, embstr or raw.",
        "FREQ <key>",
        "    Access frequency (needs an LFU maxmemory policy, which pyxos does not have).",
        "IDLETIME <key>",
        "    Seconds since the last access (always 0: reads are not replicated).",
        "REFCOUNT <key>",
        "    References to the value (2147483647 for Redis's shared small integers).",
        "HELP",
        "    Print this help.",
    )
]
_MEMORY_HELP: list[Reply] = [
    SimpleString(line)
    for line in (
        "MEMORY <subcommand> [<arg> ...]. Subcommands are:",
        "USAGE <key> [SAMPLES <count>]",
        "    Bytes Redis would use to hold <key> and its value.",
        "HELP",
        "    Print this help.",
    )
]
