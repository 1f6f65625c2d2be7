"""Redis's index arithmetic, shared by the list commands and the sorted set rank commands.

An index counts from 0 at the head, or from -1 at the tail when negative; a range of two
indexes is inclusive and clamped to what exists (LRANGE, LTRIM, ZRANGE by rank,
ZREMRANGEBYRANK all agree on it).
"""

from __future__ import annotations

from pyxos.resp.integers import string2ll

__all__ = ["position", "rank_slice"]


def position(arg: bytes, n: int) -> int | None:
    """An index argument as a position in a sequence of ``n`` (possibly out of range, which
    the caller answers as its command does); None if it is not an integer."""
    index = string2ll(arg)
    if index is None:
        return None
    return index + n if index < 0 else index


def rank_slice(n: int, start: int, end: int) -> tuple[int, int]:
    """An inclusive range of indexes (negative from the end, clamped) as ``[start, end)``."""
    if start < 0:
        start += n
    if end < 0:
        end += n
    start = max(start, 0)
    if start > end or start >= n:
        return 0, 0
    return start, min(end, n - 1) + 1
