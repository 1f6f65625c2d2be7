"""Ranges of a sorted set: by rank, by score and by member (lex), as ZRANGE and its legacy
forms, ZRANGESTORE, ZCOUNT, ZLEXCOUNT and ZREMRANGEBY* read them (Redis's ``t_zset.c``).

Every range becomes a slice ``[start, end)`` of positions in the set's ``SortedList``,
found by bisection, so a range costs O(log n + m). A score bound is turned into a position
with the next double above it (``math.nextafter``) for the exclusive and inclusive ends;
a lex range assumes what Redis assumes, that the members it looks at share one score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pyxos.kv.commands import string2ll
from pyxos.kv.errors import ERR_NOT_INTEGER, ERR_SYNTAX
from pyxos.kv.ranks import rank_slice
from pyxos.kv.typed_keyspace import TypedKeyspace
from pyxos.kv.values import ZSet, format_score, strtod
from pyxos.resp.replies import ErrorReply, Reply

__all__ = [
    "ZRangeCommands",
    "lex_slice",
    "parse_lex_range",
    "parse_score_range",
    "score_slice",
    "with_scores",
]

ERR_MINMAX_FLOAT = ErrorReply("ERR min or max is not a float")
ERR_MINMAX_LEX = ErrorReply("ERR min or max not valid string range item")
ERR_LIMIT_RANK = ErrorReply(
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
)
ERR_WITHSCORES_LEX = ErrorReply(
    "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
)
_INF = math.inf

ScoreRange = tuple[float, bool, float, bool]
"""``(min, min exclusive, max, max exclusive)``."""
LexBound = tuple[int, bytes]
"""``(kind, member)``: kind -1 for ``-``, 1 for ``+``, 0 inclusive, 2 exclusive."""


def _score_item(text: bytes) -> tuple[float, bool] | None:
    exclusive = text[:1] == b"("
    body = text[1:] if exclusive else text
    stripped = body.lstrip(b" \t\n\v\f\r")
    if not body:
        return 0.0, exclusive  # strtod of nothing is 0, and nothing is left over
    value = strtod(stripped) if stripped else None
    if value is None or math.isnan(value):
        return None
    return value, exclusive


def parse_score_range(lo: bytes, hi: bytes) -> ScoreRange | None:
    """Redis's zslParseRange: ``(`` makes a bound exclusive; strtod reads the number."""
    a, b = _score_item(lo), _score_item(hi)
    if a is None or b is None:
        return None
    return a[0], a[1], b[0], b[1]


def _lex_item(text: bytes) -> LexBound | None:
    if text == b"-":
        return (-1, b"")
    if text == b"+":
        return (1, b"")
    if text[:1] == b"[":
        return (0, text[1:])
    if text[:1] == b"(":
        return (2, text[1:])
    return None


def parse_lex_range(lo: bytes, hi: bytes) -> tuple[LexBound, LexBound] | None:
    a, b = _lex_item(lo), _lex_item(hi)
    return None if a is None or b is None else (a, b)


def score_slice(z: ZSet, r: ScoreRange) -> tuple[int, int]:
    """Positions ``[start, end)`` of the members whose score is in the range."""
    lo, lo_ex, hi, hi_ex = r
    index = z.index
    if lo > hi or (lo == hi and (lo_ex or hi_ex)):
        return 0, 0
    if lo_ex:
        start = len(index) if lo == _INF else index.bisect_left((math.nextafter(lo, _INF), b""))
    else:
        start = index.bisect_left((lo, b""))
    if hi_ex:
        end = index.bisect_left((hi, b""))
    else:
        end = len(index) if hi == _INF else index.bisect_left((math.nextafter(hi, _INF), b""))
    return start, max(start, end)


def _first(n: int, pred: Callable[[int], bool]) -> int:
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def lex_slice(z: ZSet, lo: LexBound, hi: LexBound) -> tuple[int, int]:
    """Positions ``[start, end)`` of the members in the lex range."""
    index = z.index
    n = len(index)
    if lo[0] == 1 or hi[0] == -1:
        return 0, 0
    if (
        lo[0] in (0, 2)
        and hi[0] in (0, 2)
        and (lo[1] > hi[1] or (lo[1] == hi[1] and (lo[0] == 2 or hi[0] == 2)))
    ):
        return 0, 0

    def ge_min(i: int) -> bool:
        m = index[i][1]
        return lo[0] == -1 or (m > lo[1] if lo[0] == 2 else m >= lo[1])

    def gt_max(i: int) -> bool:
        m = index[i][1]
        return hi[0] != 1 and (m >= hi[1] if hi[0] == 2 else m > hi[1])

    start = _first(n, ge_min)
    end = _first(n, gt_max)
    return start, max(start, end)


def with_scores(items: Sequence[tuple[float, bytes]], scores: bool) -> list[Reply]:
    out: list[Reply] = []
    for score, member in items:
        out.append(member)
        if scores:
            out.append(format_score(score))
    return out


class _Query:
    __slots__ = ("by", "limit", "offset", "rev", "withscores")

    def __init__(self) -> None:
        self.by = "rank"
        self.rev = False
        self.withscores = False
        self.offset = 0
        self.limit = -1


Span = Callable[[ZSet], tuple[int, int]]
"""A range of a sorted set's members, found in a given set as ``[start, end)`` ranks."""


def _rank_span(argv: Sequence[bytes]) -> Span | ErrorReply:
    """``start stop`` (argv[2:4]) as ranks, or the error ZREMRANGEBYRANK answers."""
    a, b = string2ll(argv[2]), string2ll(argv[3])
    if a is None or b is None:
        return ERR_NOT_INTEGER
    return lambda z: rank_slice(len(z), a, b)


def _score_span(argv: Sequence[bytes]) -> Span | ErrorReply:
    """``min max`` (argv[2:4]) as scores, or the error ZCOUNT and ZREMRANGEBYSCORE answer."""
    r = parse_score_range(argv[2], argv[3])
    if r is None:
        return ERR_MINMAX_FLOAT
    return lambda z: score_slice(z, r)


def _lex_span(argv: Sequence[bytes]) -> Span | ErrorReply:
    """``min max`` (argv[2:4]) as members, or the error ZLEXCOUNT and ZREMRANGEBYLEX answer."""
    lex = parse_lex_range(argv[2], argv[3])
    if lex is None:
        return ERR_MINMAX_LEX
    return lambda z: lex_slice(z, lex[0], lex[1])


class ZRangeCommands(TypedKeyspace):
    """The range commands, as a mixin over :class:`~pyxos.kv.typed_keyspace.TypedKeyspace`."""

    def _select(
        self, argv: Sequence[bytes], first: int, by: str | None, rev: bool | None, store: bool
    ) -> tuple[_Query, list[tuple[float, bytes]]] | ErrorReply:
        """Parse a ZRANGE-like command whose key is ``argv[first]`` and return the chosen
        ``(score, member)`` pairs in reply order (Redis's zrangeGenericCommand)."""
        q = _Query()
        j = first + 3
        while j < len(argv):
            opt = argv[j].lower()
            left = len(argv) - j - 1
            if opt == b"withscores" and not store:
                q.withscores = True
            elif opt == b"limit" and left >= 2:
                offset, limit = string2ll(argv[j + 1]), string2ll(argv[j + 2])
                if offset is None or limit is None:
                    return ERR_NOT_INTEGER
                q.offset, q.limit = offset, limit
                j += 2
            elif rev is None and opt == b"rev":
                rev = True
            elif by is None and opt == b"bylex":
                by = "lex"
            elif by is None and opt == b"byscore":
                by = "score"
            else:
                return ERR_SYNTAX
            j += 1
        q.rev = bool(rev)
        q.by = by or "rank"
        if q.limit != -1 and q.by == "rank":
            return ERR_LIMIT_RANK
        if q.withscores and q.by == "lex":
            return ERR_WITHSCORES_LEX
        lo, hi = argv[first + 1], argv[first + 2]
        if q.rev and q.by != "rank":
            lo, hi = hi, lo
        rank: tuple[int, int] | None = None
        score: ScoreRange | None = None
        lex: tuple[LexBound, LexBound] | None = None
        if q.by == "rank":
            a, b = string2ll(lo), string2ll(hi)
            if a is None or b is None:
                return ERR_NOT_INTEGER
            rank = (a, b)
        elif q.by == "score":
            score = parse_score_range(lo, hi)
            if score is None:
                return ERR_MINMAX_FLOAT
        else:
            lex = parse_lex_range(lo, hi)
            if lex is None:
                return ERR_MINMAX_LEX
        z = self.value_of(argv[first], ZSet)
        if z is None:
            return q, []
        n = len(z)
        if rank is not None:
            if q.rev:
                s, e = rank_slice(n, rank[0], rank[1])
                s, e = n - e, n - s
            else:
                s, e = rank_slice(n, rank[0], rank[1])
        elif score is not None:
            s, e = score_slice(z, score)
        else:
            assert lex is not None
            s, e = lex_slice(z, lex[0], lex[1])
        if q.by != "rank":
            if q.offset < 0 or (q.offset > 0 and q.offset >= n):
                return q, []
            count = e - s
            take = count - q.offset if q.limit < 0 else min(q.limit, count - q.offset)
            if take <= 0:
                return q, []
            if q.rev:
                e -= q.offset
                s = e - take
            else:
                s += q.offset
                e = s + take
        items = list(z.index.islice(s, e))
        if q.rev:
            items.reverse()
        return q, items

    def _range_reply(self, argv: Sequence[bytes], by: str | None, rev: bool | None) -> Reply:
        result = self._select(argv, 1, by, rev, store=False)
        if isinstance(result, ErrorReply):
            return result
        q, items = result
        return with_scores(items, q.withscores)

    def c_zrange(self, argv: Sequence[bytes]) -> Reply:
        return self._range_reply(argv, None, None)

    def c_zrangebyscore(self, argv: Sequence[bytes]) -> Reply:
        return self._range_reply(argv, "score", False)

    def c_zrevrangebyscore(self, argv: Sequence[bytes]) -> Reply:
        return self._range_reply(argv, "score", True)

    def c_zrevrange(self, argv: Sequence[bytes]) -> Reply:
        return self._range_reply(argv, "rank", True)

    def c_zrangebylex(self, argv: Sequence[bytes]) -> Reply:
        return self._range_reply(argv, "lex", False)

    def c_zrevrangebylex(self, argv: Sequence[bytes]) -> Reply:
        return self._range_reply(argv, "lex", True)

    def c_zrangestore(self, argv: Sequence[bytes]) -> Reply:
        result = self._select(argv, 2, None, None, store=True)
        if isinstance(result, ErrorReply):
            return result
        _, items = result
        self.delete(argv[1])
        if items:
            z = ZSet()
            for score, member in items:
                z.add(member, score)
            self.create(argv[1], z)
            self.ready(argv[1])
        return len(items)

    def c_zcount(self, argv: Sequence[bytes]) -> Reply:
        return self._count_in(argv[1], _score_span(argv))

    def c_zlexcount(self, argv: Sequence[bytes]) -> Reply:
        return self._count_in(argv[1], _lex_span(argv))

    def c_zremrangebyrank(self, argv: Sequence[bytes]) -> Reply:
        return self._remove_in(argv[1], _rank_span(argv))

    def c_zremrangebyscore(self, argv: Sequence[bytes]) -> Reply:
        return self._remove_in(argv[1], _score_span(argv))

    def c_zremrangebylex(self, argv: Sequence[bytes]) -> Reply:
        return self._remove_in(argv[1], _lex_span(argv))

    def _count_in(self, key: bytes, span: Span | ErrorReply) -> Reply:
        """ZCOUNT, ZLEXCOUNT: how many members the range finds (0 without a key)."""
        if isinstance(span, ErrorReply):
            return span
        _, s, e = self._find(key, span)
        return e - s

    def _remove_in(self, key: bytes, span: Span | ErrorReply) -> Reply:
        """ZREMRANGEBYRANK/SCORE/LEX: remove the members the range finds; how many."""
        if isinstance(span, ErrorReply):
            return span
        z, s, e = self._find(key, span)
        if z is None or e <= s:
            return 0
        for _, member in list(z.index.islice(s, e)):
            del z.scores[member]
        del z.index[s:e]
        self.changed(key, z)
        return e - s

    def _find(self, key: bytes, span: Span) -> tuple[ZSet | None, int, int]:
        """The key's sorted set (None if absent) and the ranks ``[s, e)`` the range finds."""
        z = self.value_of(key, ZSet)
        if z is None:
            return None, 0, 0
        s, e = span(z)
        return z, s, e
