"""The runtime's wrapper around every command it puts in the log.

The core orders opaque bytes. To hand each reply back to the caller that is waiting for
it, the node that proposes a command prefixes it with its own id and a per-process
sequence number. Every replica applies the command; only the origin resolves a future.
A random per-process ``incarnation`` keeps a restarted node from matching a stale entry
proposed by its previous life to a new caller.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">IQQ")
"""(origin, incarnation, seq); the runtime's hot loops use it directly."""
HEADER_SIZE = HEADER.size


def pack(origin: int, incarnation: int, seq: int, payload: bytes) -> bytes:
    """Wrap ``payload`` for the log."""
    return HEADER.pack(origin, incarnation, seq) + payload


def unpack(command: bytes) -> tuple[int, int, int, bytes]:
    """``(origin, incarnation, seq, payload)``; a short command yields origin 0."""
    if len(command) < HEADER_SIZE:
        return 0, 0, 0, command
    origin, incarnation, seq = HEADER.unpack_from(command)
    return origin, incarnation, seq, command[HEADER_SIZE:]
