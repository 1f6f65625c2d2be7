"""Inline commands (``PING\\r\\n``, ``SET k "a b"\\n``): Redis's ``sdssplitargs`` quoting rules.

What telnet users and redis-benchmark's ``PING_INLINE`` send. Kept apart from the RESP array
parser in :mod:`pyxos.resp.requests` because the quoting rules are a small language of their
own (also used by redis-cli and ``CONFIG`` files in Redis), independent of framing.
"""

from __future__ import annotations

import re

__all__ = ["split_inline"]

_SPLIT_SLOW = re.compile(rb"[\"'\x0b\x0c]")
_HEX = b"0123456789abcdefABCDEF"
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_TOKEN_END = frozenset(b" \n\r\t")
_BLANKS = frozenset(b" \t\n\r\x0b\x0c")  # C isspace()


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command line like Redis's ``sdssplitargs``; ``None`` if quotes are
    unbalanced (or a closing quote is not followed by a space).

    Double quotes understand ``\\xHH``, ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\a`` and ``\\c``
    (a literal ``c``); single quotes only ``\\'``. A NUL byte ends the line, as it does for
    the C code.
    """
    nul = line.find(b"\0")
    if nul >= 0:
        line = line[:nul]
    if _SPLIT_SLOW.search(line) is None:
        return line.split()  # same as sdssplitargs when no quotes, \v or \f are present
    out: list[bytes] = []
    n = len(line)
    i = 0
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i >= n:
            return out
        cur = bytearray()
        quote = 0  # the open quote (0x22 or 0x27), 0 outside quotes
        while True:
            c = line[i] if i < n else 0
            if quote == 0x22 and c == 0x5C and i + 1 < n:
                if (
                    i + 3 < n
                    and line[i + 1] == 0x78
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    cur.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                else:
                    i += 1
                    cur.append(_ESCAPES.get(line[i], line[i]))
            elif quote == 0x27 and c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                i += 1
                cur.append(0x27)
            elif quote:
                if c == quote:  # the same rule closes both kinds
                    if i + 1 < n and line[i + 1] not in _BLANKS:
                        return None
                    i += 1
                    break
                if i >= n:
                    return None
                cur.append(c)
            elif i >= n or c in _TOKEN_END:
                if i < n:
                    i += 1
                break
            elif c in (0x22, 0x27):
                quote = c
            else:
                cur.append(c)
            i += 1
        out.append(bytes(cur))
