"""Redis's integer rule for client bytes (``string2ll``), shared by the parser and commands.

RESP headers (``*3``, ``$5``) and integer arguments (``INCRBY k 7``) are read with the same
strict rule in Redis, so both the request parser and the command handlers need it; it lives
at the bottom of the layering so that neither has to import the other.
"""

from __future__ import annotations

__all__ = ["LLONG_MAX", "LLONG_MIN", "string2ll"]

LLONG_MIN = -(2**63)
LLONG_MAX = 2**63 - 1


def string2ll(s: bytes) -> int | None:
    """Redis's ``string2ll``: the only integers Redis accepts, or ``None``.

    Strict decimal that fits a signed 64-bit integer: an optional ``-``, no ``+``, no
    spaces, no leading zeros (``"0"`` itself is fine, ``"-0"`` is not), at most 20 bytes.
    Python's ``int()`` is far more liberal (``" +0_7 "``), so it is never used unguarded on
    client bytes: INCR on ``"007"`` must fail exactly as it does in Redis.
    """
    n = len(s)
    if n == 0 or n >= 21:
        return None
    if s.isdigit():  # bytes.isdigit() is ASCII-only
        if s[0] == 0x30 and n > 1:
            return None
        v = int(s)
        return v if v <= LLONG_MAX else None
    if s[0] == 0x2D and n > 1 and s[1] != 0x30 and s[1:].isdigit():
        v = -int(s[1:])
        return v if v >= LLONG_MIN else None
    return None
