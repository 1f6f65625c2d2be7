"""List commands (LPUSH, LPOP with a count, LRANGE, LSET, LREM, LTRIM, LINSERT, LPOS,
LMOVE, RPOPLPUSH, and BLMOVE's non-blocking half), with the checks and replies of Redis's
``t_list.c``. A list is a :class:`~pyxos.kv.values.ListValue` (a deque). A push tells the
blocked clients of this node (:meth:`~pyxos.kv.typed_keyspace.TypedKeyspace.ready`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from pyxos.kv.blocking_pops import parse_timeout
from pyxos.kv.errors import ERR_NO_SUCH_KEY, ERR_NOT_INTEGER, ERR_SYNTAX
from pyxos.kv.ranks import position, rank_slice
from pyxos.kv.sets import ERR_POSITIVE
from pyxos.kv.typed_keyspace import TypedKeyspace
from pyxos.kv.values import NULL_ARRAY, ListValue
from pyxos.resp.integers import LLONG_MIN, string2ll
from pyxos.resp.replies import OK, ErrorReply, Reply

__all__ = ["ListCommands"]

ERR_INDEX = ErrorReply("ERR index out of range")
ERR_RANK_ZERO = ErrorReply(
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or"
    " use negative to start from the end of the list"
)
ERR_COUNT_NEGATIVE = ErrorReply("ERR COUNT can't be negative")
ERR_MAXLEN_NEGATIVE = ErrorReply("ERR MAXLEN can't be negative")
_ENDS = {b"left": True, b"right": False}


class ListCommands(TypedKeyspace):
    """The list commands, as a mixin over :class:`~pyxos.kv.typed_keyspace.TypedKeyspace`."""

    def _push(self, argv: Sequence[bytes], left: bool, only_existing: bool) -> Reply:
        key = argv[1]
        lst = self.value_of(key, ListValue)
        if lst is None:
            if only_existing:
                return 0
            lst = self.create(key, ListValue())
        if left:
            lst.extendleft(argv[2:])
        else:
            lst.extend(argv[2:])
        self.changed(key, lst)
        self.ready(key)
        return len(lst)

    def c_lpush(self, argv: Sequence[bytes]) -> Reply:
        return self._push(argv, left=True, only_existing=False)

    def c_rpush(self, argv: Sequence[bytes]) -> Reply:
        return self._push(argv, left=False, only_existing=False)

    def c_lpushx(self, argv: Sequence[bytes]) -> Reply:
        return self._push(argv, left=True, only_existing=True)

    def c_rpushx(self, argv: Sequence[bytes]) -> Reply:
        return self._push(argv, left=False, only_existing=True)

    def list_pop(self, key: bytes, left: bool) -> bytes:
        """Pop one element of a non-empty list (deleting the key if that empties it)."""
        lst = self.value_of(key, ListValue)
        assert lst is not None
        value = lst.popleft() if left else lst.pop()
        self.changed(key, lst)
        return value

    def _pop(self, argv: Sequence[bytes], left: bool) -> Reply:
        if len(argv) > 3:
            return ErrorReply(f"ERR wrong number of arguments for '{'lpop' if left else 'rpop'}'"
                              " command")  # fmt: skip
        count = None
        if len(argv) == 3:
            count = string2ll(argv[2])
            if count is None or count < 0:
                return ERR_POSITIVE
        lst = self.value_of(argv[1], ListValue)
        if lst is None:
            return None if count is None else NULL_ARRAY
        if count is None:
            return self.list_pop(argv[1], left)
        out: list[Reply] = []
        for _ in range(min(count, len(lst))):
            out.append(lst.popleft() if left else lst.pop())
        self.changed(argv[1], lst)
        return out

    def c_lpop(self, argv: Sequence[bytes]) -> Reply:
        return self._pop(argv, left=True)

    def c_rpop(self, argv: Sequence[bytes]) -> Reply:
        return self._pop(argv, left=False)

    def c_llen(self, argv: Sequence[bytes]) -> Reply:
        lst = self.value_of(argv[1], ListValue)
        return 0 if lst is None else len(lst)

    def c_lindex(self, argv: Sequence[bytes]) -> Reply:
        lst = self.value_of(argv[1], ListValue)
        if lst is None:
            return None
        index = position(argv[2], len(lst))
        if index is None:
            return ERR_NOT_INTEGER
        return lst[index] if 0 <= index < len(lst) else None

    def c_lrange(self, argv: Sequence[bytes]) -> Reply:
        start, end = string2ll(argv[2]), string2ll(argv[3])
        if start is None or end is None:
            return ERR_NOT_INTEGER
        lst = self.value_of(argv[1], ListValue)
        if lst is None:
            return []
        s, e = rank_slice(len(lst), start, end)
        return list(itertools.islice(lst, s, e))

    def c_lset(self, argv: Sequence[bytes]) -> Reply:
        lst = self.value_of(argv[1], ListValue)
        if lst is None:
            return ERR_NO_SUCH_KEY
        index = position(argv[2], len(lst))
        if index is None:
            return ERR_NOT_INTEGER
        if not 0 <= index < len(lst):
            return ERR_INDEX
        lst[index] = argv[3]
        self.changed(argv[1], lst)
        return OK

    def c_lrem(self, argv: Sequence[bytes]) -> Reply:
        count = string2ll(argv[2])
        if count is None:
            return ERR_NOT_INTEGER
        lst = self.value_of(argv[1], ListValue)
        if lst is None:
            return 0
        value = argv[3]
        items = list(lst) if count >= 0 else list(reversed(lst))
        limit = abs(count) if count else len(items)
        kept: list[bytes] = []
        removed = 0
        for item in items:
            if item == value and removed < limit:
                removed += 1
            else:
                kept.append(item)
        if removed:
            lst.clear()
            lst.extend(kept if count >= 0 else reversed(kept))
            self.changed(argv[1], lst)
        return removed

    def c_ltrim(self, argv: Sequence[bytes]) -> Reply:
        start, end = string2ll(argv[2]), string2ll(argv[3])
        if start is None or end is None:
            return ERR_NOT_INTEGER
        lst = self.value_of(argv[1], ListValue)
        if lst is None:
            return OK
        s, e = rank_slice(len(lst), start, end)
        kept = list(itertools.islice(lst, s, e))
        if len(kept) != len(lst):
            lst.clear()
            lst.extend(kept)
        self.changed(argv[1], lst)  # even when nothing went, as Redis signals it
        return OK

    def c_linsert(self, argv: Sequence[bytes]) -> Reply:
        where = argv[2].lower()
        if where not in (b"before", b"after"):
            return ERR_SYNTAX
        lst = self.value_of(argv[1], ListValue)
        if lst is None:
            return 0
        try:
            at = lst.index(argv[3])
        except ValueError:
            return -1
        lst.insert(at if where == b"before" else at + 1, argv[4])
        self.changed(argv[1], lst)
        return len(lst)

    def c_lpos(self, argv: Sequence[bytes]) -> Reply:
        rank, count, maxlen = 1, None, 0
        j = 3
        while j < len(argv):
            opt = argv[j].lower()
            if j + 1 >= len(argv):
                return ERR_SYNTAX
            n = string2ll(argv[j + 1])
            if opt == b"rank":
                if n is None:
                    return ERR_NOT_INTEGER
                if n == 0:
                    return ERR_RANK_ZERO
                rank = -1 if n == LLONG_MIN else n  # Redis's negation overflows to this
            elif opt == b"count":
                if n is None or n < 0:
                    return ERR_COUNT_NEGATIVE
                count = n
            elif opt == b"maxlen":
                if n is None or n < 0:
                    return ERR_MAXLEN_NEGATIVE
                maxlen = n
            else:
                return ERR_SYNTAX
            j += 2
        lst = self.value_of(argv[1], ListValue)
        if lst is None:
            return None if count is None else []
        size = len(lst)
        order = range(size) if rank > 0 else range(size - 1, -1, -1)
        skip = abs(rank) - 1
        wanted = 1 if count is None else (count or size)
        found: list[Reply] = []
        for scanned, i in enumerate(order):
            if maxlen and scanned >= maxlen:
                break
            if lst[i] == argv[2]:
                if skip:
                    skip -= 1
                    continue
                found.append(i)
                if len(found) >= wanted:
                    break
        if count is None:
            return found[0] if found else None
        return found

    def list_move(self, src: bytes, dst: bytes, left_from: bool, left_to: bool) -> Reply:
        """LMOVE's work: pop from ``src``, push onto ``dst``; None if ``src`` is empty."""
        source = self.value_of(src, ListValue)
        if source is None:
            return None
        target = self.value_of(dst, ListValue)
        value = source.popleft() if left_from else source.pop()
        if target is None:
            target = self.create(dst, ListValue())
        if left_to:
            target.appendleft(value)
        else:
            target.append(value)
        self.changed(src, source)  # deletes the source if that emptied it
        self.changed(dst, target)
        self.ready(dst)
        return value

    def c_lmove(self, argv: Sequence[bytes]) -> Reply:
        a, b = _ENDS.get(argv[3].lower()), _ENDS.get(argv[4].lower())
        if a is None or b is None:
            return ERR_SYNTAX
        return self.list_move(argv[1], argv[2], a, b)

    def c_rpoplpush(self, argv: Sequence[bytes]) -> Reply:
        return self.list_move(argv[1], argv[2], False, True)

    def c_blmove(self, argv: Sequence[bytes]) -> Reply:
        a, b = _ENDS.get(argv[3].lower()), _ENDS.get(argv[4].lower())
        if a is None or b is None:
            return ERR_SYNTAX
        timeout = parse_timeout(argv[5])
        if isinstance(timeout, ErrorReply):
            return timeout
        return self.list_move(argv[1], argv[2], a, b)
