"""HSCAN, SSCAN and ZSCAN: iterating one container with a cursor.

A small container (one Redis keeps in a compact encoding) is returned whole with cursor 0,
as Redis does. A big one is walked in windows of a fixed hash, ``crc32(element)``, much as
SCAN walks the keyspace (:mod:`pyxos.kv.scan`): a cursor ``c`` means every element whose
hash is below ``c`` was returned, so an element present from start to end is returned
exactly once whatever changes in between, on any node. A window is sized for about COUNT
elements; finding its elements is a pass over the container (O(n) per call, no index kept).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

from pyxos.kv.glob import compile_pattern
from pyxos.kv.scan import scan_options
from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["SMALL", "scan_container"]

_HASH_SPACE = 1 << 32
SMALL = 128
"""Containers up to this size are returned in one call (Redis's compact encodings)."""


def scan_container(
    argv: Sequence[bytes],
    cursor: int,
    elements: Sequence[bytes],
    emit: Callable[[bytes, list[Reply]], None],
    small: bool,
) -> Reply:
    """One call of a container scan: parse ``MATCH``/``COUNT`` (from argv[3]) and return
    ``[next cursor, items]``. ``emit(element, out)`` appends an element's reply items (the
    field and value, the member and score, or the member)."""
    options = scan_options(argv, 3, with_type=False)
    if isinstance(options, ErrorReply):
        return options
    count, pattern, _ = options
    match = compile_pattern(pattern) if pattern is not None and pattern != b"*" else None
    out: list[Reply] = []
    if small:
        chosen: Sequence[bytes] = elements
        next_cursor = 0
    else:
        width = max(1, _HASH_SPACE * min(count, len(elements)) // max(len(elements), 1))
        end = cursor + width
        crc = zlib.crc32
        chosen = [e for e in elements if cursor <= crc(e) < end]
        next_cursor = 0 if end >= _HASH_SPACE else end
    for element in chosen:
        if match is None or match(element):
            emit(element, out)
    return [b"%d" % next_cursor, out]
