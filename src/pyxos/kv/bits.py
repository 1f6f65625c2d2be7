"""Bit commands: SETBIT, GETBIT, BITCOUNT, BITPOS (with BYTE|BIT ranges) and BITOP.

Bit 0 is the most significant bit of the first byte, as in Redis. Ranges and the answers at
their edges follow Redis 7.0's ``bitops.c``; the bit searches and the operations between
strings run on Python integers, so they cost C-speed work per machine word, not per bit.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyxos.kv.commands import string2ll
from pyxos.kv.errors import ERR_NOT_INTEGER, ERR_SYNTAX
from pyxos.kv.keyspace import Keyspace
from pyxos.kv.values import as_string
from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["BitCommands"]

ERR_BIT_OFFSET = ErrorReply("ERR bit offset is not an integer or out of range")
ERR_BIT_VALUE = ErrorReply("ERR bit is not an integer or out of range")
ERR_BIT_ARG = ErrorReply("ERR The bit argument must be 1 or 0.")
ERR_NOT_ONE_KEY = ErrorReply("ERR BITOP NOT must be called with a single source key.")
_BITOPS = (b"and", b"or", b"xor", b"not")


def _bit_range(
    length: int, args: Sequence[bytes], default_end: int | None = None
) -> tuple[int, int] | ErrorReply | None:
    """The inclusive bit range ``[first, last]`` that ``start end [BYTE|BIT]`` name in a
    string of ``length`` bytes; None for an empty range. ``args`` is ``start``, then
    optionally ``end`` and the unit."""
    start = string2ll(args[0])
    if start is None:
        return ERR_NOT_INTEGER
    unit_bits = False
    if len(args) == 3:
        unit = args[2].lower()
        if unit not in (b"bit", b"byte"):
            return ERR_SYNTAX
        unit_bits = unit == b"bit"
    if len(args) >= 2:
        end = string2ll(args[1])
        if end is None:
            return ERR_NOT_INTEGER
    else:
        end = length - 1 if default_end is None else default_end
    total = length * 8 if unit_bits else length
    if start < 0:
        start += total
    if end < 0:
        end += total
    start, end = max(start, 0), min(max(end, 0), total - 1)
    if start > end:
        return None
    return (start, end) if unit_bits else (start * 8, end * 8 + 7)


def _bits(value: bytes, first: int, last: int) -> int:
    """Bits ``first..last`` of ``value`` as an integer, bit ``first`` the most significant."""
    chunk = value[first // 8 : last // 8 + 1]
    number = int.from_bytes(chunk, "big")
    tail = 7 - last % 8
    width = last - first + 1
    return (number >> tail) & ((1 << width) - 1)


class BitCommands(Keyspace):
    """The bit commands, as a mixin over :class:`~pyxos.kv.keyspace.Keyspace`."""

    max_value_len: int

    def c_setbit(self, argv: Sequence[bytes]) -> Reply:
        offset = string2ll(argv[2])
        if offset is None or offset < 0 or offset >> 3 >= self.max_value_len:
            return ERR_BIT_OFFSET
        bit = string2ll(argv[3])
        if bit is None or bit not in (0, 1):
            return ERR_BIT_VALUE
        key = argv[1]
        old = as_string(self.db.data.get(key)) or b""
        index = offset >> 3
        grown = bytearray(old)
        if index >= len(old):
            grown.extend(bytes(index + 1 - len(old)))
        mask = 0x80 >> (offset & 7)
        previous = 1 if grown[index] & mask else 0
        if bit:
            grown[index] |= mask
        else:
            grown[index] &= ~mask & 0xFF
        if key not in self.db.data or bytes(grown) != old:  # else nothing changed
            self.update(key, bytes(grown))
        return previous

    def c_getbit(self, argv: Sequence[bytes]) -> Reply:
        offset = string2ll(argv[2])
        if offset is None or offset < 0 or offset >> 3 >= self.max_value_len:
            return ERR_BIT_OFFSET
        value = as_string(self.db.data.get(argv[1])) or b""
        index = offset >> 3
        if index >= len(value):
            return 0
        return 1 if value[index] & (0x80 >> (offset & 7)) else 0

    def c_bitcount(self, argv: Sequence[bytes]) -> Reply:
        value = as_string(self.db.data.get(argv[1]))
        if value is None:
            return 0
        if len(argv) == 2:
            return int.from_bytes(value, "big").bit_count()
        if len(argv) not in (4, 5):
            return ERR_SYNTAX
        start, end = string2ll(argv[2]), string2ll(argv[3])
        if start is None or end is None:
            return ERR_NOT_INTEGER
        if start < 0 and end < 0 and start > end:
            return 0
        span = _bit_range(len(value), argv[2:])
        if isinstance(span, ErrorReply):
            return span
        if span is None:
            return 0
        return _bits(value, *span).bit_count()

    def c_bitpos(self, argv: Sequence[bytes]) -> Reply:
        bit = string2ll(argv[2])
        if bit is None:
            return ERR_NOT_INTEGER
        if bit not in (0, 1):
            return ERR_BIT_ARG
        value = as_string(self.db.data.get(argv[1]))
        if value is None:
            return -1 if bit else 0
        if len(argv) > 6:
            return ERR_SYNTAX
        end_given = len(argv) >= 5
        if len(argv) == 3:
            span: tuple[int, int] | ErrorReply | None = (0, len(value) * 8 - 1) if value else None
        else:
            span = _bit_range(len(value), argv[3:])
        if isinstance(span, ErrorReply):
            return span
        if span is None:
            return -1
        first, last = span
        width = last - first + 1
        bits = _bits(value, first, last)
        if bit:
            return -1 if bits == 0 else first + width - bits.bit_length()
        zeros = ~bits & ((1 << width) - 1)
        if zeros:
            return first + width - zeros.bit_length()
        # No clear bit inside: past the end of the string counts as zeros, unless the
        # caller gave the end of the range.
        return -1 if end_given else last + 1

    def c_bitop(self, argv: Sequence[bytes]) -> Reply:
        op = argv[1].lower()
        if op not in _BITOPS:
            return ERR_SYNTAX
        if op == b"not" and len(argv) != 4:
            return ERR_NOT_ONE_KEY
        data = self.db.data
        sources = [as_string(data.get(k)) or b"" for k in argv[3:]]
        size = max(len(s) for s in sources)
        if size == 0:
            self.delete(argv[2])
            return 0
        numbers = [int.from_bytes(s.ljust(size, b"\0"), "big") for s in sources]
        result = numbers[0]
        if op == b"not":
            result = ~result & ((1 << (8 * size)) - 1)
        for n in numbers[1:]:
            result = result & n if op == b"and" else result | n if op == b"or" else result ^ n
        self.put(argv[2], result.to_bytes(size, "big"))
        return size
