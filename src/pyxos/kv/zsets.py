"""Sorted set commands (ZADD and its flags, ZINCRBY, ZSCORE, ZRANK, ZPOPMIN, ZRANDMEMBER,
ZSCAN, ZUNIONSTORE...), with the checks and replies of Redis's ``t_zset.c``; ranges are in
:mod:`pyxos.kv.zset_ranges`. A sorted set is a :class:`~pyxos.kv.values.ZSet`.

Scores are IEEE doubles as in Redis and are printed as Redis 7.0 prints them (``%.17g``,
``inf``, ``-inf``): :func:`~pyxos.kv.values.format_score`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pyxos.kv.errors import ERR_NOT_INTEGER, ERR_SYNTAX
from pyxos.kv.sets import ERR_POSITIVE
from pyxos.kv.subscan import ScanView, scan_container
from pyxos.kv.typed_keyspace import TypedKeyspace
from pyxos.kv.values import (
    ERR_NOT_FLOAT,
    WRONGTYPE,
    SetValue,
    ZSet,
    encoding_name,
    format_score,
    parse_double,
)
from pyxos.kv.zset_ranges import ZRangeCommands, with_scores
from pyxos.resp.integers import string2ll
from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["ZSetCommands"]

ERR_NAN = ErrorReply("ERR resulting score is not a number (NaN)")
ERR_NX_XX = ErrorReply("ERR XX and NX options at the same time are not compatible")
ERR_GT_LT_NX = ErrorReply("ERR GT, LT, and/or NX options at the same time are not compatible")
ERR_INCR_PAIR = ErrorReply("ERR INCR option supports a single increment-element pair")
ERR_WEIGHT = ErrorReply("ERR weight value is not a float")
_ZADD_FLAGS = (b"nx", b"xx", b"ch", b"incr", b"gt", b"lt")


def _scan_view(z: ZSet) -> ScanView:
    scores = z.scores
    members = [m for _, m in z.index]
    return members, lambda m: format_score(scores[m]), encoding_name(z) == "listpack"


def _by_rank(z: ZSet) -> list[tuple[float, bytes]]:
    return list(z.index)


def _with_scores(z: ZSet, picked: list[tuple[float, bytes]], withscores: bool) -> Reply:
    return with_scores(picked, withscores)


class ZSetCommands(ZRangeCommands, TypedKeyspace):
    """The sorted set commands, as a mixin over :class:`~pyxos.kv.typed_keyspace.TypedKeyspace`."""

    def c_zadd(self, argv: Sequence[bytes]) -> Reply:
        flags: set[bytes] = set()
        i = 2
        while i < len(argv) and argv[i].lower() in _ZADD_FLAGS:
            flags.add(argv[i].lower())
            i += 1
        nx, xx, gt, lt = (f in flags for f in (b"nx", b"xx", b"gt", b"lt"))
        incr, ch = b"incr" in flags, b"ch" in flags
        elements = len(argv) - i
        if elements == 0 or elements % 2:
            return ERR_SYNTAX
        if nx and xx:
            return ERR_NX_XX
        if (gt and nx) or (lt and nx) or (gt and lt):
            return ERR_GT_LT_NX
        if incr and elements > 2:
            return ERR_INCR_PAIR
        pairs: list[tuple[float, bytes]] = []
        for j in range(i, len(argv), 2):
            score = parse_double(argv[j])
            if score is None:
                return ERR_NOT_FLOAT
            pairs.append((score, argv[j + 1]))
        key = argv[1]
        z = self.value_of(key, ZSet)
        if z is None:
            if xx:
                return None if incr else 0
            z = self.create(key, ZSet())
        added = updated = 0
        result: float | None = None
        for score, member in pairs:
            current = z.scores.get(member)
            if current is None:
                if xx:
                    continue
                z.add(member, score)
                added += 1
                result = score
                continue
            if nx:
                continue
            new = current + score if incr else score
            if math.isnan(new):
                self.changed(key, z)
                return ERR_NAN
            if (gt and new <= current) or (lt and new >= current):
                continue
            result = new
            if new != current:
                z.add(member, new)
                updated += 1
        if added or updated:  # Redis tells WATCHers only of a change
            self.changed(key, z)
            self.ready(key)
        if incr:
            return None if result is None else format_score(result)
        return added + updated if ch else added

    def c_zincrby(self, argv: Sequence[bytes]) -> Reply:
        incr = parse_double(argv[2])
        if incr is None:
            return ERR_NOT_FLOAT
        key, member = argv[1], argv[3]
        z = self.value_of(key, ZSet)
        current = 0.0 if z is None else z.scores.get(member, 0.0)
        new = current + incr
        if math.isnan(new):
            return ERR_NAN
        if z is None:
            z = self.create(key, ZSet())
        z.add(member, new)
        self.changed(key, z)
        self.ready(key)
        return format_score(new)

    def c_zrem(self, argv: Sequence[bytes]) -> Reply:
        z = self.value_of(argv[1], ZSet)
        if z is None:
            return 0
        removed = sum(1 for m in argv[2:] if z.remove(m))
        if removed:
            self.changed(argv[1], z)
        return removed

    def c_zscore(self, argv: Sequence[bytes]) -> Reply:
        z = self.value_of(argv[1], ZSet)
        score = None if z is None else z.scores.get(argv[2])
        return None if score is None else format_score(score)

    def c_zmscore(self, argv: Sequence[bytes]) -> Reply:
        z = self.value_of(argv[1], ZSet)
        scores = {} if z is None else z.scores
        out: list[Reply] = []
        for m in argv[2:]:
            score = scores.get(m)
            out.append(None if score is None else format_score(score))
        return out

    def c_zcard(self, argv: Sequence[bytes]) -> Reply:
        z = self.value_of(argv[1], ZSet)
        return 0 if z is None else len(z)

    def c_zrank(self, argv: Sequence[bytes]) -> Reply:
        z = self.value_of(argv[1], ZSet)
        return None if z is None else z.rank(argv[2])

    def c_zrevrank(self, argv: Sequence[bytes]) -> Reply:
        z = self.value_of(argv[1], ZSet)
        rank = None if z is None else z.rank(argv[2])
        return None if rank is None or z is None else len(z) - 1 - rank

    # --- popping -------------------------------------------------------------------------------

    def pop_extreme(self, key: bytes, count: int, highest: bool) -> list[Reply]:
        """Remove and return up to ``count`` members with the lowest (or highest) scores,
        as ``[member, score, member, score...]``; the key must hold a non-empty set."""
        z = self.value_of(key, ZSet)
        assert z is not None
        out: list[Reply] = []
        for _ in range(min(count, len(z))):
            score, member = z.index.pop(-1 if highest else 0)
            del z.scores[member]
            out += [member, format_score(score)]
        self.changed(key, z)
        return out

    def _zpop(self, argv: Sequence[bytes], highest: bool) -> Reply:
        if len(argv) > 3:
            return ERR_SYNTAX
        count = 1
        if len(argv) == 3:
            n = string2ll(argv[2])
            if n is None or n < 0:
                return ERR_POSITIVE
            count = n
        z = self.value_of(argv[1], ZSet)
        if z is None or count == 0:
            return []
        return self.pop_extreme(argv[1], count, highest)

    def c_zpopmin(self, argv: Sequence[bytes]) -> Reply:
        return self._zpop(argv, highest=False)

    def c_zpopmax(self, argv: Sequence[bytes]) -> Reply:
        return self._zpop(argv, highest=True)

    # --- random members and scanning ---------------------------------------------------------

    def c_zrandmember(self, argv: Sequence[bytes]) -> Reply:
        return self.random_members(argv, ZSet, b"withscores", _by_rank, _with_scores)

    def c_zscan(self, argv: Sequence[bytes]) -> Reply:
        return scan_container(argv, lambda key: self.value_of(key, ZSet), _scan_view)

    # --- algebra -------------------------------------------------------------------------------

    def _combine(self, argv: Sequence[bytes], op: str) -> Reply:
        name = argv[0].lower().decode("utf-8", "replace")
        numkeys = string2ll(argv[2])
        if numkeys is None:
            return ERR_NOT_INTEGER
        if numkeys < 1:
            return ErrorReply(f"ERR at least 1 input key is needed for '{name}' command")
        if numkeys > len(argv) - 3:
            return ERR_SYNTAX
        sources: list[dict[bytes, float]] = []
        for key in argv[3 : 3 + numkeys]:
            value = self.db.data.get(key)
            if value is None:
                sources.append({})
            elif isinstance(value, ZSet):
                sources.append(value.scores)
            elif isinstance(value, SetValue):
                sources.append(dict.fromkeys(value, 1.0))
            else:
                return WRONGTYPE
        weights = [1.0] * numkeys
        aggregate = b"sum"
        j = 3 + numkeys
        while j < len(argv):
            left = len(argv) - j
            opt = argv[j].lower()
            if op != "diff" and opt == b"weights" and left >= numkeys + 1:
                for k in range(numkeys):
                    w = parse_double(argv[j + 1 + k])
                    if w is None:
                        return ERR_WEIGHT
                    weights[k] = w
                j += numkeys + 1
            elif op != "diff" and opt == b"aggregate" and left >= 2:
                aggregate = argv[j + 1].lower()
                if aggregate not in (b"sum", b"min", b"max"):
                    return ERR_SYNTAX
                j += 2
            else:
                return ERR_SYNTAX
        result = _algebra(op, sources, weights, aggregate)
        dst = argv[1]
        self.delete(dst)
        if result:
            z = ZSet()
            for member, score in result.items():
                z.add(member, score)
            self.create(dst, z)
            self.ready(dst)
        return len(result)

    def c_zunionstore(self, argv: Sequence[bytes]) -> Reply:
        return self._combine(argv, "union")

    def c_zinterstore(self, argv: Sequence[bytes]) -> Reply:
        return self._combine(argv, "inter")

    def c_zdiffstore(self, argv: Sequence[bytes]) -> Reply:
        return self._combine(argv, "diff")


def _weighted(score: float, weight: float) -> float:
    value = score * weight
    return 0.0 if math.isnan(value) else value


def _aggregate(a: float, b: float, how: bytes) -> float:
    if how == b"sum":
        total = a + b
        return 0.0 if math.isnan(total) else total
    return min(a, b) if how == b"min" else max(a, b)


def _algebra(
    op: str, sources: list[dict[bytes, float]], weights: list[float], how: bytes
) -> dict[bytes, float]:
    """ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE over the sources, in Redis's order of
    accumulation (smallest source first for union and intersection), which decides the
    last bits of a sum."""
    if op == "diff":
        rest = sources[1:]
        return {m: s for m, s in sources[0].items() if not any(m in o for o in rest)}
    order = sorted(range(len(sources)), key=lambda k: len(sources[k]))
    result: dict[bytes, float] = {}
    if op == "union":
        for k in order:
            for member, score in sources[k].items():
                value = _weighted(score, weights[k])
                old = result.get(member)
                result[member] = value if old is None else _aggregate(old, value, how)
        return result
    smallest = order[0]
    for member, score in sources[smallest].items():
        value = _weighted(score, weights[smallest])
        for k in order[1:]:
            other = sources[k].get(member)
            if other is None:
                break
            value = _aggregate(value, _weighted(other, weights[k]), how)
        else:
            result[member] = value
    return result
