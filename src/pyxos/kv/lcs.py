"""LCS: the longest common subsequence of two strings, as Redis 7.0 computes and reports it.

Redis fills the (len(a)+1) x (len(b)+1) dynamic-programming table and walks it back from the
end, preferring to step in ``a`` only when that keeps a strictly longer LCS; which of several
longest subsequences it reports, and the match ranges IDX lists, follow from that walk. A
Python table of that size would be far too slow, so the table is kept as one bit vector per
row (the bit-parallel LCS of Allison, Dix and Hyyrö: a row costs a few big-integer operations)
and any entry is read back as ``LCS(i, j) = j - popcount(row_i & (2**j - 1))``. The walk is
then Redis's own, step for step, so the answers are the same.
"""

from __future__ import annotations

from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["lcs"]

TOO_BIG = ErrorReply("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")


def _rows(a: bytes, b: bytes) -> list[int]:
    """Row bit vectors: bit j of row i is 0 where LCS(i, j+1) = LCS(i, j) + 1."""
    mask = (1 << len(b)) - 1
    matches: dict[int, int] = {}
    for j, c in enumerate(b):
        matches[c] = matches.get(c, 0) | (1 << j)
    rows = [mask]
    v = mask
    for c in a:
        u = v & matches.get(c, 0)
        v = ((v + u) | (v - u)) & mask
        rows.append(v)
    return rows


def lcs(
    a: bytes, b: bytes, length_only: bool, idx: bool, min_match: int, with_len: bool,
    max_table: int,
) -> Reply:  # fmt: skip
    """The reply to LCS (string, LEN or IDX form). ``max_table`` bounds Redis's table size
    in bytes (its proto-max-bulk-len); a larger one is refused as Redis refuses it."""
    if (len(a) + 1) * (len(b) + 1) * 4 > max_table:
        return TOO_BIG
    rows = _rows(a, b)

    def table(i: int, j: int) -> int:
        return j - (rows[i] & ((1 << j) - 1)).bit_count()

    total = table(len(a), len(b))
    if length_only:
        return total
    result = bytearray(total)
    pos = total
    ranges: list[Reply] = []
    alen = len(a)
    a_start, a_end, b_start, b_end = alen, 0, 0, 0
    i, j = len(a), len(b)
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            result[pos - 1] = a[i - 1]
            if a_start == alen:
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            pos -= 1
            i -= 1
            j -= 1
        else:
            if table(i - 1, j) > table(i, j - 1):
                i -= 1
            else:
                j -= 1
            if a_start != alen:
                emit = True
        if emit:
            match_len = a_end - a_start + 1
            if idx and (min_match == 0 or match_len >= min_match):
                entry: list[Reply] = [[a_start, a_end], [b_start, b_end]]
                if with_len:
                    entry.append(match_len)
                ranges.append(entry)
            a_start = alen
    if idx:
        return {b"matches": ranges, b"len": total}
    return bytes(result)
