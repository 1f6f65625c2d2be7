"""What the key-value workload's clients send, and what their reads report.

Writes are drawn from a fixed mix (:data:`WRITES`), on a few keys so that they collide,
with TTLs around the seed's scale; every ``SET`` writes a value of its own (client and
sequence number), so that a value read names the write that set it. ``PXAT`` times are
computed by the client from true time, as a client with a well-kept clock would.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyxos.kv.statemachine import KVStateMachine

__all__ = ["READS", "WRITES", "Op", "draw_read", "draw_write", "expire_locally", "parse_read"]

WRITES = (
    ("set", 3),
    ("set-px", 3),
    ("set-ex", 1),
    ("set-pxat", 1),
    ("set-keepttl", 1),
    ("set-nx-px", 1),
    ("set-xx", 1),
    ("pexpire", 2),
    ("expire", 1),
    ("persist", 1),
    ("del", 1),
)
"""Write kinds and their weights."""
READS = (("get", 3), ("ttl", 1), ("pttl", 1), ("exists", 1))


@dataclass(slots=True)
class Op:
    """One write of one client: its argv, and every encoded attempt (a retry reaching
    another node is stamped anew, so it is other bytes for the same session number)."""

    client: int
    seq: int
    kind: str
    key: bytes
    argv: list[bytes]
    value: bytes | None = None
    """The value a SET writes (unique to this write)."""
    started: int = 0
    """The tick the client first sent it."""
    first_slot: int = 0
    """The slot it was first applied in (where it took effect), 0 until then."""
    attempts: list[bytes] = field(default_factory=list)

    @property
    def creates(self) -> bool:
        """Whether this write can create the key (a SET without XX)."""
        return self.kind.startswith("set") and self.kind != "set-xx"


def _draw(rng: random.Random, table: Sequence[tuple[str, int]]) -> str:
    return rng.choices([name for name, _ in table], [w for _, w in table])[0]


def draw_write(
    rng: random.Random, client: int, seq: int, keys: Sequence[bytes], scale: int, true_ms: int
) -> Op:
    """A write of client ``client``'s ``seq``; TTLs up to three times ``scale`` ms."""
    kind = _draw(rng, WRITES)
    key = rng.choice(keys)
    op = Op(client, seq, kind, key, [])
    ms = b"%d" % rng.randint(1, 3 * scale)
    if kind.startswith("set"):
        op.value = b"v%d.%d" % (client, seq)
        if kind == "set-px":
            extra = [b"PX", ms]
        elif kind == "set-ex":
            extra = [b"EX", b"%d" % rng.randint(1, 3)]
        elif kind == "set-pxat":
            extra = [b"PXAT", b"%d" % (true_ms + rng.randint(-50, 3 * scale))]
        elif kind == "set-keepttl":
            extra = [b"KEEPTTL"]
        elif kind == "set-nx-px":
            extra = [b"NX", b"PX", ms]
        elif kind == "set-xx":
            extra = [b"XX"]
        else:
            extra = []
        op.argv = [b"SET", key, op.value, *extra]
    elif kind in ("pexpire", "expire"):
        amount = ms if kind == "pexpire" else b"%d" % rng.randint(0, 3)
        option = [rng.choice((b"NX", b"XX", b"GT", b"LT"))] if rng.random() < 0.3 else []
        op.argv = [kind.upper().encode(), key, amount, *option]
    else:
        op.argv = [kind.upper().encode(), key]
    return op


def draw_read(rng: random.Random, keys: Sequence[bytes]) -> list[bytes]:
    return [_draw(rng, READS).upper().encode(), rng.choice(keys)]


def parse_read(name: str, reply: bytes) -> tuple[bool | None, bytes | None]:
    """(whether the reply reports the key present, the GET value); (None, None) when the
    reply is not one these reads may give."""
    if name == "get":
        if reply == b"$-1\r\n":
            return False, None
        if reply.startswith(b"$"):
            return True, reply.split(b"\r\n", 2)[1]
        return None, None
    if not reply.startswith(b":"):
        return None, None
    number = int(reply[1:-2])
    if name == "exists":
        return number == 1, None
    return number != -2, None


def expire_locally(kv: KVStateMachine, argv: Sequence[bytes], clock: int) -> None:
    """The broken build ``expires-by-local-clock``: the replica deletes a due key itself,
    by its own clock, instead of putting a tick through the log."""
    key = argv[1]
    at = kv.dbs[0].expires.get(key)
    if at is not None and at <= clock:
        kv.select(0)
        kv.delete(key)
