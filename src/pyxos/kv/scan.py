"""SCAN's order and cursors: keys by a fixed hash, so a cursor means the same thing anywhere.

Redis walks its hash table in reverse-binary bucket order so that a full iteration returns
every key that was present from start to end even while the table grows. A Python dict has
no such order to walk, so pyxos defines one: keys sorted by ``crc32(key) + 1``. A cursor
``c`` means "every key whose hash is below ``c`` was returned"; each call returns the keys
of the next hash window and the hash where the following window starts (``0`` when none
is left). A key present throughout has a fixed hash, so it falls in exactly one window and
is returned exactly once; keys added or removed during the iteration may or may not show,
as in Redis. The hash does not depend on the process, the node or insertion order, so a
cursor stays valid across nodes and restarts.

Finding the next window quickly needs the keys sorted by hash: :class:`ScanIndex` is that
sorted list, built on a database's first SCAN and kept as a node-local cache (it is not
replicated state and is never in a snapshot: any replica rebuilds the same order). While
it exists, new keys are appended to a small pending list instead of being sorted in at
once; deleted keys are dropped when met. The index is rebuilt once the pending list or the
dead entries grow past a fraction of its size, so each write pays O(1) and SCAN pays
O(log n + count) amortised.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Mapping, Sequence

from pyxos.kv.errors import ERR_NOT_INTEGER, ERR_SYNTAX
from pyxos.resp.integers import string2ll
from pyxos.resp.replies import ErrorReply

__all__ = ["ScanIndex", "parse_cursor", "scan_hash", "scan_options"]


def parse_cursor(arg: bytes) -> int | None:
    """C's ``strtoul`` as Redis's parseScanCursorOrReply uses it: optional sign, digits,
    nothing after them, no leading space, no overflow (``-1`` wraps around)."""
    body = arg
    negative = False
    if body[:1] in (b"+", b"-"):
        negative = body[:1] == b"-"
        body = body[1:]
    if not body:
        return 0 if not arg else None
    if not body.isdigit():
        return None
    value = int(body)
    if value >= 2**64:
        return None
    return (-value) % 2**64 if negative else value


def scan_options(
    argv: Sequence[bytes], start: int, *, with_type: bool
) -> tuple[int, bytes | None, bytes | None] | ErrorReply:
    """The options after a cursor, parsed as Redis parses them for SCAN (``with_type``) and
    for HSCAN, SSCAN and ZSCAN: ``(count, pattern, type)`` or the error to reply."""
    count, pattern, wanted_type = 10, None, None
    i = start
    while i < len(argv):
        opt = argv[i].lower()
        if opt == b"count" and i + 1 < len(argv):
            n = string2ll(argv[i + 1])
            if n is None:
                return ERR_NOT_INTEGER
            if n < 1:
                return ERR_SYNTAX
            count = n
        elif opt == b"match" and i + 1 < len(argv):
            pattern = argv[i + 1]
        elif with_type and opt == b"type" and i + 1 < len(argv):
            wanted_type = argv[i + 1].lower()
        else:
            return ERR_SYNTAX
        i += 2
    return count, pattern, wanted_type


def scan_hash(key: bytes) -> int:
    """A key's place in SCAN order, 1 to 2**32 (0 is the start/end cursor)."""
    return zlib.crc32(key) + 1


class ScanIndex:
    """Keys of one database sorted by :func:`scan_hash`, plus keys added since."""

    __slots__ = ("hashes", "keys", "pending", "pending_sorted")

    def __init__(self, data: Mapping[bytes, object]) -> None:
        pairs = sorted((scan_hash(k), k) for k in data)
        self.hashes = [h for h, _ in pairs]
        self.keys = [k for _, k in pairs]
        self.pending: list[bytes] = []
        self.pending_sorted: tuple[list[int], list[bytes]] | None = ([], [])

    def added(self, key: bytes) -> bool:
        """Note a new key; False when the index should be dropped and rebuilt instead."""
        self.pending.append(key)
        self.pending_sorted = None
        return len(self.pending) <= 1024 + len(self.keys) // 8

    def stale(self, live: int) -> bool:
        """Too many entries for deleted keys: rebuilding is cheaper than skipping them."""
        return len(self.keys) > 1024 + 2 * live

    def _pending(self) -> tuple[list[int], list[bytes]]:
        if self.pending_sorted is None:
            pairs = sorted((scan_hash(k), k) for k in self.pending)
            self.pending_sorted = ([h for h, _ in pairs], [k for _, k in pairs])
        return self.pending_sorted

    def window(self, cursor: int, count: int) -> tuple[int, list[bytes]]:
        """Candidate keys of the window starting at ``cursor`` (some may be gone since) and
        the next cursor; the window holds about ``count`` entries and never splits a hash."""
        p_hashes, p_keys = self._pending()
        i = bisect.bisect_left(self.hashes, cursor)
        j = bisect.bisect_left(p_hashes, cursor)
        merged = sorted(
            [
                *zip(self.hashes[i : i + count + 1], self.keys[i : i + count + 1], strict=True),
                *zip(p_hashes[j : j + count + 1], p_keys[j : j + count + 1], strict=True),
            ]
        )
        if len(merged) <= count:
            # Everything from the cursor on fits: this is the last window.
            return 0, [k for _, k in merged]
        end = merged[count][0]
        if end == merged[0][0]:
            # More than `count` keys share one hash: take them all, then move past it.
            end += 1
            hi = bisect.bisect_left(self.hashes, end)
            p_hi = bisect.bisect_left(p_hashes, end)
            keys = self.keys[i:hi] + p_keys[j:p_hi]
            return (end if end <= 2**32 else 0), keys
        return end, [k for h, k in merged if h < end]
