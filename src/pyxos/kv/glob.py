"""Redis's glob patterns (KEYS, SCAN MATCH), on bytes, with Redis's edge cases.

Redis matches with ``stringmatchlen``; Python's ``fnmatch`` differs (no ``\\`` escapes, ``!``
negation instead of ``^``, different handling of unterminated ``[``), so the rules are
written out here: ``*`` any run, ``?`` one byte, ``[abc]``, ``[^abc]``, ``[a-z]`` (reversed
bounds allowed), ``\\x`` a literal ``x`` (also inside classes), an unterminated class
extends to the end of the pattern, and, as in Redis, an empty string matches only an
empty pattern (``KEYS *`` is answered without matching, so it still lists an empty key).

The pattern is compiled once into tokens, then matched with the classic star-backtracking
loop: linear memory, no recursion, and at worst length(pattern) * length(key) steps, which
gives the same answers as Redis's recursive matcher without its exponential cases.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["compile_pattern", "glob_match"]

_STAR = -1
_ANY = -2


def _tokens(pattern: bytes) -> list[int | tuple[bool, frozenset[int]]]:
    """Literal bytes as ints, ``_STAR``, ``_ANY``, or ``(negated, byte set)`` classes."""
    out: list[int | tuple[bool, frozenset[int]]] = []
    p, n = 0, len(pattern)
    while p < n:
        c = pattern[p]
        if c == 0x2A:  # '*'
            if not out or out[-1] != _STAR:
                out.append(_STAR)
            p += 1
        elif c == 0x3F:  # '?'
            out.append(_ANY)
            p += 1
        elif c == 0x5B:  # '['
            p += 1
            negated = p < n and pattern[p] == 0x5E  # '^'
            if negated:
                p += 1
            members: set[int] = set()
            while p < n:
                c = pattern[p]
                if c == 0x5C and n - p >= 2:  # '\\' escapes the next byte
                    members.add(pattern[p + 1])
                    p += 2
                elif c == 0x5D:  # ']'
                    p += 1
                    break
                elif n - p >= 3 and pattern[p + 1] == 0x2D:  # 'a-z'
                    lo, hi = sorted((c, pattern[p + 2]))
                    members.update(range(lo, hi + 1))
                    p += 3
                else:
                    members.add(c)
                    p += 1
            out.append((negated, frozenset(members)))
        elif c == 0x5C and n - p >= 2:  # '\\x'
            out.append(pattern[p + 1])
            p += 2
        else:
            out.append(c)
            p += 1
    return out


def compile_pattern(pattern: bytes) -> Callable[[bytes], bool]:
    """A predicate telling whether a key matches ``pattern``."""
    tokens = _tokens(pattern)
    if not tokens:
        return lambda s: not s
    if tokens == [_STAR]:
        return bool
    if all(isinstance(t, int) and t >= 0 for t in tokens):
        literal = bytes(t for t in tokens if isinstance(t, int))
        return literal.__eq__

    def one(token: int | tuple[bool, frozenset[int]], byte: int) -> bool:
        if isinstance(token, tuple):
            return (byte in token[1]) != token[0]
        return token in (_ANY, byte)

    count = len(tokens)

    def match(s: bytes) -> bool:
        if not s:
            return False
        t = i = 0
        star_t, star_i = -1, 0
        n = len(s)
        while i < n:
            if t < count and tokens[t] == _STAR:
                star_t, star_i = t, i
                t += 1
            elif t < count and one(tokens[t], s[i]):
                t += 1
                i += 1
            elif star_t >= 0:
                star_i += 1
                i = star_i
                t = star_t + 1
            else:
                return False
        while t < count and tokens[t] == _STAR:
            t += 1
        return t == count

    return match


def glob_match(pattern: bytes, key: bytes) -> bool:
    """Whether ``key`` matches ``pattern`` (compile once with :func:`compile_pattern` in loops)."""
    return compile_pattern(pattern)(key)
