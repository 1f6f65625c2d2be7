"""What a load-generator worker is asked to do, the requests it sends, and how it reports.

Shared by the parent (:mod:`pyxos.benchmark.runner`), which builds the plans and reads the
shared array, the workers (:mod:`pyxos.benchmark.loadgen`), and the preload
(:mod:`pyxos.benchmark.preload`), which writes the keys the workers' GETs read.
Requests are pre-encoded RESP with the key formatted in (``%012d``): the hot path pastes a
key number into a fixed head instead of encoding a command each time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "GET_REQUEST",
    "KEY_FORMAT",
    "MAX_KEYS",
    "PHASE_DONE",
    "PHASE_DRAINING",
    "PHASE_MEASURING",
    "PHASE_READY",
    "PHASE_STARTING",
    "PHASE_WARMUP",
    "SET_HEAD",
    "SHARED_HEADER",
    "WRITE_HEADS",
    "Endpoint",
    "WorkerPlan",
    "encode",
    "make_value",
]

Endpoint = tuple[str, int]

KEY_FORMAT = b"key:%012d"
"""Keys look like redis-benchmark's ``key:__rand_int__`` (``key:000000004711``)."""
SET_HEAD = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n"
GET_REQUEST = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:%012d\r\n"
WRITE_HEADS = {
    "set": SET_HEAD,
    "hset": b"*4\r\n$4\r\nHSET\r\n$16\r\nkey:%012d\r\n$1\r\nf\r\n",
    "lpush": b"*3\r\n$5\r\nLPUSH\r\n$16\r\nkey:%012d\r\n",
    "sadd": b"*3\r\n$4\r\nSADD\r\n$16\r\nkey:%012d\r\n",
    "zadd": b"*4\r\n$4\r\nZADD\r\n$16\r\nkey:%012d\r\n$1\r\n1\r\n",
}
"""The write each SET slot of the mix sends (``--write``): the value is the last word (a
hash field's value, a list element, a set or sorted set member)."""
MAX_KEYS = 10**12

SHARED_HEADER = 2
"""Slots before the workers' own in the shared array: start time, stop flag."""
PHASE_STARTING, PHASE_READY, PHASE_WARMUP, PHASE_MEASURING, PHASE_DRAINING, PHASE_DONE = range(6)


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What one worker process does; picklable, handed over at spawn."""

    index: int
    endpoints: tuple[Endpoint, ...]
    connections: int
    first_connection: int
    """Global index of this worker's first connection (connections are spread over the
    endpoints round-robin by global index)."""
    pipeline: int
    get_fraction: float
    keys: int
    value_size: int
    warmup: float
    duration: float
    rate: float
    """Ops/s this worker offers in open loop; 0 for closed loop."""
    timeout: float
    password: str | None
    seed: int
    write: str = "set"


def make_value(size: int, seed: int = 0) -> bytes:
    """A printable pseudo-random value of ``size`` bytes (incompressible-ish, like real data)."""
    rng = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return bytes(rng.choice(alphabet) for _ in range(size))


def encode(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
