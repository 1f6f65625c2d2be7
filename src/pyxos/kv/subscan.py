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
from typing import TypeAlias, TypeVar

from pyxos.kv.errors import ERR_INVALID_CURSOR
from pyxos.kv.glob import compile_pattern
from pyxos.kv.scan import parse_cursor, scan_options
from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["SMALL", "ScanView", "scan_container"]

C = TypeVar("C")
ScanView: TypeAlias = tuple[Sequence[bytes], Callable[[bytes], Reply] | None, bool]
"""A container as its scan sees it: its elements in order, what is answered after each
(a field's value, a member's score; None for a set, whose members stand alone), and whether
it is small enough to be returned whole."""

_HASH_SPACE = 1 << 32
SMALL = 128
"""Containers up to this size are returned in one call (Redis's compact encodings)."""


def scan_container(
    argv: Sequence[bytes],
    lookup: Callable[[bytes], C | None],
    view: Callable[[C], ScanView],
) -> Reply:
    """One HSCAN, SSCAN or ZSCAN: ``[next cursor, items]``. In Redis's order: the cursor
    (argv[2]), then the key (``lookup``: None when absent, WRONGTYPE raised for another
    kind), then ``MATCH``/``COUNT`` (from argv[3])."""
    cursor = parse_cursor(argv[2])
    if cursor is None:
        return ERR_INVALID_CURSOR
    container = lookup(argv[1])
    if container is None:
        return [b"0", []]
    elements, paired, small = view(container)
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
            out.append(element)
            if paired is not None:
                out.append(paired(element))
    return [b"%d" % next_cursor, out]
