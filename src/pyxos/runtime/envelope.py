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
"""``(origin, incarnation, seq)``, packed in front of the payload by
``NodeCalls.submit_future`` and unpacked by ``Shell._apply`` (a command shorter than the
header has origin 0: nobody waits for its reply). Used inline there: both run once per
command."""
HEADER_SIZE = HEADER.size
